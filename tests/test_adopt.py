"""edgecls adopt: Coral's models (metadata written by another tool: TFLite Support's writer) with
the shared photos, and a float Keras model with the [-1, 1] convention converted by hand without
metadata (refused without --mean/--std, right with them)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import (
    CORAL,
    CORAL_RESIZE,
    GOLDEN,
    SIGN_DATA,
    assert_golden,
    assert_one_line_error,
    json_lines,
    run_edgecls,
)


@pytest.fixture
def coral_photos(tmp_path):
    """One folder per class named by Coral's labels, one folder naming no label, one loose photo."""
    root = tmp_path / "photos"
    for folder, photo in (("Egyptian cat", "cat.bmp"), ("kitten", "parrot.jpg")):
        (root / folder).mkdir(parents=True)
        shutil.copy(CORAL / photo, root / folder / photo)
    shutil.copy(CORAL / "bird.bmp", root / "bird.bmp")
    return root


def test_adopt_corals_model_from_its_metadata(coral_photos, tmp_path):
    out = tmp_path / "coral-v2"
    p = run_edgecls("adopt", CORAL / "mobilenet_v2_1.0_224_quant.tflite", "--photos", coral_photos, "--out", out,
                    "--resize", "bilinear-legacy", "--json")
    assert p.returncode == 0, p.stderr
    (rep,) = json_lines(p.stdout)
    assert rep["labels_from"] == "the model's TFLite metadata (imagenet_labels.txt)"
    assert rep["per_class"]["Egyptian cat"] == {"label": "Egyptian cat", "index": 286, "photos": 1, "top1": 1.0}
    assert rep["per_class"]["kitten"]["label"] is None and rep["top1"] == 1.0
    assert "edgecls: warning: folder 'kitten' (1 photos) names no label of the model" in p.stderr
    meta = json.loads((out / "edgecls.json").read_text())
    assert meta["input"]["normalization"] == {"mean": 128.0, "std": 128.0}  # uint8 pixels go in as they are
    assert sorted(meta["files"]) == ["golden/00-Egyptian cat-cat.bmp",
                                     "golden/01-kitten-parrot.jpg", "golden/02-bird.bmp", "labels.txt",
                                     "model.tflite", "model_edgetpu.tflite"]
    assert (out / "model.tflite").read_bytes() == (CORAL / "mobilenet_v2_1.0_224_quant.tflite").read_bytes()
    # the drift reference (issue 35): every photo of --photos, its top-1 label counted
    ref = meta["reference"]
    assert ref["photos"] == 3 and sum(ref["top1"]) == sum(ref["margin"]) == 3 and ref["labels"]["286"] == 1
    v = run_edgecls("verify", out, "--json")
    assert v.returncode == 0 and json_lines(v.stdout)[0]["ok"], v.stdout
    c = run_edgecls("classify", out, CORAL / "cat.bmp", "--json", "--top-k", "1")
    assert json_lines(c.stdout)[0]["classes"][0]["label"] == "Egyptian cat"


@pytest.mark.parametrize("model", sorted({m for m, *_ in GOLDEN} - {"mobilenet_v2_1.0_224_quant"}))
def test_adopt_other_coral_models_verify(model, tmp_path):
    """Each of Coral's other classifiers, adopted from its metadata with Coral's resize, answers
    Coral's photos as Coral's own tests expect (shared/assets/README.md): the label among the top-k
    with at least the score. A photo whose expectation is top-1 goes into a folder named by its
    label, so adopt's own report must give that class top-1 100 %."""
    rows = [r for r in GOLDEN if r[0] == model]
    photos, labels = tmp_path / "photos", {}
    for _, image, index, k, _, label_file in rows:
        labels[index] = (CORAL / label_file).read_text().splitlines()[index]
        folder = photos / labels[index] if k == 1 else photos
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORAL / image, folder / image)
    out = tmp_path / "b"
    p = run_edgecls("adopt", CORAL / f"{model}.tflite", "--photos", photos, "--out", out, "--resize", CORAL_RESIZE,
                    "--json")
    assert p.returncode == 0, p.stderr
    (rep,) = json_lines(p.stdout)
    for _, _, index, k, _, _ in rows:
        if k == 1:
            assert rep["per_class"][labels[index]] == {"label": labels[index], "index": index, "photos": 1, "top1": 1.0}
    v = run_edgecls("verify", out, "--json")
    assert v.returncode == 0 and json_lines(v.stdout)[0]["ok"], v.stdout + v.stderr
    for _, image, index, k, min_score, _ in rows:
        c = run_edgecls("classify", out, CORAL / image, "--json", "--top-k", str(k + 2))
        assert c.returncode == 0, c.stderr
        (result,) = json_lines(c.stdout)
        assert_golden(result["classes"], index, k, min_score)
        if k == 1:
            assert result["classes"][0]["label"] == labels[index]


