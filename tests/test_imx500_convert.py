"""`edgecls convert --imx500` for real: Sony's Model Compression Toolkit and imxconv-tf in the
converter environment of tests/tools/imx500_env.sh (built once, cached in .cache), on a tiny
MobileNet trained here in seconds; then the bundle's expectations played through the device side
(tests/standins/picamera2). Tier: ``-m imx500``."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import CACHE, SIGN_DATA, KERAS_WEIGHTS, ROOT, assert_one_line_error, json_lines, run_edgecls
from edge_runtime import load_bundle

pytestmark = pytest.mark.imx500
SCRIPT = ROOT / "tests" / "tools" / "imx500_env.sh"
TINY = ["--arch", "mobilenet_v1", "--alpha", "0.25", "--size", "64", "--weights", str(KERAS_WEIGHTS),
        "--epochs", "4", "--fine-tune-epochs", "0", "--seed", "0"]


@pytest.fixture(scope="module")
def converter_env() -> Path:
    d = CACHE / f"imx500-{hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:12]}"
    if not (d / ".done").exists():
        p = subprocess.run(["bash", str(SCRIPT), str(d)], capture_output=True, text=True, timeout=1800)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return d


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("imx500") / "run"
    p = run_edgecls("train", SIGN_DATA, "--out", run, *TINY, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def imx_bundle(tiny_run, converter_env) -> Path:
    out = tiny_run.parent / "bundle"
    # A model trained for seconds: its CPU int8 model is not what these tests are about, so the CPU gate
    # is loosened (--min-agreement) and not repaired; the IMX500 part keeps its own --max-drop gate.
    p = run_edgecls("convert", tiny_run, "--out", out, "--imx500", "--calibration", "100", "--max-drop", "3",
                    "--min-agreement", "0.5", "--no-repair",
                    env={"EDGECLS_IMX500_ENV": str(converter_env)}, timeout=1200)
    assert p.returncode == 0, p.stderr[-4000:]
    (tiny_run.parent / "convert.log").write_text(p.stderr)
    return out


def test_requirements_match_the_env_script():
    from convert import imx500

    for req in imx500.REQUIREMENTS:
        assert f'"{req}"' in SCRIPT.read_text(), req


def test_bundle_carries_the_imx500_network(imx_bundle):
    b = load_bundle(imx_bundle)  # every listed file's sha256 checked, imx500/ included
    sec = b.meta["imx500"]
    assert sec["converted"] is True
    for name in ("imx500/packerOut.zip", "imx500/memory_report.json", "imx500/golden.json"):
        assert name in b.meta["files"], name
    assert zipfile.is_zipfile(imx_bundle / "imx500" / "packerOut.zip")
    report = json.loads((imx_bundle / "imx500" / "memory_report.json").read_text())["Memory Report"]
    assert report["Fit In Chip"] is True and sec["memory"]["Fit In Chip"] is True
    assert sec["output"] == {"kind": "probabilities", "classes": 5, "dtype": "uint8", "scale": 1 / 256}
    assert (sec["input"]["width"], sec["input"]["height"]) == (64, 64)
    # The graph rebuilt in Keras 2 is the trained one: the same top-1 as Keras 3 on the same photos.
    m, q = sec["metrics"], b.meta["metrics"]
    assert abs(m["float_top1"] - q["keras_top1"]) <= 1 / m["test_images"] + 1e-9, (m, q["keras_top1"])
    assert (m["float_top1"] - m["imx500_top1"]) * 100 <= 3.0, m
    assert m["float_top1"] >= 0.6, m
    assert m["imx500_float_agreement"] >= 0.9, m


def test_golden_expectations_name_the_bundle_photos(imx_bundle):
    b = load_bundle(imx_bundle)
    g = json.loads((imx_bundle / "imx500" / "golden.json").read_text())
    cpu = b.meta["golden"]["photos"]
    assert [p["file"] for p in g["photos"]] == [p["file"] for p in cpu]
    for p in g["photos"]:
        s = np.array(p["scores"])
        assert s.shape == (5,) and p["top1"] == int(s.argmax()) and p["label"] == b.labels[p["top1"]]
        np.testing.assert_allclose(s * 256, np.round(s * 256), atol=1e-3)  # uint8 softmax, dequantized
    # Golden photos are the CPU model's least confident correct ones, where a model this small often
    # changes its mind under another quantizer: agreement is held on the whole test split instead.
    assert g["tolerance"] == pytest.approx(2 / 256)


def test_device_side_ranks_what_the_sensor_would_send(imx_bundle, tmp_path):
    from test_imx500 import camera

    (imx_bundle / "imx500" / "network.rpk").write_bytes(b"9464")  # what imx500-package makes on the Pi
    g = json.loads((imx_bundle / "imx500" / "golden.json").read_text())["photos"]
    frames = [{"outputs": [p["scores"]], "shapes": [[5]], "kpi": [3000, 500]} for p in g]
    p = camera(tmp_path, imx_bundle, frames, "--json", "--max-frames", str(len(g)), "--top-k", "1")
    assert p.returncode == 0, p.stderr[-3000:]
    got = [l["classes"][0]["label"] for l in json_lines(p.stdout) if "classes" in l]
    assert got == [x["label"] for x in g]


def test_a_refused_op_names_the_layer(tiny_run, converter_env, tmp_path, monkeypatch):
    """imxconv-tf refuses Keras's Rescaling layer (the reason the chip's input stage normalizes)."""
    from convert import imx500
    from train._tf import keras

    monkeypatch.setenv("EDGECLS_IMX500_ENV", str(converter_env))
    model = keras.models.load_model(tiny_run / "model.keras", compile=False)
    x = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    with pytest.raises(imx500.Imx500Error) as e:
        imx500.build_imx500(model, x, x, np.zeros(8, int), x[:2], [str(i) for i in range(5)], tmp_path / "job",
                            progress=lambda s: None, keep_rescaling=True)
    msg = str(e.value)
    assert "imxconv-tf" in msg and "layer normalize" in msg and "Rescaling" in msg, msg
    assert "\n" not in msg


def test_a_failed_imx500_conversion_leaves_the_cpu_bundle_complete(tiny_run, tmp_path):
    unfinished = tmp_path / "env"
    unfinished.mkdir()
    out = tmp_path / "b"
    p = run_edgecls("convert", tiny_run, "--out", out, "--imx500", "--calibration", "50", "--max-drop", "5",
                    "--min-agreement", "0.5", "--no-repair",
                    env={"EDGECLS_IMX500_ENV": str(unfinished)}, timeout=900)
    assert p.returncode == 4, p.stderr[-3000:]
    assert_one_line_error(p, "unfinished converter environment", "the CPU bundle is complete")
    b = load_bundle(out)
    assert b.model("cpu").is_file() and not any(f.startswith("imx500/") for f in b.meta["files"])
    assert b.meta["imx500"]["converted"] is False
