"""A bundle whose contract decodes JPEGs DCT-scaled (``"decode": "draft"``) verifies on emulated
Raspberry Pi OS arm64: libjpeg's scaled inverse DCT gives the device the same input tensor, bit
for bit, as the workstation that recorded the golden photos (4:2:0, 4:4:4, progressive and
grayscale JPEGs, at 1/2, 1/4 and 1/8 scale)."""

from __future__ import annotations

import json

import pytest
from arm64 import targets
from conftest import CORAL, coral_bundle_meta
from PIL import Image

from edge_runtime import Classifier, golden, write_bundle
from edge_runtime.model.contract import InputContract

pytestmark = pytest.mark.arm64
MODEL = "mobilenet_v1_0.25_128_quant"


@pytest.fixture(scope="module")
def draft_bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("draft")
    parrot = Image.open(CORAL / "parrot.jpg").convert("RGB")
    photos = []
    for size, kw in [((640, 480), {"quality": 90}), ((1920, 1080), {"quality": 95, "subsampling": 0}),
                     ((1000, 757), {"quality": 85, "progressive": True}), ((640, 480), {"quality": 90, "gray": True})]:
        f = tmp / f"parrot-{size[0]}-{len(photos)}.jpg"
        im = parrot.resize(size, Image.Resampling.BICUBIC)
        if kw.pop("gray", False):
            im = im.convert("L")
        im.save(f, **kw)
        photos.append(golden.Photo(f, "macaw", f.name))
    meta = coral_bundle_meta(MODEL, resize="bilinear")
    meta["input"]["decode"] = "draft"
    contract = InputContract.from_json(meta["input"])
    with Classifier(CORAL / f"{MODEL}.tflite", labels=CORAL / "imagenet_labels.txt", backend="cpu", resize="bilinear",
                    normalization=contract.normalization, decode="draft") as clf:
        shapes = {clf.preprocessor.decode_image(p.path).shape[:2] for p in photos}
        record, files = golden.record(clf, photos)
    assert shapes == {(240, 320), (135, 240), (190, 250)}  # 1/2, 1/8, 1/4: every photo decoded scaled
    files.update({"model.tflite": CORAL / f"{MODEL}.tflite", "labels.txt": CORAL / "imagenet_labels.txt"})
    return write_bundle(tmp / "bundle", files, {**meta, "golden": record})


@pytest.mark.parametrize("release,pi,interpreter", targets())
def test_draft_bundle_verifies_bit_for_bit_on_arm64(arm64s, draft_bundle, release, pi, interpreter):
    arm = arm64s(release)
    p = arm.run("verify", draft_bundle, "--backend", "cpu", "--json", pi=pi, interpreter=interpreter)
    report = json.loads(p.stdout)
    assert len(report["photos"]) == 4, p.stderr[-2000:]
    for c in report["photos"]:
        # verify compares the input tensor's sha256 first: a photo decoded differently fails with
        # an input cause. Coral's uint8 model itself may round differently on arm64 (another
        # kernel), which verify reports as "same input tensor, different int8 outputs".
        assert c["cause"] is None or c["cause"].startswith("same input tensor"), c
        assert c["got_top1"] == c["expected_top1"], c
