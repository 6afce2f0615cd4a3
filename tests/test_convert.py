"""Conversion of the sign-language run: accuracy gate, size, int8-only graph, checksums, golden
photos, atomic writes; the Edge TPU preflight and compiler-log parser."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ASSETS, CORAL, ROOT, SIGN_DATA, assert_one_line_error, json_lines, run_edgecls

from convert import edgetpu
from edge_runtime import load_bundle
from edge_runtime.model.interpreter import read_ops

LOGS = Path(__file__).parent / "data" / "edgetpu_logs"
slow = pytest.mark.slow


def _meta(bundle: Path) -> dict:
    return json.loads((bundle / "edgecls.json").read_text())


@slow
def test_sign_run_reaches_95_percent(sign_run):
    m = json.loads((sign_run / "metrics.json").read_text())
    assert m["test"]["top1"] >= 0.95, m["test"]
    assert m["test"]["count"] >= 100


@slow
def test_int8_bundle_meets_the_accuracy_and_size_goals(sign_bundle):
    m = _meta(sign_bundle)
    q = m["metrics"]
    assert (q["float_top1"] - q["int8_top1"]) * 100 <= 1.0, q
    assert q["int8_size_ratio"] <= 0.40, q["size_bytes"]
    assert m["input"]["dtype"] == "uint8" and m["input"]["scale"] == 1.0 and m["input"]["zero_point"] == 0
    assert m["input"]["resize"] == "bilinear" and m["output"]["kind"] == "probabilities"
    assert m["source"]["dataset_fingerprint"] and set(q["per_class"]) == {"0", "1", "2", "3", "4"}
    # Every op inside the graph computes in int8 (uint8 I/O converted by QUANTIZE at the edges).
    ops = read_ops(str(sign_bundle / "model.tflite"))
    for op in ops:
        dtypes = {t.dtype for t in op.inputs + op.outputs if not t.constant}
        assert dtypes <= {"int8", "uint8"}, (op.name, dtypes)
    assert {op.name for op in ops} >= {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX"}
    fc = [op for op in ops if op.name == "FULLY_CONNECTED"]
    assert not any(op.inputs[1].per_channel for op in fc), "dense layers must be per tensor by default"


@slow
def test_classify_on_the_bundle_agrees_with_keras(sign_run, sign_bundle, tmp_path):
    """`edgecls classify` (files decoded on the device path) vs the Keras model, on every test photo."""
    rels = [r for r in (sign_run / "splits" / "test.txt").read_text().split("\n") if r]
    files = [str(SIGN_DATA / r) for r in rels]
    script = f"""
import json, numpy as np
from train._tf import keras
from train.data import Sample, decode
from pathlib import Path
m = keras.models.load_model({str(sign_run / 'model.keras')!r}, compile=False)
files = {files!r}
x = decode([Sample(Path(f), f, 0, "") for f in files], 128, 128, "bilinear")
print(json.dumps(np.argmax(m.predict(x.astype("float32"), verbose=0), axis=1).tolist()))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    keras_pred = json.loads(p.stdout.strip().splitlines()[-1])
    c = run_edgecls("classify", sign_bundle, *files, "--json", "--top-k", "1", "--backend", "cpu")
    assert c.returncode == 0, c.stderr[-3000:]
    edge_pred = [r["classes"][0]["index"] for r in json_lines(c.stdout)]
    assert len(edge_pred) == len(keras_pred) == len(files)
    agree = np.mean(np.array(edge_pred) == np.array(keras_pred))
    assert agree >= 0.99, agree
    truth = [int(r.split("/")[0]) for r in rels]
    assert np.mean(np.array(edge_pred) == np.array(truth)) >= 0.95


