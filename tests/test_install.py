"""Install-level checks in fresh virtual environments: the runtime alone (no TensorFlow), and
the resolver with tflite-runtime 2.14 forced (which needs numpy<2)."""

import subprocess

import pytest

from conftest import CORAL, CORAL_RESIZE, GOLDEN, GOLDEN_IDS, assert_golden, json_lines, run_edgecls
from venvs import base_requirements, make_venv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime_python():
    return make_venv("runtime", base_requirements() + ["setuptools>=68"])


@pytest.fixture(scope="module")
def tflite_python():
    return make_venv("tflite-runtime", ["tflite-runtime==2.14.0", "numpy<2", "pillow", "setuptools>=68"])


def test_runtime_only_install_has_no_tensorflow(runtime_python):
    pip_list = subprocess.run([str(runtime_python), "-m", "pip", "list", "--format=freeze"],
                              capture_output=True, text=True, check=True).stdout.lower()
    assert "ai-edge-litert==" in pip_list and "edgecls==" in pip_list
    assert "tensorflow" not in pip_list and "keras" not in pip_list
    assert (runtime_python.parent / "edgecls").exists()  # the console script


def test_runtime_only_classify_imports_no_tensorflow_or_keras(runtime_python):
    code = f"""
import sys, json
from edge_runtime import Classifier
c = Classifier({str(CORAL / 'mobilenet_v2_1.0_224_quant.tflite')!r}, labels={str(CORAL / 'imagenet_labels.txt')!r})
r = c.classify({str(CORAL / 'cat.bmp')!r})
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'train', 'convert', 'deploy'))
print(json.dumps({{"label": r.classes[0].label, "heavy": heavy, "interpreter": c.interpreter}}))
"""
    out = subprocess.run([str(runtime_python), "-c", code], capture_output=True, text=True, check=True).stdout
    result = json_lines(out)[-1]
    assert result == {"label": "Egyptian cat", "heavy": [], "interpreter": "ai_edge_litert"}


def test_runtime_only_classify_and_doctor_commands(runtime_python):
    edgecls = str(runtime_python.parent / "edgecls")
    proc = subprocess.run([edgecls, "classify", str(CORAL / "mobilenet_v2_1.0_224_inat_bird_quant.tflite"),
                           str(CORAL / "parrot.jpg"), "--labels", str(CORAL / "inat_bird_labels.txt"), "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json_lines(proc.stdout)[0]["classes"][0]["index"] == 923
    doctor = subprocess.run([edgecls, "doctor", "--json"], capture_output=True, text=True)
    assert doctor.returncode == 0, doctor.stderr
    checks = {c["name"]: c for c in json_lines(doctor.stdout.replace("\n", " "))[0]["checks"]}
    assert checks["interpreter"]["status"] == "ok" and "ai_edge_litert" in checks["interpreter"]["found"]
    assert "tensorflow" not in checks["interpreter"]["found"]


@pytest.mark.parametrize("model,image,index,k,min_score,labels", GOLDEN, ids=GOLDEN_IDS)
def test_golden_rows_with_tflite_runtime_forced(tflite_python, model, image, index, k, min_score, labels):
    proc = run_edgecls("classify", CORAL / f"{model}.tflite", CORAL / image, "--labels", CORAL / labels,
                       "--backend", "cpu", "--top-k", k + 5, "--resize", CORAL_RESIZE, "--json",
                       python=str(tflite_python), env={"EDGECLS_INTERPRETER": "tflite_runtime"})
    assert proc.returncode == 0, proc.stderr
    (result,) = json_lines(proc.stdout)
    assert result["interpreter"] == "tflite_runtime"
    assert_golden(result["classes"], index, k, min_score)


def test_forcing_a_missing_interpreter_is_an_error(runtime_python):
    proc = run_edgecls("classify", CORAL / "mobilenet_v1_0.25_128_quant.tflite", CORAL / "cat.bmp",
                       python=str(runtime_python), env={"EDGECLS_INTERPRETER": "tflite_runtime"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "tflite_runtime cannot be imported" in proc.stderr and "pip install tflite-runtime" in proc.stderr
