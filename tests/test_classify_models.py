"""`edgecls classify` on what a bare .tflite says about itself (issue 28, items 19 and 25): the
labels in its TFLite metadata are used, and an embedder is named, not run as a classifier."""

from __future__ import annotations

from conftest import ASSETS, CORAL, assert_one_line_error, json_lines, run_edgecls

EMBEDDER = ASSETS / "tflite_examples" / "mobilenet_v2_035_96_embedder_with_metadata.tflite"
CORAL_V1 = CORAL / "mobilenet_v1_0.25_128_quant.tflite"  # imagenet_labels.txt packed in its metadata


def test_a_bare_model_takes_the_labels_of_its_metadata_and_says_so():
    p = run_edgecls("classify", CORAL_V1, CORAL / "cat.bmp", "--json", "--top-k", "1", "--resize", "bilinear-legacy")
    assert p.returncode == 0, p.stderr
    assert json_lines(p.stdout)[0]["classes"][0]["label"] == "tiger cat"  # Coral's golden row: index 283
    assert "labels from the model's metadata (imagenet_labels.txt)" in p.stderr


def test_labels_given_on_the_command_line_win(tmp_path):
    labels = tmp_path / "numbers.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(1001)))
    p = run_edgecls("classify", CORAL_V1, CORAL / "cat.bmp", "--json", "--top-k", "1", "--labels", labels,
                    "--resize", "bilinear-legacy")
    assert p.returncode == 0, p.stderr
    assert json_lines(p.stdout)[0]["classes"][0]["label"] == "class 283"
    assert "model's metadata" not in p.stderr


def test_an_embedder_is_named_not_classified():
    p = run_edgecls("classify", EMBEDDER, CORAL / "cat.bmp", "--backend", "cpu")
    assert p.stdout == ""  # no feature values printed as class scores
    assert_one_line_error(p, str(EMBEDDER), "an image embedder", "1280-value feature vector", "not a classifier")
    assert p.returncode == 1


def test_an_embedder_with_labels_runs_as_the_classifier_the_user_says_it_is(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"feature {i}\n" for i in range(1280)))
    p = run_edgecls("classify", EMBEDDER, CORAL / "cat.bmp", "--backend", "cpu", "--labels", labels, "--json")
    assert p.returncode == 0, p.stderr
    assert json_lines(p.stdout)[0]["classes"][0]["label"].startswith("feature ")
