"""TFLite Model Metadata in a converted bundle's models, read by another tool: MediaPipe Tasks'
ImageClassifier (pip mediapipe, test-only) names the bundle's labels and agrees with edgecls
classify on every golden photo, for the int8 and the float model."""

from __future__ import annotations

import json

import pytest
from conftest import json_lines, run_edgecls


def _mediapipe():
    pytest.importorskip("mediapipe.tasks.metadata.metadata_schema_py_generated",
                        reason="mediapipe is not installed (.ci/run installs it)")
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    return mp, vision, BaseOptions


def test_every_model_of_the_bundle_carries_labels_and_normalization(sign_bundle):
    _mediapipe()
    from edge_runtime import load_bundle
    from edge_runtime.model import metadata as tflite_metadata

    b = load_bundle(sign_bundle)  # checksums cover the files with their metadata
    assert b.meta["tflite_metadata"]["written"] is True
    for name in ("model.tflite", "model_float.tflite"):
        md = tflite_metadata.read_file(str(sign_bundle / name))
        assert md is not None and md.name == b.name and md.labels == b.labels
        assert (md.normalization.mean, md.normalization.std) == (0.0, 1.0)  # raw pixels: normalization is in the graph
        assert md.packed_files == ("labels.txt",) and md.inputs[0].color_space == "RGB"
        assert md.outputs[0].name == "probability" and md.min_parser_version == "1.0.0"


@pytest.mark.parametrize("model", ["model.tflite", "model_float.tflite"])
def test_mediapipe_image_classifier_names_our_labels_and_agrees(sign_bundle, model):
    mp, vision, BaseOptions = _mediapipe()
    meta = json.loads((sign_bundle / "edgecls.json").read_text())
    photos = [sign_bundle / g["file"] for g in meta["golden"]["photos"]]
    labels = (sign_bundle / "labels.txt").read_text().split()
    p = run_edgecls("classify", sign_bundle, *photos, "--json", "--top-k", "1", "--backend", "cpu")
    ours = [r["classes"][0]["label"] for r in json_lines(p.stdout)]
    opts = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(sign_bundle / model)),
                                         max_results=len(labels))
    with vision.ImageClassifier.create_from_options(opts) as clf:
        theirs = []
        for photo in photos:
            cats = clf.classify(mp.Image.create_from_file(str(photo))).classifications[0].categories
            assert sorted(c.category_name for c in cats) == sorted(labels)
            theirs.append(cats[0].category_name)
    assert len(photos) == 10 and theirs == ours


def test_verify_passes_on_the_bundle_with_metadata(sign_bundle):
    _mediapipe()
    p = run_edgecls("verify", sign_bundle, "--backend", "cpu", "--json")
    assert p.returncode == 0 and json_lines(p.stdout)[0]["mode"] == "bit-exact", p.stdout + p.stderr
