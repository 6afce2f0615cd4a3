"""`--backend auto` and `edgecls doctor` on a machine without a GPU (issue 28, items 20 and 28):
Vulkan drivers installed but no device. auto's note says "gpu: no Vulkan device" without the
drivers' own log lines, and doctor does not call the GPU ok. Needs no GPU and no lavapipe."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ASSETS, CORAL, ROOT, run_edgecls
from edge_runtime.model import interpreter as interp

EMBEDDER = ASSETS / "tflite_examples" / "mobilenet_v2_035_96_embedder_with_metadata.tflite"
DRIVER_NOISE = ("XDG_RUNTIME_DIR", "delegate_webgpu", "E0000", "ERROR:", "vkCreateInstance", "Loader Message")


@pytest.fixture
def absent_gpu(tmp_path):
    """The Vulkan driver of a GPU that is not in this machine: its ICD file is there (as a desktop
    install ships Intel's and AMD's), it finds no device."""
    icd = tmp_path / "absent_gpu_icd.json"
    icd.write_text(json.dumps({"file_format_version": "1.0.0",
                               "ICD": {"library_path": str(tmp_path / "libvulkan_absent.so"), "api_version": "1.3.0"}}))
    return {"VK_DRIVER_FILES": str(icd)}


@pytest.fixture
def labels(tmp_path):
    path = tmp_path / "labels.txt"  # the float embedder, run as a 1280-class model (with labels it is one)
    path.write_text("".join(f"feature {i}\n" for i in range(1280)))
    return path


def test_auto_says_no_vulkan_device_and_leaves_the_driver_lines_to_doctor(absent_gpu, labels):
    p = run_edgecls("classify", EMBEDDER, CORAL / "cat.bmp", "--labels", labels, "--json", env=absent_gpu)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["backend"] == "cpu"
    (note,) = p.stderr.splitlines()  # one line, as before
    assert "; gpu: no Vulkan device (edgecls doctor says more); auto chose cpu" in note, note
    assert not [w for w in DRIVER_NOISE if w in p.stderr], p.stderr


def test_this_machines_own_drivers_without_a_gpu_make_no_noise(labels):
    devices = interp.vulkan_devices()
    if devices and any(not d.software for d in devices):
        pytest.skip(f"this machine has a Vulkan GPU: {devices}")
    p = run_edgecls("classify", EMBEDDER, CORAL / "cat.bmp", "--labels", labels)
    assert p.returncode == 0, p.stderr
    assert "gpu: no Vulkan device" in p.stderr and not [w for w in DRIVER_NOISE if w in p.stderr], p.stderr


def test_doctor_does_not_call_a_gpu_without_a_device_ok(absent_gpu):
    p = run_edgecls("doctor", "--json", env=absent_gpu)
    assert p.returncode == 0, p.stderr
    (gpu,) = [c for c in json.loads(p.stdout)["checks"] if c["name"] == "gpu"]
    assert gpu["status"] == "missing" and gpu["found"].startswith("no Vulkan device"), gpu
    assert "absent_gpu_icd.json" in gpu["found"] and gpu["fix"]
    assert not [w for w in DRIVER_NOISE if w in p.stderr], p.stderr


def test_the_device_probe_prints_nothing_itself(absent_gpu):
    code = "from edge_runtime.model import interpreter as i; print(i.vulkan_devices())"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**__import__("os").environ, **absent_gpu}, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() in ("[]", "None") and p.stderr == "", p.stderr


def test_without_a_gpu_device_node_auto_does_not_load_the_vulkan_drivers(labels):
    """No /dev/dri render node (nor NVIDIA's, nor WSL's): no hardware Vulkan device can answer, so
    auto does not dlopen libvulkan and every driver (50 to 90 ms of each start on this machine)."""
    if not interp.gpu_nodes_absent():
        pytest.skip("this machine has a GPU device node")
    code = ("import sys; from edge_runtime import Classifier\n"
            f"c = Classifier({str(EMBEDDER)!r}, labels={str(labels)!r}, backend='auto')\n"
            "print(c.backend, any('libvulkan' in l for l in open('/proc/self/maps')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["cpu", "False"], p.stdout
