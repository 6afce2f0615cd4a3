"""Bad input: one line naming the file and a non-zero exit, never a traceback; good work goes on."""

import json
import shutil

import pytest

from conftest import ASSETS, CORAL, assert_one_line_error, json_lines, run_edgecls

V1 = CORAL / "mobilenet_v1_0.25_128_quant.tflite"
LABELS = CORAL / "imagenet_labels.txt"


def classify(model, *extra):
    return run_edgecls("classify", model, CORAL / "cat.bmp", *extra)


def test_truncated_model(tmp_path):
    bad = tmp_path / "truncated.tflite"
    bad.write_bytes(V1.read_bytes()[:300_000])
    assert_one_line_error(classify(bad, "--labels", LABELS), str(bad), "truncated")


def test_text_file_named_tflite(tmp_path):
    bad = tmp_path / "notes.tflite"
    bad.write_text("these are not the weights you are looking for\n")
    assert_one_line_error(classify(bad), str(bad), "not a TFLite model")


def test_model_whose_custom_op_fails():
    bad = CORAL / "invalid_models" / "model_invoking_error.tflite"
    assert_one_line_error(classify(bad), str(bad), "custom op")


def test_model_the_runtime_refuses_to_load():
    bad = ASSETS / "tflite_micro" / "person_detect.tflite"
    assert_one_line_error(classify(bad), str(bad), "quantized_dimension")


def test_missing_model():
    assert_one_line_error(classify(CORAL / "nope.tflite"), "nope.tflite", "not found")


def test_missing_label_file(tmp_path):
    assert_one_line_error(classify(V1, "--labels", tmp_path / "labels.txt"), str(tmp_path / "labels.txt"), "not found")


def test_label_count_that_does_not_match_the_output(tmp_path):
    labels = tmp_path / "five.txt"
    labels.write_text("a\nb\nc\nd\ne\n")
    assert_one_line_error(classify(V1, "--labels", labels), str(labels), "5 labels", "1001 classes")


def test_bundle_with_one_byte_changed(coral_bundle):
    model = coral_bundle / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    assert_one_line_error(classify(coral_bundle), str(model), "sha256")


def test_bundle_with_a_truncated_file(coral_bundle):
    labels = coral_bundle / "labels.txt"
    labels.write_bytes(labels.read_bytes()[:100])
    assert_one_line_error(classify(coral_bundle), str(labels), "truncated")


def test_bundle_of_an_unknown_format_version(coral_bundle):
    meta_path = coral_bundle / "edgecls.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    assert_one_line_error(classify(coral_bundle), "format version 99", "reads version 1")


def test_unreadable_and_non_image_files_among_good_ones(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(CORAL / "cat.bmp", photos / "a_cat.bmp")
    (photos / "b_empty.jpg").write_bytes(b"")
    (photos / "c_text.png").write_text("not a png")
    (photos / "d_truncated.jpg").write_bytes((CORAL / "parrot.jpg").read_bytes()[:20_000])
    shutil.copy(CORAL / "parrot.jpg", photos / "e_parrot.jpg")
    (photos / "readme.md").write_text("not an image, and not picked up from a directory walk")
    proc = run_edgecls("classify", V1, photos, tmp_path / "missing.jpg", "--labels", LABELS, "--json", "--top-k", "1")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    rows = {r["image"].rsplit("/", 1)[-1]: r for r in json_lines(proc.stdout)}
    assert sorted(rows) == ["a_cat.bmp", "b_empty.jpg", "c_text.png", "d_truncated.jpg", "e_parrot.jpg", "missing.jpg"]
    assert rows["a_cat.bmp"]["classes"][0]["label"] == "tiger cat"
    assert rows["e_parrot.jpg"]["classes"][0]["label"] == "macaw"
    for bad in ("b_empty.jpg", "c_text.png", "d_truncated.jpg", "missing.jpg"):
        assert bad in rows[bad]["error"]
    assert "4 image(s) could not be classified" in proc.stderr


@pytest.mark.parametrize("args,fragment", [
    (["--threads", "0"], "from 1 to 256"),
    (["--threads", "100000"], "from 1 to 256"),
    (["--threshold", "1.5"], "from 0 to 1"),
    (["--top-k", "x"], "not an integer"),
    (["--backend", "tpu"], "invalid choice"),
    (["--resize", "bicubic"], "invalid choice"),
])
def test_bad_options_are_usage_errors(args, fragment):
    proc = classify(V1, "--labels", LABELS, *args)
    assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_forced_interpreter_lists_the_valid_ones():
    proc = classify(V1, "--labels", LABELS, "--interpreter", "onnxruntime")
    assert proc.returncode == 2 and "ai_edge_litert, tflite_runtime, tensorflow" in proc.stderr


def test_a_reader_that_goes_away_is_not_a_traceback():
    """`edgecls classify ... | head -1`: the pipe closes early; no traceback, SIGPIPE's status."""
    import subprocess
    import sys

    images = [str(CORAL / "cat.bmp")] * 200
    p = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "classify",
                          str(CORAL / "mobilenet_v1_0.25_128_quant.tflite"), *images],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read()
    p.stderr.close()
    p.wait(60)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert p.returncode == 141
