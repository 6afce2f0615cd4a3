"""Disk full on the device, camera side (issue 28's fault suite): a 2 MB tmpfs is the mining
folder. Filled, mining stops saving with one message; freed, it says so once and saves again;
afterwards every index line names a whole picture and every picture has its line."""

from __future__ import annotations

import errno
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CORAL
from PIL import Image

from edge_runtime.dataset import mining
from edge_runtime.live.frames import Frame
from edge_runtime.model.postprocess import Class

pytestmark = pytest.mark.faults

MODEL = CORAL / "mobilenet_v1_0.25_128_quant.tflite"
LABELS = CORAL / "imagenet_labels.txt"
SIZE = 2 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 2 MB tmpfs, unmounted afterwards; skipped where mounting is not permitted."""
    where = tmp_path / "device"
    where.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True, text=True,
                       check=False)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip() or p.returncode}): needs root or CAP_SYS_ADMIN")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def blend(k: int) -> np.ndarray:
    """Ambiguous scenes for Coral's MobileNet (top-1 below 0.25): the cat and the parrot, half and
    half, shifted so that no two in a row are near-duplicates."""
    a = np.asarray(Image.open(CORAL / "cat.bmp").convert("RGB").resize((320, 240), Image.BILINEAR), np.float32)
    b = np.asarray(Image.open(CORAL / "parrot.jpg").convert("RGB").resize((320, 240), Image.BILINEAR), np.float32)
    return np.roll((0.5 * a + 0.5 * b).astype(np.uint8), 40 * (k % 8), axis=1)


def check_nothing_half_written(folder: Path) -> list[dict]:
    """Every index line is whole and names a picture that opens; every picture has its line."""
    index = [json.loads(line) for line in (folder / mining.INDEX).read_text().splitlines()]
    pictures = sorted(p.name for p in folder.glob("*.jpg"))
    assert sorted(r["file"] for r in index) == pictures
    for name in pictures:
        with Image.open(folder / name) as im:
            im.load()  # a truncated JPEG raises here
    assert not list(folder.glob(".tmp-*"))
    return index


def fill(disk: Path, leave: int) -> Path:
    """A file that leaves ``leave`` bytes free (0: until the disk refuses more)."""
    filler = disk / "filler.bin"
    with open(filler, "wb") as f:
        try:
            while os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize > leave:
                f.write(b"\0" * 4096)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def test_camera_mining_stops_on_a_full_disk_and_resumes_when_space_returns(small_disk, tmp_path):
    """`edgecls camera --save-uncertain` on a disk with less than 10 % free: one message, nothing
    saved; space freed: one message, frames saved again, without a restart."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(200):  # 40 s at 5 frames a second
        Image.fromarray(blend(i)).save(folder / f"{i:03d}.jpg", quality=95)
    filler = fill(small_disk, SIZE // 20)  # 5 % free
    mined = small_disk / "mined"
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "camera", str(MODEL), "--labels", str(LABELS),
                             "--source", str(folder), "--fps", "5", "--backend", "cpu", "--json",
                             "--save-uncertain", str(mined), "--save-per-minute", "600", "--uncertain-score", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(l) for l in proc.stderr], daemon=True)
    reader.start()
    said: list[str] = []

    def wait_for(text: str, timeout: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                said.append(lines.get(timeout=0.5))
            except queue.Empty:
                continue
            if text in said[-1]:
                return time.monotonic() - t0
        raise AssertionError(f"no {text!r} within {timeout} s; stderr so far:\n" + "".join(said))

    try:
        wait_for("less than 10% free", 30)
        assert not list(mined.glob("*.jpg"))
        filler.unlink()  # space returns
        took = wait_for("resumed", mining.RECHECK + 10)
        t0 = time.monotonic()
        while len(list(mined.glob("*.jpg"))) < 3 and time.monotonic() - t0 < 10:
            time.sleep(0.2)
        assert len(list(mined.glob("*.jpg"))) >= 3, "resumed, but not saving"
    finally:
        proc.terminate()  # SIGTERM ends the camera like Ctrl-C, with its summary
        proc.wait(30)
        reader.join(10)
        proc.stderr.close()
    while not lines.empty():
        said.append(lines.get())
    text = "".join(said)
    assert text.count("less than 10% free") == 1 and text.count("resumed (") == 1, text
    assert "Traceback" not in text, text
    index = check_nothing_half_written(mined)
    assert index and took <= mining.RECHECK + 2
    print(f"resumed {took:.1f} s after the space returned; {len(index)} frames saved")


def test_a_write_that_fills_the_disk_stops_saving_until_there_is_room(small_disk):
    """ENOSPC itself (no free-space floor): the picture that did not fit leaves no trace, saving
    stops with one message and resumes once the disk has room."""
    filler = fill(small_disk, 0)
    said: list[str] = []
    out = small_disk / "mined"
    m = mining.Miner(out, per_minute=1000, dup_level=0.0, min_free=0.0, log=said.append, wait=True, recheck=0.2)
    unsure = [Class(1, "a", 0.3), Class(2, "b", 0.2)]
    for n in range(3):
        m.observe(Frame(blend(n), float(n), n), unsure)
    t0 = time.monotonic()
    while not said and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    assert len(said) == 1 and "is full" in said[0] and m.stats.saved == 0, said
    filler.unlink()
    t0 = time.monotonic()
    while len(said) < 2 and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    assert len(said) == 2 and "resumed" in said[1], said
    assert m.observe(Frame(blend(5), 5.0, 5), unsure)
    stats = m.close()
    assert stats.saved == 1 and stats.stops == 1 and stats.resumed == 1
    assert [r["frame"] for r in check_nothing_half_written(out)] == [5]
