"""The fast path from a photo to a label (issue 16): the separable bilinear resize, DCT-scaled JPEG
decoding as part of the contract, and classify() writing straight into the input tensor. What a
user relies on: the same pixels and the same outputs as the plain path, and a bundle's decode
mode honoured from training to the device."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import CORAL, coral_bundle_meta, run_edgecls
from PIL import Image

from edge_runtime import Classifier, golden, write_bundle
from edge_runtime.model.contract import ContractError, InputContract
from edge_runtime.model.preprocess import (
    InputConverter,
    Normalization,
    Preprocessor,
    load_image,
    load_image_for,
    resize,
)

V1 = CORAL / "mobilenet_v1_0.25_128_quant.tflite"
LABELS = CORAL / "imagenet_labels.txt"


def tf_bilinear(img: np.ndarray, h: int, w: int, half_pixel: bool = True) -> np.ndarray:
    """TensorFlow's resize_bilinear written out plainly: four corners per output pixel, lerp in x
    then y in float32, truncated (the reference test_preprocess.py checks against TensorFlow)."""
    def axis(n_in: int, n_out: int):
        if half_pixel:
            x = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * np.float32(n_in / n_out) - np.float32(0.5)
        else:
            x = np.arange(n_out, dtype=np.float32) * np.float32(n_in / n_out)
        f = np.floor(x)
        return np.maximum(f, 0).astype(int), np.minimum(np.ceil(x), n_in - 1).astype(int), (x - f).astype(np.float32)

    y0, y1, yl = axis(img.shape[0], h)
    x0, x1, xl = axis(img.shape[1], w)
    p = img.astype(np.float32)
    xl, yl = xl[None, :, None], yl[:, None, None]
    top = p[y0][:, x0] + (p[y0][:, x1] - p[y0][:, x0]) * xl
    bottom = p[y1][:, x0] + (p[y1][:, x1] - p[y1][:, x0]) * xl
    return (top + (bottom - top) * yl).astype(np.uint8)


@pytest.mark.parametrize("src", [(480, 640), (240, 320), (1, 1), (1, 7), (9, 1), (100, 100), (17, 5), (481, 643)])
def test_separable_resize_equals_the_four_corner_formula(src):
    rng = np.random.default_rng(sum(src))
    img = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    for size in [(224, 224), (128, 128), (96, 160), (3, 2), (480, 640)]:
        for method, half in (("bilinear", True), ("bilinear-legacy", False)):
            want = tf_bilinear(img, *size, half_pixel=half)
            assert np.array_equal(resize(img, *size, method=method), want), (src, size, method)
            buf = np.full((1, *size, 3), 7, np.uint8)  # like an interpreter's input tensor
            out = resize(img, *size, method=method, out=buf[0])
            assert out.base is buf and np.array_equal(buf[0], want)


def _jpeg(path, size, exif_orientation=None, mode="RGB"):
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)).resize(size)
    im = im.convert(mode)
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(path, quality=90, exif=exif)
    else:
        im.save(path, quality=90)
    return path


def test_draft_decodes_a_jpeg_at_the_smallest_dct_scale_that_keeps_the_model_size(tmp_path):
    photo = _jpeg(tmp_path / "f.jpg", (640, 480))
    assert load_image_for(photo, 224, 224, "draft").shape == (240, 320, 3)  # 1/2
    assert load_image_for(photo, 128, 128, "draft").shape == (240, 320, 3)  # 480 // 128 = 3: still 1/2
    assert load_image_for(photo, 96, 96, "draft").shape == (120, 160, 3)  # 1/4
    assert load_image_for(photo, 224, 224, "full").shape == (480, 640, 3)
    assert load_image_for(photo, 300, 300, "draft").shape == (480, 640, 3)  # not twice the size: full
    # Rotated by EXIF (orientation 6: 90 degrees): the size asked for is the upright one.
    turned = _jpeg(tmp_path / "t.jpg", (640, 200), exif_orientation=6)
    assert load_image(turned).shape == (640, 200, 3)
    assert load_image_for(turned, 300, 96, "draft").shape == (320, 100, 3)
    gray = _jpeg(tmp_path / "g.jpg", (640, 480), mode="L")
    assert load_image_for(gray, 224, 224, "draft").shape == (240, 320, 3)
    # Other formats and arrays decode fully; the same errors as load_image.
    png = tmp_path / "f.png"
    Image.open(photo).save(png)
    assert load_image_for(png, 96, 96, "draft").shape == (480, 640, 3)
    frame = np.zeros((480, 640, 3), np.uint8)
    assert load_image_for(frame, 96, 96, "draft") is frame
    with pytest.raises(ValueError, match="full, draft"):
        load_image_for(photo, 96, 96, "fast")  # type: ignore[arg-type]
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(Exception, match="bad.jpg"):
        load_image_for(tmp_path / "bad.jpg", 96, 96, "draft")


def test_contract_records_decode_and_old_contracts_mean_full():
    base = {"height": 128, "width": 128}
    assert InputContract.from_json(base).decode == "full"
    c = InputContract.from_json({**base, "decode": "draft"})
    assert c.decode == "draft" and c.to_json()["decode"] == "draft"
    assert "decode" not in InputContract(128, 128).to_json()  # a full-decode contract is written as before
    with pytest.raises(ContractError, match=r"input\.decode must be one of full, draft"):
        InputContract.from_json({**base, "decode": "fast"})


@pytest.mark.parametrize("dtype,scale,zero_point,norm,kind", [
    (np.uint8, 1.0, 0, Normalization(0, 1), "identity"),
    (np.int8, 1.0, -128, Normalization(0, 1), "offset -128"),
    (np.uint8, 1 / 128, 128, Normalization(127.5, 127.5), "lookup table"),
    (np.float32, 0.0, 0, Normalization(127.5, 127.5), "float lookup (x - 127.5) / 127.5"),
])
def test_writing_into_the_input_buffer_equals_the_returned_tensor(dtype, scale, zero_point, norm, kind):
    conv = InputConverter(np.dtype(dtype), scale, zero_point, norm)
    assert conv.kind == kind
    frame = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    pre = Preprocessor(96, 128, conv)
    buf = np.zeros((1, 96, 128, 3), dtype)
    pre.into(frame, buf)
    assert np.array_equal(buf[0], pre(frame))


@pytest.mark.parametrize("normalization", [None, Normalization(127.5, 127.5)])
def test_classify_writes_the_tensor_prepare_makes_and_gets_the_same_output(tmp_path, normalization):
    photo = _jpeg(tmp_path / "f.jpg", (640, 480))
    with Classifier(V1, labels=LABELS, backend="cpu", threads=1, normalization=normalization) as clf:
        assert clf.to_input.kind == ("identity" if normalization is None else "lookup table")
        for image in (str(photo), load_image(photo), CORAL / "parrot.jpg"):
            fast = clf.classify(image)
            slow = clf.rank(clf.infer(clf.prepare(image)))
            assert np.array_equal(fast.raw, slow.raw)
            assert [c.index for c in fast.classes] == [c.index for c in slow.classes]


def test_a_draft_bundle_decodes_by_its_contract_and_verifies(tmp_path):
    """Golden photos recorded with the bundle's decode mode verify on the device path; the same
    model decoding fully would feed another tensor (parrot.jpg is 512x929: 1/4 scale for 128)."""
    meta = coral_bundle_meta("mobilenet_v1_0.25_128_quant", resize="bilinear")
    meta["input"]["decode"] = "draft"
    contract = InputContract.from_json(meta["input"])
    photo = CORAL / "parrot.jpg"
    with Classifier(V1, labels=LABELS, backend="cpu", resize="bilinear", normalization=contract.normalization,
                    decode="draft") as clf:
        record, files = golden.record(clf, [golden.Photo(photo, "macaw", "parrot.jpg")])
        full = clf.preprocessor.decode_image(photo)
    assert full.shape == (233, 128, 3)
    files.update({"model.tflite": V1, "labels.txt": LABELS})
    bundle = write_bundle(tmp_path / "b", files, {**meta, "golden": record})
    assert json.loads((bundle / "edgecls.json").read_text())["input"]["decode"] == "draft"
    with Classifier(bundle, backend="cpu") as clf:
        assert clf.decode == "draft" and clf.describe()["decode"] == "draft"
        assert clf.classify(photo).classes[0].label == "macaw"
        assert golden.input_hash(clf.prepare(photo)) == record["photos"][0]["input_sha256"]
    with Classifier(bundle, backend="cpu", decode="full") as clf:
        assert golden.input_hash(clf.prepare(photo)) != record["photos"][0]["input_sha256"]
    p = run_edgecls("verify", bundle, "--backend", "cpu")
    assert p.returncode == 0, p.stdout + p.stderr
