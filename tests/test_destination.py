"""Where convert and adopt write (issue 28 item 22): never over a training run, a folder of photos,
a file or a bundle holding files of its own; an earlier bundle is replaced whole, atomically, and
the command says so."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from conftest import CORAL, assert_one_line_error, run_edgecls
from test_ladder import _model, _photos

from convert import destination
from edge_runtime import load_bundle

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
CORAL_MODEL = CORAL / "mobilenet_v1_0.25_128_quant.tflite"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory) -> Path:
    """A finished training run as edgecls train leaves it, made by hand from test_ladder.py's tiny
    colour model (nothing trained): what convert reads, and what a user cannot afford to lose."""
    from edge_runtime.model.contract import InputContract

    root = tmp_path_factory.mktemp("colours")
    photos = _photos(root / "data", n=80)
    run = root / "runs" / "colours"
    (run / "splits").mkdir(parents=True)
    _model(run / "model.keras", "none")
    shutil.copy(root / "labels.txt", run / "labels.txt")
    (run / "preprocessing.json").write_text(json.dumps(InputContract(16, 16).to_json()))
    (run / "config.json").write_text(json.dumps({"data": str(photos)}))
    rels = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.png"))
    (run / "splits" / "train.txt").write_text("\n".join(rels[::2]) + "\n")
    (run / "splits" / "test.txt").write_text("\n".join(rels[1::2]) + "\n")
    return run


@pytest.fixture
def photos(tmp_path) -> Path:
    root = tmp_path / "photos"
    for folder, photo in (("tiger cat", "cat.bmp"), ("macaw", "parrot.jpg")):
        (root / folder).mkdir(parents=True)
        shutil.copy(CORAL / photo, root / folder / photo)
    return root


def _adopt(photos: Path, out: Path, model: Path = CORAL_MODEL, *args: str):
    return run_edgecls("adopt", model, "--photos", photos, "--out", out, "--resize", "bilinear-legacy", *args)


def test_convert_refuses_to_write_over_its_own_training_run(colour_run):
    before = _snapshot(colour_run)
    p = run_edgecls("convert", colour_run, "--out", colour_run)
    assert_one_line_error(p, str(colour_run), "not empty and not an edgecls bundle", "would replace everything",
                          "--out bundles/colours")
    assert _snapshot(colour_run) == before
    assert sorted(x.name for x in colour_run.parent.iterdir()) == ["colours"]  # no work folder left beside it


def test_adopt_refuses_to_replace_a_folder_of_photos(photos):
    before = _snapshot(photos)
    p = _adopt(photos, photos)
    assert_one_line_error(p, str(photos), "not an edgecls bundle", "pass a new or empty folder as --out")
    assert _snapshot(photos) == before and sorted(x.name for x in photos.parent.iterdir()) == ["photos"]


def test_a_file_a_link_and_a_bundle_with_files_of_its_own_are_refused(photos, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert_one_line_error(_adopt(photos, notes), str(notes), "a file, not a bundle folder")
    assert notes.read_text() == "mine"
    bundle = tmp_path / "bundles" / "coral"
    assert _adopt(photos, bundle).returncode == 0
    link = tmp_path / "bundles" / "current"
    link.symlink_to(bundle)
    assert_one_line_error(_adopt(photos, link), str(link), "symbolic link")
    assert link.is_symlink()
    (bundle / "golden" / "my-note.txt").write_text("keep me")
    before = _snapshot(bundle)
    assert_one_line_error(_adopt(photos, bundle), str(bundle), "also holds golden/my-note.txt",
                          "replacing it would delete them")
    assert _snapshot(bundle) == before


def test_an_earlier_bundle_is_replaced_whole_and_the_command_says_so(photos, tmp_path):
    out = tmp_path / "bundles" / "coral"
    empty = tmp_path / "bundles" / "empty"
    empty.mkdir(parents=True)
    assert _adopt(photos, empty).returncode == 0  # an empty folder is a fine place for a new bundle
    first = _adopt(photos, out, CORAL / "mobilenet_v2_1.0_224_quant.tflite", "--tar")
    assert first.returncode == 0 and "replaced" not in first.stderr, first.stderr
    (out / "imx500").mkdir()
    (out / "imx500" / "network.rpk").write_bytes(b"made on the Pi")  # device-made: part of the bundle
    p = _adopt(photos, out, CORAL_MODEL, "--tar")
    assert p.returncode == 0, p.stderr
    assert f"edgecls: {out}: replaced the earlier bundle there (the new one was written beside it" in p.stderr
    assert (out / "model.tflite").read_bytes() == CORAL_MODEL.read_bytes()
    assert (out / "model_edgetpu.tflite").read_bytes() == CORAL_MODEL.with_name(f"{CORAL_MODEL.stem}_edgetpu.tflite"
                                                                                ).read_bytes()
    assert not (out / "imx500").exists()  # nothing of the earlier bundle survives in the new one
    assert load_bundle(out).meta["name"] == "coral"
    with tarfile.open(f"{out}.tar.gz") as t:  # the archive is the new bundle too
        assert t.extractfile("coral/model.tflite").read() == CORAL_MODEL.read_bytes()
    assert sorted(x.name for x in out.parent.iterdir()) == ["coral", "coral.tar.gz", "empty"]  # nothing left beside


def test_the_swap_trades_two_folders_in_one_step(tmp_path):
    """Where Linux offers renameat2(RENAME_EXCHANGE), the two folders trade places in one call: the
    bundle's path never stops naming a whole bundle."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("new")
    (b / "x").write_text("old")
    if not destination._exchange(a, b):
        pytest.skip("no renameat2(RENAME_EXCHANGE) here: the fallback renames twice")
    assert (b / "x").read_text() == "new" and (a / "x").read_text() == "old"


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_an_earlier_bundle_is_replaced_whole_with_or_without_the_exchange(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(destination, "_exchange", lambda a, b: False)  # a system without renameat2
    out = tmp_path / "b"
    destination.write(out, {"labels.txt": b"old\n", "old.bin": b"x"}, {"name": "b"})
    said: list[str] = []
    assert destination.write(out, {"labels.txt": b"new\n"}, {"name": "b"}, progress=said.append) == out
    assert (out / "labels.txt").read_bytes() == b"new\n" and not (out / "old.bin").exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["b"]
    assert len(said) == 1 and said[0].startswith(f"{out}: replaced the earlier bundle there")
    assert ("swapped in by one atomic rename" if exchange else "renamed in (this system has no atomic exchange)") \
        in said[0]
