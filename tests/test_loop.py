"""The loop end to end: photos collected from a video into a fresh dataset, trained (tiny), converted
and classified; and what a second round of photos does to the dataset: `_` folders are not classes,
and the photos of the first round's test split stay in test."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SIGN_DATA, json_lines, run_edgecls
from train import data

WEIGHTS = SIGN_DATA.parents[1] / "keras_weights" / "mobilenet_2_5_224_tf_no_top.h5"
SMALL = ["--arch", "mobilenet_v1", "--alpha", "0.25", "--size", "64", "--weights", str(WEIGHTS), "--batch", "8"]
PER_CLASS = 24


def sign_photos(digit: str, start: int, n: int) -> list[Path]:
    return sorted((SIGN_DATA / digit).iterdir())[start:start + n]


def video_of(paths: list[Path], out: Path) -> Path:
    cv2 = pytest.importorskip("cv2")
    w = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 160))
    for p in paths:
        with Image.open(p) as im:
            a = np.asarray(im.convert("RGB").resize((160, 160), Image.BILINEAR))
        w.write(np.ascontiguousarray(a[:, :, ::-1]))
    w.release()
    return out


@pytest.mark.slow
def test_collect_train_convert_classify(tmp_path):
    ds = tmp_path / "photos"
    for digit, label in (("0", "fist"), ("2", "two")):
        video = video_of(sign_photos(digit, 0, PER_CLASS), tmp_path / f"{label}.avi")
        p = run_edgecls("collect", ds, "--source", video, "--label", label, "--count", str(PER_CLASS), "--every", "0")
        assert p.returncode == 0, p.stderr
        assert len(list((ds / label).glob("*.jpg"))) == PER_CLASS
    (ds / "_review" / "fist").mkdir(parents=True)  # a mined frame waiting for review: not a class
    shutil.copyfile(next((ds / "fist").glob("*.jpg")), ds / "_review" / "fist" / "x_fist_0.500.jpg")
    run = tmp_path / "run"
    p = run_edgecls("train", ds, "--out", run, *SMALL, "--epochs", "12", "--fine-tune-epochs", "0", "--lr", "0.003",
                    "--json", timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "ignored folder(s) _review" in p.stderr
    bundle = tmp_path / "bundle"
    p = run_edgecls("convert", run, "--out", bundle, "--max-drop", "100", timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (bundle / "labels.txt").read_text().split() == ["fist", "two"]
    # Photos it never saw, of both classes: the collected dataset taught it the difference.
    unseen = {"fist": sign_photos("0", 100, 6), "two": sign_photos("2", 100, 6)}
    p = run_edgecls("classify", bundle, *[x for v in unseen.values() for x in v], "--json", "--top-k", "1")
    assert p.returncode == 0, p.stderr
    got = [r["classes"][0]["label"] for r in json_lines(p.stdout)]
    want = [k for k, v in unseen.items() for _ in v]
    assert sum(g == w for g, w in zip(got, want)) >= 9, list(zip(got, want))


def test_second_round_keeps_old_test_photos_in_test_and_ignores_underscore_folders(tmp_path):
    ds = tmp_path / "photos"
    for digit in ("0", "1"):
        (ds / digit).mkdir(parents=True)
        for src in sign_photos(digit, 0, 40):
            shutil.copyfile(src, ds / digit / src.name)
    first = data.scan(ds)
    old_test = {s.rel for s in first.split("test")}
    assert old_test
    # A second round: new photos pulled and reviewed into the classes, frames still waiting in _review
    for digit in ("0", "1"):
        for src in sign_photos(digit, 40, 40):
            shutil.copyfile(src, ds / digit / f"20250102-000000-{src.stem}.jpg")
        (ds / "_review" / digit).mkdir(parents=True)
        shutil.copyfile(sign_photos(digit, 90, 1)[0], ds / "_review" / digit / "f_0_0.400.jpg")
    (ds / "_discarded").mkdir()
    second = data.scan(ds)
    assert second.classes == ["0", "1"] and len(second.samples) == 160
    assert any("ignored folder(s) _discarded, _review" in w for w in second.warnings)
    assert old_test <= {s.rel for s in second.split("test")}  # the old test photos are still test photos
    assert {s.rel: s.split for s in second.samples if s.rel in {x.rel for x in first.samples}} == \
        {s.rel: s.split for s in first.samples}
    assert len(second.split("test")) > len(old_test)  # and some new ones joined them
