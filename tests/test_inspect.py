"""edgecls inspect on every kind of model in the shared assets, the broken ones included, and the
metadata reader against the schema's generated code (MediaPipe's wheel)."""

from __future__ import annotations

import pytest
from conftest import ASSETS, CORAL, assert_one_line_error, json_lines, run_edgecls

EMBEDDER = ASSETS / "tflite_examples" / "mobilenet_v2_035_96_embedder_with_metadata.tflite"
PERSON = ASSETS / "tflite_micro" / "person_detect.tflite"
INVOKE_ERROR = CORAL / "invalid_models" / "model_invoking_error.tflite"


def _inspect(path) -> tuple[dict, object]:
    p = run_edgecls("inspect", path, "--json")
    assert "Traceback" not in p.stderr, p.stderr
    (report,) = json_lines(p.stdout)
    return report, p


def test_corals_int8_classifier_with_its_metadata():
    r, p = _inspect(CORAL / "mobilenet_v1_0.25_128_quant.tflite")
    assert p.returncode == 0 and r["runs"] is True
    assert r["kind"] == "RGB image classifier (1001 classes)"
    assert r["inputs"] == [{"name": "input", "shape": [1, 128, 128, 3], "dtype": "uint8", "scale": 0.0078125,
                            "zero_point": 128}]
    assert r["outputs"][0]["shape"] == [1, 1001] and r["outputs"][0]["scale"] == 1 / 256
    assert r["ops"] == {"CONV_2D": 15, "DEPTHWISE_CONV_2D": 13, "AVERAGE_POOL_2D": 1, "RESHAPE": 1, "SOFTMAX": 1}
    m = r["metadata"]  # written by TFLite Support's metadata writer, labels packed in the model
    assert m["labels"] == {"count": 1001, "first": ["background", "tench, Tinca tinca", "goldfish, Carassius auratus",
                                                    "great white shark, white shark, man-eater, man-eating shark, "
                                                    "Carcharodon carcharias", "tiger shark, Galeocerdo cuvieri"]}
    assert m["normalization"] == {"mean": 127.5, "std": 127.5} and m["packed_files"] == ["imagenet_labels.txt"]
    assert r["edgetpu"]["prediction"]["fully_mapped"] is True
    assert r["size_bytes"] == 525598


def test_edgetpu_compiled_model_is_named_and_not_run_without_a_tpu():
    r, p = _inspect(CORAL / "mobilenet_v1_0.25_128_quant_edgetpu.tflite")
    assert r["edgetpu_compiled"] is True and r["kind"].startswith("Edge TPU-compiled RGB image classifier")
    assert r["edgetpu"] == {"compiled": True, "edgetpu_custom_ops": 1, "cpu_ops": 0}
    assert r["runs"] is False and "run the CPU model" in r["reason"]
    assert_one_line_error(p, "edgecls cannot run this model", "Edge TPU")


def test_float_embedder_with_metadata_is_not_a_classifier():
    r, p = _inspect(EMBEDDER)
    assert r["kind"] == "RGB image embedder (1280-value feature vector, no labels)"
    assert r["inputs"][0]["dtype"] == "float32" and r["invoke"] == "ok"
    assert r["metadata"]["name"] == "ImageEmbedder" and r["metadata"]["normalization"] == {"mean": 127.5, "std": 127.5}
    assert r["needs"]["normalization"] == "from the metadata: (pixel - 127.5) / 127.5"
    assert_one_line_error(p, "an embedder, not a classifier")


def test_model_that_no_runtime_loads():
    r, p = _inspect(PERSON)
    assert r["kind"] == "TFLite model that does not load" and r["size_bytes"] == 300568
    assert "quantized_dimension must be in range" in r["reason"] and r["reason"].count("quantized_dimension") == 1
    assert_one_line_error(p, "quantized_dimension")


def test_model_whose_custom_op_fails():
    r, p = _inspect(INVOKE_ERROR)
    assert r["ops"] == {"fake-op-double": 1}
    assert "fake-op-double" in r["invoke"] and r["runs"] is False
    assert r["edgetpu"]["prediction"]["first_cpu_op"]["op"] == "fake-op-double"
    assert_one_line_error(p, "is not [1, height, width, 3]")


def test_not_a_model_at_all():
    r, p = _inspect(CORAL / "cat.bmp")
    assert r == {"path": str(CORAL / "cat.bmp"), "kind": "not a TFLite model", "runs": False,
                 "reason": "not a TFLite model (no TFL3 flatbuffer header); pass a .tflite file written by a TFLite converter"}
    assert_one_line_error(p, "no TFL3")


def test_a_bundle_and_its_models(coral_bundle):
    r, p = _inspect(coral_bundle)
    assert p.returncode == 0 and r["kind"] == "edgecls bundle" and r["labels"]["count"] == 1001
    assert list(r["models"]) == ["cpu"] and r["models"]["cpu"]["runs"] is True
    text = run_edgecls("inspect", coral_bundle).stdout
    assert "edgecls runs it: yes" in text and "1001 labels" in text


@pytest.mark.parametrize("model", [CORAL / "mobilenet_v2_1.0_224_inat_bird_quant.tflite", EMBEDDER])
def test_reader_agrees_with_the_generated_schema_code(model):
    fb = pytest.importorskip("mediapipe.tasks.metadata.metadata_schema_py_generated")
    from edge_runtime.model import metadata as tflite_metadata

    data = model.read_bytes()
    buf = tflite_metadata.metadata_buffer(data)
    ref = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAs(buf, 0))
    ours = tflite_metadata.parse(buf, tflite_metadata.packed_files(data))
    assert ours.name == ref.name.decode() and ours.min_parser_version == ref.minParserVersion.decode()
    ref_in = ref.subgraphMetadata[0].inputTensorMetadata[0]
    assert list(ours.inputs[0].mean) == list(ref_in.processUnits[0].options.mean)
    assert list(ours.inputs[0].std) == list(ref_in.processUnits[0].options.std)
    ref_files = ref.subgraphMetadata[0].outputTensorMetadata[0].associatedFiles or []
    assert [f.name for f in ours.outputs[0].files] == [f.name.decode() for f in ref_files]
