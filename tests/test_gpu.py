"""The gpu backend for real: LiteRT's GPU accelerator on Mesa's software Vulkan (lavapipe), and the
errors and fallback when there is no Vulkan driver at all."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ASSETS, CACHE, ROOT, CORAL, assert_one_line_error, run_edgecls

pytestmark = pytest.mark.gpu

FLOAT_MODEL = ASSETS / "tflite_examples" / "mobilenet_v2_035_96_embedder_with_metadata.tflite"


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    """1280 labels: with them the embedder's outputs count as classes (classify refuses it without)."""
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    path.write_text("".join(f"feature {i}\n" for i in range(1280)))
    return path


@pytest.fixture(scope="module")
def lavapipe_env():
    proc = subprocess.run([str(ROOT / "tests" / "tools" / "lavapipe.sh"), str(CACHE / "lavapipe")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"lavapipe setup failed (needs apt access and libvulkan1):\n{proc.stderr}"
    env = dict(line.split("=", 1) for line in proc.stdout.split())
    # llvmpipe compiles shaders on the first inference (25-40 s per model); keep them between runs.
    env["MESA_SHADER_CACHE_DIR"] = str(CACHE / "mesa-shader-cache")
    return env


@pytest.fixture(scope="module")
def float_classifier():
    """A float32 MobileNetV2 classifier made with TensorFlow (the train extra), cached."""
    pytest.importorskip("tensorflow", reason="the train extra makes the float test model")
    out = CACHE / "models" / "float_mnv2_035_96.tflite"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "tests" / "tools" / "make_float_model.py"), str(out)],
                       check=True, capture_output=True, timeout=600)
    return out


COMPARE = """
import json, sys, numpy as np
from edge_runtime import Classifier
model, image = sys.argv[1:3]
gpu = Classifier(model, backend="gpu")
cpu = Classifier(model, backend="cpu")
x = gpu.prepare(image)
a, b = gpu.infer(x).copy(), cpu.infer(x).copy()
print(json.dumps({"backend": gpu.backend, "full": gpu.describe()["fully_accelerated"], "shape": list(a.shape),
                  "max_abs": float(np.abs(a - b).max()), "top1": [int(a.argmax()), int(b.argmax())]}))
"""


def test_float_model_on_gpu_matches_cpu(lavapipe_env, float_classifier):
    proc = subprocess.run([sys.executable, "-c", COMPARE, str(float_classifier), str(CORAL / "parrot.jpg")],
                          capture_output=True, text=True, env={**os.environ, **lavapipe_env}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["backend"] == "gpu" and r["full"] and r["shape"] == [1, 5]
    assert r["max_abs"] < 1e-4, r  # enforce_f32: float32 on the GPU too
    assert r["top1"][0] == r["top1"][1]


def test_classify_command_on_gpu(lavapipe_env, labels):
    proc = run_edgecls("classify", FLOAT_MODEL, CORAL / "cat.bmp", "--backend", "gpu", "--json", "--top-k", "1",
                       "--labels", labels, env=lavapipe_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["backend"] == "gpu"


def test_auto_never_picks_a_software_rasterizer(lavapipe_env, labels):
    proc = run_edgecls("classify", FLOAT_MODEL, CORAL / "cat.bmp", "--json", "--labels", labels, env=lavapipe_env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["backend"] == "cpu"
    assert "gpu: no Vulkan device" in proc.stderr and "auto chose cpu" in proc.stderr
    doctor = run_edgecls("doctor", "--json", env=lavapipe_env)
    (gpu,) = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "gpu"]
    assert gpu["status"] == "missing" and "only software Vulkan (llvmpipe" in gpu["found"], gpu


NO_VULKAN = {"VK_DRIVER_FILES": str(CACHE / "no-such-icd.json")}


def test_gpu_named_without_vulkan_is_a_clear_error(labels):
    proc = run_edgecls("classify", FLOAT_MODEL, CORAL / "cat.bmp", "--backend", "gpu", "--labels", labels,
                       env=NO_VULKAN)
    line = assert_one_line_error(proc, "GPU accelerator cannot start", str(FLOAT_MODEL))
    assert any(cause in line for cause in ("No adapters found", "no drivers", "Couldn't load Vulkan")), line


def test_auto_falls_back_to_cpu_and_says_why(labels):
    proc = run_edgecls("classify", FLOAT_MODEL, CORAL / "cat.bmp", "--json", "--labels", labels, env=NO_VULKAN)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["backend"] == "cpu"
    assert "gpu: no Vulkan device" in proc.stderr and "auto chose cpu" in proc.stderr
