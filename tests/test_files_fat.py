"""`write_new` and `move_new` never overwrite a photo, on file systems without hard links too
(FAT on a USB stick or an SD card) and across file systems (issue 28, items 13 and 31)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from edge_runtime.dataset import files
from edge_runtime.dataset.files import move_new, write_new

REAL_LINK, REAL_RENAME = os.link, os.rename


def _no_hard_links(*_args, **_kwargs):
    raise OSError(errno.EPERM, "Operation not permitted")  # what vfat's link(2) answers


def _contents(folder: Path) -> list[bytes]:
    return sorted(p.read_bytes() for p in folder.iterdir() if not p.name.startswith("."))


def test_without_hard_links_a_photo_written_meanwhile_under_the_same_name_survives(tmp_path, monkeypatch):
    """Between claiming a name and the rename, another writer saves a photo with the same stem (a
    second collect page, the miner). Check-then-rename replaced it; the claim makes it take _1."""
    monkeypatch.setattr(os, "link", _no_hard_links)
    raced = []

    def rename_after_a_rival(src, dst):
        if not raced:
            raced.append(None)  # the rival's own rename goes straight through
            raced[0] = write_new(tmp_path, "20250102-153012-123456", b"rival")
        REAL_RENAME(src, dst)

    monkeypatch.setattr(os, "rename", rename_after_a_rival)
    mine = write_new(tmp_path, "20250102-153012-123456", b"mine")
    assert raced and raced[0] != mine
    assert mine.read_bytes() == b"mine" and raced[0].read_bytes() == b"rival"
    assert _contents(tmp_path) == [b"mine", b"rival"]


def test_without_hard_links_an_existing_photo_is_never_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "link", _no_hard_links)
    (tmp_path / "a.jpg").write_bytes(b"first")
    second = write_new(tmp_path, "a", b"second")
    assert second.name == "a_1.jpg" and (tmp_path / "a.jpg").read_bytes() == b"first"
    (tmp_path / "sorted").mkdir()
    (tmp_path / "sorted" / "a.jpg").write_bytes(b"already sorted")
    moved = move_new(tmp_path / "a.jpg", tmp_path / "sorted")
    assert moved.name == "a_1.jpg" and moved.read_bytes() == b"first" and not (tmp_path / "a.jpg").exists()
    assert (tmp_path / "sorted" / "a.jpg").read_bytes() == b"already sorted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_1.jpg", "sorted"]  # no placeholder, no .tmp left


def test_a_move_to_another_file_system_copies_then_removes(tmp_path, monkeypatch):
    """EXDEV: link and rename both fail across file systems (the old branch renamed, and failed)."""
    def cross_device(real):
        def call(src, dst):
            if Path(src).parent != Path(dst).parent:  # in/ and out/ sit on "different disks"
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            return real(src, dst)
        return call

    src = tmp_path / "in" / "x.jpg"
    src.parent.mkdir()
    src.write_bytes(b"photo")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.jpg").write_bytes(b"other")
    monkeypatch.setattr(os, "link", cross_device(REAL_LINK))
    monkeypatch.setattr(os, "rename", cross_device(REAL_RENAME))
    final = move_new(src, tmp_path / "out")
    assert final.name == "x_1.jpg" and final.read_bytes() == b"photo" and not src.exists()
    assert (tmp_path / "out" / "x.jpg").read_bytes() == b"other"


def _hammer(folder: Path, writers: int = 4, each: int = 25) -> None:
    errors = []

    def work(n: int) -> None:
        try:
            for i in range(each):
                write_new(folder, "20250102-153012-123456", f"{n}-{i}".encode())
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    got = _contents(folder)
    assert got == sorted(f"{n}-{i}".encode() for n in range(writers) for i in range(each))  # every photo, once


def test_writers_at_once_without_hard_links_keep_every_photo(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "link", _no_hard_links)
    _hammer(tmp_path)


@pytest.fixture
def vfat(tmp_path):
    """A real FAT file system: an image made by mkfs.vfat, loop-mounted (root, and a kernel with vfat)."""
    mkfs = shutil.which("mkfs.vfat") or shutil.which("mkfs.fat")
    if mkfs is None:
        pytest.skip("mkfs.vfat not installed (apt-get install dosfstools)")
    if os.geteuid() != 0:
        pytest.skip("mounting a FAT image needs root")
    image, mnt = tmp_path / "fat.img", tmp_path / "mnt"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run([mkfs, str(image)], check=True, capture_output=True)
    mnt.mkdir()
    p = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a FAT image here: {p.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_on_a_real_fat_file_system(vfat, tmp_path):
    probe = vfat / f"probe-{uuid.uuid4().hex[:6]}"
    probe.write_bytes(b"x")
    with pytest.raises(OSError) as e:
        REAL_LINK(probe, vfat / "probe-link")
    assert e.value.errno in files.NO_HARD_LINKS  # the premise: FAT has no hard links
    probe.unlink()
    photos = vfat / "cat"
    _hammer(photos)
    elsewhere = tmp_path / "review" / "y.jpg"  # another file system: EXDEV
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"reviewed")
    moved = move_new(elsewhere, photos)
    assert moved.read_bytes() == b"reviewed" and not elsewhere.exists()
    assert not [p for p in photos.iterdir() if p.name.startswith(".")]
