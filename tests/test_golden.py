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


@pytest.mark.parametrize("recorded_on,off,ok", [
    ("aarch64", 1, True),  # another CPU architecture: XNNPACK may round a result one step apart
    ("aarch64", 2, False),  # two steps is not a rounding difference
    (None, 1, True),  # a bundle from before the machine was recorded: the same allowance
    ("x86_64", 1, False),  # recorded here: bit for bit
])
def test_verify_allows_one_int8_step_only_for_outputs_recorded_on_another_architecture(tmp_path, recorded_on, off, ok):
    import platform

    from conftest import coral_bundle_meta

    from edge_runtime import Classifier, golden, write_bundle
    from edge_runtime.bundle.verify import verify
    from edge_runtime.model.contract import InputContract

    if platform.machine() != "x86_64":
        pytest.skip("the cases name x86_64 as this machine")
    model = "mobilenet_v1_0.25_128_quant"
    photos = [golden.Photo(CORAL / f, "x", f) for f in ("parrot.jpg", "cat.bmp")]
    meta = coral_bundle_meta(model, resize="bilinear")
    contract = InputContract.from_json(meta["input"])
    with Classifier(CORAL / f"{model}.tflite", labels=CORAL / "imagenet_labels.txt", backend="cpu", resize="bilinear",
                    normalization=contract.normalization) as clf:
        record, files = golden.record(clf, photos)
    assert record["machine"] == "x86_64"
    raw = record["photos"][0]["raw"]
    i = min(range(len(raw)), key=lambda j: abs(raw[j] - 128))  # a value that can move either way
    raw[i] += off
    if recorded_on is None:
        del record["machine"]
    else:
        record["machine"] = recorded_on
    files.update({"model.tflite": CORAL / f"{model}.tflite", "labels.txt": CORAL / "imagenet_labels.txt"})
    bundle = write_bundle(tmp_path / "b", files, {**meta, "golden": record})
    rep = verify(bundle, backend="cpu")
    assert rep.ok is ok and rep.photos[1].ok and rep.photos[1].exact, rep
    assert rep.photos[0].exact is False and rep.photos[0].ok is ok
    assert rep.mode == ("bit-exact" if recorded_on == "x86_64" else
                        f"bit-exact, or within one int8 step (outputs recorded on {recorded_on or 'another machine'})")
    if not ok:
        assert "different int8 outputs" in rep.photos[0].cause
