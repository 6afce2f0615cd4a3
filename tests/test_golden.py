"""Coral's published models and expectations through `edgecls classify --json`."""

import pytest

from conftest import CORAL, CORAL_RESIZE, GOLDEN, GOLDEN_IDS, assert_golden, assert_one_line_error, json_lines, run_edgecls


@pytest.mark.parametrize("model,image,index,k,min_score,labels", GOLDEN, ids=GOLDEN_IDS)
def test_golden_row_passes_on_cpu(model, image, index, k, min_score, labels):
    proc = run_edgecls("classify", CORAL / f"{model}.tflite", CORAL / image, "--labels", CORAL / labels,
                       "--backend", "cpu", "--top-k", k + 5, "--resize", CORAL_RESIZE, "--json")
    assert proc.returncode == 0, proc.stderr
    (result,) = json_lines(proc.stdout)
    assert result["backend"] == "cpu" and result["resize"] == CORAL_RESIZE
    assert result["interpreter"] == "ai_edge_litert"
    assert_golden(result["classes"], index, k, min_score)
    assert set(result["latency_ms"]) == {"preprocess", "invoke", "postprocess"}


def test_default_resize_is_tensorflow2_and_moves_scores():
    """The default (TF2 half-pixel bilinear) is what edgecls trains with; on Coral's v1 0.75 model
    it puts tabby (282) above tiger cat (283), which is why Coral rows name their resize."""
    proc = run_edgecls("classify", CORAL / "mobilenet_v1_0.75_192_quant.tflite", CORAL / "cat.bmp",
                       "--labels", CORAL / "imagenet_labels.txt", "--json", "--top-k", "2")
    (result,) = json_lines(proc.stdout)
    assert result["resize"] == "bilinear"
    assert [c["index"] for c in result["classes"]] == [282, 283]


EDGETPU_MODELS = sorted(p.name for p in CORAL.glob("*_edgetpu.tflite")) if CORAL.is_dir() else []


@pytest.mark.parametrize("model", EDGETPU_MODELS)
def test_edgetpu_model_without_tpu_names_the_cpu_model(model):
    proc = run_edgecls("classify", CORAL / model, CORAL / "cat.bmp", "--json")
    cpu_model = str(CORAL / model.replace("_edgetpu", ""))
    assert_one_line_error(proc, model, "Edge TPU", cpu_model)


def test_edgetpu_backend_named_explicitly_is_an_error_not_a_fallback():
    proc = run_edgecls("classify", CORAL / "mobilenet_v1_0.25_128_quant.tflite", CORAL / "cat.bmp",
                       "--labels", CORAL / "imagenet_labels.txt", "--backend", "edgetpu")
    assert_one_line_error(proc, "Edge TPU")
    assert proc.stdout == ""
