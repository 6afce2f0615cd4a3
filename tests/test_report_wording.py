"""What verify and inspect report, and what --backend edgetpu blames (issue 28, item 30)."""

from __future__ import annotations

import ctypes
import json
import tarfile

import pytest

from conftest import CORAL, assert_one_line_error, json_lines, make_coral_bundle, run_edgecls
from edge_runtime.model.interpreter import edgetpu_library


def test_verify_of_an_archive_reports_the_archive_not_a_deleted_temporary_directory(tmp_path):
    bundle = make_coral_bundle(tmp_path / "coral")
    archive = tmp_path / "coral.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bundle, arcname="coral")
    p = run_edgecls("verify", archive, "--backend", "cpu", "--json")
    assert p.returncode == 0, p.stderr
    assert json_lines(p.stdout)[0]["bundle"] == str(archive)
    text = run_edgecls("verify", archive, "--backend", "cpu")
    assert text.returncode == 0 and text.stdout.startswith(f"{archive}: cpu"), text.stdout


def test_inspect_of_a_bundle_sees_the_metadata_its_models_carry_and_asks_for_no_labels(tmp_path):
    """Coral's model carries TFLite metadata; a bundle made around it (as adopt does) records none in
    edgecls.json. inspect reads the model, and a bundle brings its own labels.txt."""
    bundle = make_coral_bundle(tmp_path / "coral")
    assert "tflite_metadata" not in json.loads((bundle / "edgecls.json").read_text())
    p = run_edgecls("inspect", bundle)
    assert p.returncode == 0, p.stderr
    assert "TFLite metadata in its models: yes: model.tflite ('ImageClassifier')" in p.stdout, p.stdout
    assert "not recorded" not in p.stdout and "needs" not in p.stdout, p.stdout
    r = json.loads(run_edgecls("inspect", bundle, "--json").stdout)
    assert r["models"]["cpu"]["needs"] is None and r["labels"]["count"] == 1001




def _has_libedgetpu() -> bool:
    try:
        ctypes.CDLL(edgetpu_library())
        return True
    except OSError:
        return False


@pytest.mark.skipif(_has_libedgetpu(), reason="libedgetpu is installed here")
@pytest.mark.parametrize("model", ["bundle", "bare"])
def test_backend_edgetpu_without_libedgetpu_names_the_library_first(model, tmp_path):
    target = make_coral_bundle(tmp_path / "coral") if model == "bundle" else CORAL / "mobilenet_v1_0.25_128_quant.tflite"
    p = run_edgecls("classify", target, CORAL / "cat.bmp", "--backend", "edgetpu")
    line = assert_one_line_error(p, "Edge TPU library libedgetpu.so.1 is not installed", "install libedgetpu1-std")
    assert line.index("libedgetpu.so.1") < line.index("model_edgetpu.tflite"), line