@slow
def test_bundle_checksums_are_enforced(sign_bundle, tmp_path):
    b = load_bundle(sign_bundle)
    assert set(b.meta["files"]) >= {"model.tflite", "model_float.tflite", "labels.txt"}
    assert sum(1 for f in b.meta["files"] if f.startswith("golden/")) == 10
    bad = tmp_path / "bad"
    shutil.copytree(sign_bundle, bad)
    data = bytearray((bad / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bad / "model.tflite").write_bytes(bytes(data))
    p = run_edgecls("classify", bad, SIGN_DATA / "0" / sorted(p.name for p in (SIGN_DATA / "0").iterdir())[0])
    assert_one_line_error(p, "model.tflite", "sha256")
    # The .tar.gz written beside it is the same bundle.
    t = run_edgecls("verify", f"{sign_bundle}.tar.gz", "--backend", "cpu")
    assert t.returncode == 0, t.stdout + t.stderr


@slow
def test_verify_passes_and_names_the_cause_of_a_mismatch(sign_bundle, tmp_path):
    ok = run_edgecls("verify", sign_bundle, "--backend", "cpu", "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    rep = json.loads(ok.stdout)
    assert rep["ok"] and rep["mode"] == "bit-exact" and len(rep["photos"]) == 10
    assert all(p["exact"] for p in rep["photos"])

    swapped = run_edgecls("verify", sign_bundle, "--backend", "cpu", "--simulate-fault", "swap-rb")
    assert swapped.returncode == 1
    assert "swapping R and B" in swapped.stderr and "MISMATCH" in swapped.stdout

    altered = tmp_path / "altered"
    shutil.copytree(sign_bundle, altered)
    meta = _meta(altered)
    meta["input"]["resize"] = "nearest"  # a device that resizes differently from training
    (altered / "edgecls.json").write_text(json.dumps(meta))
    p = run_edgecls("verify", altered, "--backend", "cpu")
    assert p.returncode == 1
    assert "resize 'bilinear'" in p.stderr and "resizes with 'nearest'" in p.stderr


@slow
def test_bare_keras_model_with_labels_and_photos(sign_run, tmp_path):
    out = tmp_path / "bare"
    p = run_edgecls("convert", sign_run / "model.keras", "--out", out, "--labels", sign_run / "labels.txt",
                    "--calibration-data", SIGN_DATA, "--calibration", "100", "--io", "int8", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    m = _meta(out)
    assert m["input"]["dtype"] == "int8" and m["input"]["zero_point"] == -128
    assert m["metrics"]["int8_top1"] >= 0.95 and m["quantization"]["calibration_images"] >= 95
    v = run_edgecls("verify", out, "--backend", "cpu")
    assert v.returncode == 0, v.stdout + v.stderr
    missing = run_edgecls("convert", sign_run / "model.keras", "--out", tmp_path / "x")
    assert_one_line_error(missing, "--labels", "--calibration-data")


@slow
def test_interrupted_convert_leaves_the_previous_bundle_intact(sign_run, sign_bundle, tmp_path):
    out = tmp_path / "live"
    shutil.copytree(sign_bundle, out)
    before = (out / "edgecls.json").read_bytes()
    cmd = [sys.executable, "-m", "edge_runtime.cli", "convert", str(sign_run), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list(tmp_path.glob(".live.convert-*")):
        time.sleep(0.01)
    time.sleep(3)  # well into quantization
    assert proc.poll() is None, "convert finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert (out / "edgecls.json").read_bytes() == before
    load_bundle(out)  # every checksum still matches
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["live"]


# --- Edge TPU ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mobilenet_v1_0.25_128_quant", "mobilenet_v1_0.5_160_quant",
                                   "mobilenet_v1_0.75_192_quant", "mobilenet_v2_1.0_224_quant",
                                   "mobilenet_v2_1.0_224_inat_bird_quant", "tf2_mobilenet_v2_1.0_224_ptq"])
def test_preflight_maps_corals_models_fully(model):
    """Coral compiled these fully for the Edge TPU (each *_edgetpu.tflite is one custom op); the TF2
    model is the int8-I/O case (QUANTIZE at both edges)."""
    pf = edgetpu.preflight(CORAL / f"{model}.tflite")
    assert pf.fully_mapped, pf.table()
    compiled = CORAL / f"{model}_edgetpu.tflite"
    if compiled.exists():
        assert [op.name for op in read_ops(str(compiled))] == ["edgetpu-custom-op"]


def test_preflight_flags_a_dynamic_shape_and_says_where_the_cpu_takes_over():
    pf = edgetpu.preflight(ASSETS / "tflite_examples" / "mobilenet_v2_035_96_embedder_with_metadata.tflite")
    assert not pf.fully_mapped and pf.mapped == 0
    assert pf.first_cpu_op.index == 0 and pf.first_cpu_op.problem.startswith("dynamic shape")
    assert "first op the Edge TPU cannot run: op 0" in pf.table()


@slow
def test_preflight_on_our_bundle(sign_bundle):
    m = _meta(sign_bundle)
    assert m["edgetpu"]["preflight"]["fully_mapped"] is True and m["edgetpu"]["compiled"] is False
    assert "apt" in m["edgetpu"]["reason"]
    float_pf = edgetpu.preflight(sign_bundle / "model_float.tflite")
    assert not float_pf.fully_mapped
    assert float_pf.first_cpu_op.problem.startswith("not 8-bit: works on float32")


def test_compiler_log_partial_mapping():
    log = edgetpu.parse_log((LOGS / "issue60_partial_cpu.log").read_text())
    assert log.ok and log.version == "2.1.302470888"
    assert (log.ops_total, log.ops_tpu, log.ops_cpu, log.subgraphs) == (93, 83, 10, 1)
    assert log.on_chip_memory == "6.86MiB" and log.off_chip_memory == "1.22MiB"
    assert {"op": "LOGISTIC", "count": 1, "status": "More than one subgraph is not supported"} in log.unmapped()
    assert {"op": "ADD", "count": 10, "status": "Mapped to Edge TPU"} in log.operators


def test_compiler_log_unsupported_op_and_its_fallout():
    log = edgetpu.parse_log((LOGS / "issue342_transpose.log").read_text())
    assert (log.ops_tpu, log.ops_cpu) == (2, 153)
    assert log.operators[0] == {"op": "TRANSPOSE", "count": 70, "status": "Operation not supported"}
    assert sum(r["count"] for r in log.operators) == 155
    quant = [r for r in log.operators if r["op"] == "QUANTIZE"]
    assert [r["status"] for r in quant] == ["Mapped to Edge TPU", "Operation is otherwise supported, but not mapped "
                                            "due to some unspecified limitation"]


def test_compiler_log_nothing_mapped():
    log = edgetpu.parse_log((LOGS / "issue219_mul_split.log").read_text())
    assert (log.ops_tpu, log.ops_cpu) == (0, 2) and len(log.unmapped()) == 2


def test_compiler_log_failure():
    log = edgetpu.parse_log((LOGS / "issue512_failed.log").read_text())
    assert not log.ok and log.version == "16.0.384591198"
    assert "large activation tensors" in log.error


def test_compiler_log_fully_mapped():
    log = edgetpu.parse_log((LOGS / "yolov7_pr1672_mapped.log").read_text())
    assert log.ok and (log.ops_total, log.subgraphs) == (246, 1)
    assert not log.unmapped() and (log.ops_tpu, log.ops_cpu) == (246, 0)
    assert log.off_chip_memory == "41.75KiB"


def test_every_quoted_log_names_its_source():
    for f in LOGS.glob("*.log"):
        assert f.read_text().startswith("# source: https://github.com/"), f


@slow
@pytest.mark.parametrize("log,exit_code", [("yolov7_pr1672_mapped.log", 0), ("issue512_failed.log", 1)])
def test_compile_step_with_a_stand_in_compiler(sign_run, tmp_path, log, exit_code):
    """What convert does around edgetpu_compiler (which cannot be installed here): a stand-in that
    prints a real quoted log; success adds model_edgetpu.tflite and the parsed figures, failure
    writes no bundle and quotes the compiler's reason."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "edgetpu_compiler").symlink_to(Path(__file__).parent / "tools" / "fake_edgetpu_compiler.py")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_EDGETPU_LOG": str(LOGS / log),
           "FAKE_EDGETPU_EXIT": str(exit_code)}
    out = tmp_path / "tpu"
    p = run_edgecls("convert", sign_run, "--out", out, "--edgetpu", "--calibration", "50", env=env)
    if exit_code == 0:
        assert p.returncode == 0, p.stderr[-3000:]
        m = _meta(out)
        assert "model_edgetpu.tflite" in m["files"] and m["edgetpu"]["compiled"] is True
        c = m["edgetpu"]["compiler"]
        assert c["compiler_version"] == "16.0.384591198" and c["ops_total"] == 246 and c["subgraphs"] == 1
        assert "246 of 246 ops mapped" in p.stderr
    else:
        assert_one_line_error(p, "edgetpu_compiler failed", "large activation tensors")
        assert not out.exists()
