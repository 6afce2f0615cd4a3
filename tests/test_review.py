"""`edgecls review`: the page in headless Chromium moves a mined frame into its class folder,
into a new class, or discards it; moves never overwrite."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import browser
import numpy as np
import pytest
from PIL import Image

from edge_runtime.dataset import review


def mined(ds: Path) -> dict[str, Path]:
    """Three frames as `edgecls pull` leaves them in _review/<predicted>/."""
    out = {}
    for i, (label, score) in enumerate([("cat", 0.412), ("cat", 0.55), ("empty", 0.31)]):
        d = ds / "_review" / label
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"20250101-00000{i}-000000_{label}_{score:.3f}.jpg"
        Image.fromarray(np.full((60, 80, 3), 40 * i, np.uint8)).save(p)
        out[p.name] = p
    (ds / "cat").mkdir()
    (ds / "empty").mkdir()
    return out


def test_moves_are_atomic_and_never_overwrite(tmp_path):
    frames = mined(tmp_path)
    r = review.Reviewer(tmp_path)
    assert [(f["predicted"], f["score"]) for f in r.pending()] == [("cat", 0.412), ("cat", 0.55), ("empty", 0.31)]
    name = sorted(frames)[0]
    (tmp_path / "cat" / name).write_bytes(b"an older photo with the same name")
    dest = r.move(f"_review/cat/{name}", "cat")
    assert dest.name != name and (tmp_path / "cat" / name).read_bytes() == b"an older photo with the same name"
    with pytest.raises(ValueError, match="no such frame"):
        r.move(f"_review/cat/{name}", "cat")
    with pytest.raises(ValueError, match="not a frame"):
        r.move("cat/" + name, "empty")
    with pytest.raises(ValueError, match="_x"):
        r.move(f"_review/cat/{sorted(frames)[1]}", "_x")


@pytest.mark.browser
def test_review_page_in_headless_chromium(tmp_path):
    if not browser.chromium():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    frames = mined(tmp_path)
    first, second, third = sorted(frames)
    data = {n: p.read_bytes() for n, p in frames.items()}
    cmd = [sys.executable, "-m", "edge_runtime.cli", "review", str(tmp_path), "--serve", "127.0.0.1:0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        m = re.search(r"review page on (http://\S+/)", proc.stderr.readline())
        assert m, proc.stderr.read()
        with browser.Browser(m.group(1)) as b:
            b.wait("document.querySelectorAll('.frame').length === 3")
            assert b.js("[...document.querySelectorAll('.frame')].map(d => d.querySelector('.predicted').textContent + ' ' "
                        "+ d.querySelector('.score').textContent)") == ["cat 0.412", "cat 0.550", "empty 0.310"]
            b.wait("document.querySelector('.frame img').complete")
            assert b.js("document.querySelector('.frame img').naturalWidth") == 80  # the picture loads
            # the cat-predicted frame is really empty: its "empty" button moves it there
            b.click(f".frame[data-rel='_review/cat/{first}'] button[data-label='empty']")
            b.wait("document.querySelectorAll('.frame').length === 2")
            assert (tmp_path / "empty" / first).read_bytes() == data[first] and not frames[first].exists()
            # a new class, then a move into it
            b.type("#newclass", "fox")
            b.click("#add button")
            b.wait("document.querySelectorAll(\"button[data-label='fox']\").length === 2")
            b.click(f".frame[data-rel='_review/cat/{second}'] button[data-label='fox']")
            b.wait("document.querySelectorAll('.frame').length === 1")
            assert (tmp_path / "fox" / second).exists()
            b.click(f".frame[data-rel='_review/empty/{third}'] .discard")
            b.wait("document.querySelectorAll('.frame').length === 0")
            assert (tmp_path / "_discarded" / third).exists()
            assert not list((tmp_path / "_review").rglob("*.jpg"))
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
