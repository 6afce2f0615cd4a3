"""The Python API and the interpreter resolver, on real models."""

import ctypes
import json

import numpy as np
import pytest
from conftest import CORAL, run_edgecls
from PIL import Image

from edge_runtime import BackendUnavailable, Classifier
from edge_runtime.model import interpreter as interp

V2 = CORAL / "mobilenet_v2_1.0_224_quant.tflite"
LABELS = CORAL / "imagenet_labels.txt"


@pytest.fixture(scope="module")
def clf():
    return Classifier(V2, labels=LABELS, backend="cpu")


def test_path_pillow_image_and_frame_give_the_same_result(clf):
    by_path = clf.classify(CORAL / "cat.bmp")
    by_image = clf.classify(Image.open(CORAL / "cat.bmp"))
    frame = np.asarray(Image.open(CORAL / "cat.bmp").convert("RGB"))
    by_frame = clf.classify(frame)
    xrgb = clf.classify(np.dstack([frame, np.zeros(frame.shape[:2], np.uint8)]))
    assert by_path.classes[0].label == "Egyptian cat"
    for other in (by_image, by_frame, xrgb):
        assert other.raw.tobytes() == by_path.raw.tobytes()


def test_quantization_and_output_kind_come_from_the_model(clf):
    d = clf.describe()
    assert d["input"]["scale"] == pytest.approx(1 / 128) and d["input"]["zero_point"] == 128
    assert d["input"]["conversion"] == "identity" and d["output"]["kind"] == "probabilities"
    assert d["threads"] == interp.default_threads()
    scores = clf.scores(clf.classify(CORAL / "cat.bmp").raw)
    # The model ends in SOFTMAX: its uint8 probabilities are used as they are, not softmaxed again.
    assert 0.9 < scores.sum() < 1.1 and scores.max() > 0.5


def test_threads_are_passed_on():
    one = Classifier(V2, labels=LABELS, backend="cpu", threads=1)
    assert one.describe()["threads"] == 1
    with pytest.raises(ValueError, match="at least 1"):
        Classifier(V2, labels=LABELS, threads=0)


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(ValueError, match="auto, edgetpu, gpu, cpu"):
        Classifier(V2, labels=LABELS, backend="npu")


def test_resolver_order_and_forcing(monkeypatch):
    monkeypatch.delenv(interp.ENV_INTERPRETER, raising=False)
    assert interp.resolve_package().name == "ai_edge_litert"
    monkeypatch.setenv(interp.ENV_INTERPRETER, "tensorflow")
    pytest.importorskip("tensorflow")
    assert interp.resolve_package().name == "tensorflow"
    assert interp.resolve_package("litert").name == "ai_edge_litert"  # the argument wins
    with pytest.raises(ValueError, match="ai_edge_litert, tflite_runtime, tensorflow"):
        interp.resolve_package("onnx")


def test_tensorflow_lite_as_last_fallback_gives_the_same_output():
    pytest.importorskip("tensorflow")
    proc = run_edgecls("classify", V2, CORAL / "cat.bmp", "--labels", LABELS, "--json", "--interpreter", "tensorflow")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["interpreter"] == "tensorflow" and r["classes"][0]["index"] == 286


def _loadable(lib: str) -> bool:
    try:
        ctypes.CDLL(lib)
        return True
    except OSError:
        return False


HAS_EDGETPU = _loadable("libedgetpu.so.1")


@pytest.mark.skipif(HAS_EDGETPU, reason="libedgetpu is installed here (a Coral workstation)")
def test_edgetpu_library_name_and_missing_library(monkeypatch):
    assert interp.edgetpu_library() == "libedgetpu.so.1"
    with pytest.raises(BackendUnavailable, match="libedgetpu1-std"):
        interp.load_edgetpu_delegate(interp.resolve_package("ai_edge_litert"))


def test_bench_and_doctor_commands(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_edgecls("bench", V2, "--runs", "20", "--warmup", "2", "--image", CORAL / "parrot.jpg", "--save", out)
    assert proc.returncode == 0, proc.stderr
    (r,) = json.loads(out.read_text())["results"]
    s = r["invoke_ms"]
    assert s["count"] == 20 and s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    assert set(r["end_to_end_ms"]) == {"decode", "resize", "input", "set_get", "invoke", "postprocess", "total", "classify"}
    doctor = run_edgecls("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    tpu = checks["edgetpu library"]
    assert (tpu["status"] == "ok") if HAS_EDGETPU else (tpu["status"] == "missing" and "libedgetpu1-std" in tpu["fix"])
    assert {"python", "numpy", "interpreter", "gpu", "picamera2", "video devices", "cpu governor", "board"} <= set(checks)
