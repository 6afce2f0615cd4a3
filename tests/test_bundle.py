"""Bundles: written atomically, verified before loading, loaded from a directory or .tar.gz."""

import json
import tarfile

import pytest
from conftest import CORAL, coral_bundle_meta, json_lines, run_edgecls

from edge_runtime import BundleError, Classifier, LabelError, load_bundle, write_bundle
from edge_runtime.bundle.format import sha256_file

MODEL = CORAL / "mobilenet_v1_0.25_128_quant.tflite"


def test_written_bundle_lists_every_file_with_sha256_and_size(coral_bundle):
    meta = json.loads((coral_bundle / "edgecls.json").read_text())
    assert meta["format_version"] == 1
    assert set(meta["files"]) == {"model.tflite", "labels.txt"}
    for name, entry in meta["files"].items():
        assert entry == {"sha256": sha256_file(coral_bundle / name), "size": (coral_bundle / name).stat().st_size}


def test_bundle_classifies_like_the_bare_model(coral_bundle):
    bare = Classifier(MODEL, labels=CORAL / "imagenet_labels.txt", resize="bilinear-legacy", backend="cpu")
    bundled = Classifier(coral_bundle, backend="cpu")
    a, b = bare.classify(CORAL / "cat.bmp"), bundled.classify(CORAL / "cat.bmp")
    assert bundled.resize_method == "bilinear-legacy" and bundled.to_input.kind == "identity"
    assert a.raw.tobytes() == b.raw.tobytes()
    assert b.classes[0].label == "tiger cat"


def test_tar_gz_bundle(tmp_path):
    write_bundle(tmp_path / "b", {"model.tflite": MODEL, "labels.txt": CORAL / "imagenet_labels.txt"},
                 coral_bundle_meta(MODEL.stem), tar=True)
    archive = tmp_path / "b.tar.gz"
    proc = run_edgecls("classify", archive, CORAL / "cat.bmp", "--json", "--top-k", "1")
    assert proc.returncode == 0, proc.stderr
    assert json_lines(proc.stdout)[0]["classes"][0]["label"] == "tiger cat"


def test_truncated_tar_gz_is_a_clear_error(tmp_path):
    write_bundle(tmp_path / "b", {"model.tflite": MODEL, "labels.txt": CORAL / "imagenet_labels.txt"},
                 coral_bundle_meta(MODEL.stem), tar=True)
    archive = tmp_path / "b.tar.gz"
    archive.write_bytes(archive.read_bytes()[:50_000])
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(archive)


def test_archive_entries_cannot_escape(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "x"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../escaped")
    with pytest.raises(BundleError, match="unsafe"):
        load_bundle(evil)
    assert not (tmp_path.parent / "escaped").exists()


def test_failed_write_keeps_the_previous_bundle(coral_bundle):
    before = (coral_bundle / "edgecls.json").read_bytes()
    with pytest.raises(FileNotFoundError):
        write_bundle(coral_bundle, {"model.tflite": MODEL, "labels.txt": CORAL / "no-such-labels.txt"},
                     coral_bundle_meta(MODEL.stem))
    assert (coral_bundle / "edgecls.json").read_bytes() == before
    load_bundle(coral_bundle)  # still verifies
    assert [p.name for p in coral_bundle.parent.iterdir()] == [coral_bundle.name]  # no half bundle left


def test_bundle_refuses_extra_labels_argument(coral_bundle):
    with pytest.raises(LabelError, match="carries its own labels"):
        Classifier(coral_bundle, labels=CORAL / "imagenet_labels.txt")