def test_edgetpu_model_and_keras_model_are_sent_elsewhere(coral_photos, tmp_path):
    p = run_edgecls("adopt", CORAL / "mobilenet_v1_0.25_128_quant_edgetpu.tflite", "--photos", coral_photos,
                    "--out", tmp_path / "b")
    assert_one_line_error(p, "compiled for the Edge TPU", "adopt the CPU model")
    p = run_edgecls("adopt", tmp_path / "m.keras", "--photos", coral_photos, "--out", tmp_path / "b")
    assert_one_line_error(p, "edgecls convert")
    assert not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def minus_one_to_one_model(tmp_path_factory):
    """A float Keras classifier of the 5 sign classes that takes [-1, 1] inputs (normalization
    outside the graph, as hand conversions have it), converted without metadata."""
    from train._tf import keras, tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(5, activation="softmax")(x))
    path = tmp_path_factory.mktemp("minus1") / "model.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return model, path


def test_float_model_without_metadata_needs_mean_and_std(minus_one_to_one_model, tmp_path):
    _, model = minus_one_to_one_model
    labels = tmp_path / "labels.txt"
    labels.write_text("0\n1\n2\n3\n4\n")
    p = run_edgecls("adopt", model, "--photos", SIGN_DATA, "--labels", labels, "--out", tmp_path / "b")
    assert_one_line_error(p, "float input and no normalization", "--mean M --std S", "0/255 for inputs in [0, 1]",
                          "127.5/127.5 for inputs in [-1, 1]")
    assert not (tmp_path / "b").exists()


def test_float_model_with_mean_and_std_matches_keras(minus_one_to_one_model, tmp_path):
    from edge_runtime import Classifier, load_bundle
    from edge_runtime.model.preprocess import load_image, resize

    keras_model, model = minus_one_to_one_model
    labels = tmp_path / "labels.txt"
    labels.write_text("0\n1\n2\n3\n4\n")
    out = tmp_path / "b"
    p = run_edgecls("adopt", model, "--photos", SIGN_DATA, "--labels", labels, "--mean", "127.5", "--std", "127.5",
                    "--out", out, "--json")
    assert p.returncode == 0, p.stderr
    (rep,) = json_lines(p.stdout)
    assert set(rep["per_class"]) == {"0", "1", "2", "3", "4"} and rep["photos"] == 1030
    assert rep["metadata"] == "written by edgecls"
    b = load_bundle(out)
    assert b.input.normalization.mean == 127.5 and b.input.normalization.std == 127.5
    assert run_edgecls("verify", out).returncode == 0
    golden = b.meta["golden"]["photos"]
    assert len(golden) == 10
    with Classifier(out, backend="cpu") as clf:
        for g in golden:
            rgb = resize(load_image(out / g["file"]), 32, 32, "bilinear")
            want = keras_model.predict((rgb[None].astype(np.float32) - 127.5) / 127.5, verbose=0)[0]
            got = clf.scores(clf.infer(clf.prepare(out / g["file"])))
            np.testing.assert_allclose(got, want, atol=1e-5)
    from edge_runtime.model import metadata as tflite_metadata

    md = tflite_metadata.read_file(str(out / "model.tflite"))
    if md is not None:  # with MediaPipe's schema code installed, the model says it too
        assert md.labels == ["0", "1", "2", "3", "4"] and (md.normalization.mean, md.normalization.std) == (127.5, 127.5)
