"""Install-level checks in fresh virtual environments: the runtime alone (no TensorFlow), the
resolver with tflite-runtime 2.14 forced (which needs numpy<2), and the workstation install
writing TFLite metadata with nothing but its own dependencies."""

import json
import os
import subprocess
import warnings

import pytest
from conftest import CORAL, CORAL_RESIZE, GOLDEN, GOLDEN_IDS, assert_golden, json_lines, run_edgecls
from venvs import base_requirements, install_venv, make_venv

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


# --- the workstation install: metadata written with no MediaPipe (issue 32) -------------------

TINY_LABELS = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def train_python():
    """The README's workstation line, `pip install '.[train]'`, in a fresh venv (no MediaPipe)."""
    return install_venv("train", "train")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 3-class Keras model of 32x32 colour photos (raw pixels in, normalization in the graph),
    trained here in seconds, and its photos: one folder per class, 40 photos each, at the
    model's input size so that every tool feeds it the same pixels."""
    import numpy as np
    from PIL import Image

    from train._tf import keras

    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for k, label in enumerate(TINY_LABELS):
        (root / "photos" / label).mkdir(parents=True)
        for i in range(40):
            img = rng.integers(0, 90, (32, 32, 3))
            img[..., k] += 150
            Image.fromarray(img.astype(np.uint8)).save(root / "photos" / label / f"{i:02d}.png")
            xs.append(img)
            ys.append(k)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    with warnings.catch_warnings():  # Keras 3 on numpy 2 (as in test_ladder.py)
        warnings.filterwarnings("ignore", "__array__ implementation doesn't accept a copy keyword", DeprecationWarning)
        model.fit(np.array(xs, np.float32), np.array(ys), epochs=60, batch_size=16, verbose=0)
        model.save(root / "tiny.keras")
    (root / "labels.txt").write_text("".join(f"{label}\n" for label in TINY_LABELS))
    return root


def _user_env() -> dict[str, str]:
    """The environment of a user of that venv: no PYTHONPATH pointing into this checkout."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_train_install_writes_metadata_that_mediapipe_reads(train_python, tiny_model, tmp_path):
    """After `pip install '.[train]'` alone (no MediaPipe, no tflite-support), convert writes TFLite
    Model Metadata into both models: its bytes are those MediaPipe's generated schema code writes,
    and MediaPipe Tasks' ImageClassifier (in the project's venv) names the labels and gives the
    same top-1 as `edgecls classify` on every photo, int8 and float (which it refuses without
    NormalizationOptions)."""
    from convert import metadata
    from edge_runtime.model import metadata as reader
    from edge_runtime.model.preprocess import Normalization

    pip_list = subprocess.run([str(train_python), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                              text=True, check=True, env=_user_env()).stdout.lower()
    assert "tensorflow==2.21" in pip_list and "mediapipe" not in pip_list and "tflite-support" not in pip_list
    edgecls = str(train_python.parent / "edgecls")
    bundle = tmp_path / "tiny"
    p = subprocess.run([edgecls, "convert", tiny_model / "tiny.keras", "--out", bundle, "--labels",
                        tiny_model / "labels.txt", "--calibration-data", tiny_model / "photos", "--calibration", "60"],
                       capture_output=True, text=True, cwd=tmp_path, env=_user_env(), timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert not [line for line in p.stderr.splitlines() if "warning" in line and "metadata" in line], p.stderr
    meta = json.loads((bundle / "edgecls.json").read_text())
    assert meta["tflite_metadata"] == {"written": True, "models": ["model.tflite", "model_float.tflite"],
                                       "min_parser_version": "1.0.0"}
    mp_fb = pytest.importorskip(metadata.ELSEWHERE[0], reason="mediapipe is not installed (scripts/setup installs it)")
    for name in ("model.tflite", "model_float.tflite"):
        data = (bundle / name).read_bytes()
        md = reader.read(data, name)
        assert md.name == "tiny" and md.labels == TINY_LABELS and md.packed_files == ("labels.txt",)
        assert (md.normalization.mean, md.normalization.std) == (0.0, 1.0)
        features = (meta.get("features") or {}).get("dim", 0)  # the embedding output edgecls teach uses
        same = metadata.Description(md.name, md.labels, Normalization(0.0, 1.0), "probabilities", version=md.version,
                                    author=md.author, features=features)
        first = features > 0 and metadata._features_first(data)
        assert reader.metadata_buffer(data) == metadata.metadata_buffer(same, schema=mp_fb, features_first=first)
    _mediapipe_agrees(edgecls, bundle, sorted((tiny_model / "photos").rglob("*.png"))[::7])


def _mediapipe_agrees(edgecls: str, bundle, photos) -> None:
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    p = subprocess.run([edgecls, "classify", bundle, *photos, "--json", "--top-k", "1", "--backend", "cpu"],
                       capture_output=True, text=True, env=_user_env(), timeout=300)
    assert p.returncode == 0, p.stderr
    ours = [r["classes"][0]["label"] for r in json_lines(p.stdout)]
    assert set(ours) == set(TINY_LABELS)
    for model in ("model.tflite", "model_float.tflite"):
        opts = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(bundle / model)),
                                             max_results=3)
        with vision.ImageClassifier.create_from_options(opts) as clf:
            theirs = []
            for photo in photos:
                cats = clf.classify(mp.Image.create_from_file(str(photo))).classifications[0].categories
                assert sorted(c.category_name for c in cats) == sorted(TINY_LABELS)
                theirs.append(cats[0].category_name)
        assert theirs == ours, model
