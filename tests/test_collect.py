"""`edgecls collect`: the page in headless Chromium (buttons, keys 1-9, a held key's burst, a new
class, undo) and the command line from a video file; what lands on disk is what `edgecls train`
reads."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import browser
import numpy as np
import pytest
from conftest import assert_one_line_error, run_edgecls
from PIL import Image

from edge_runtime.dataset import collect, files
from edge_runtime.live.frames import Frame

W, H = 320, 240


def frames(n: int) -> list[np.ndarray]:
    """n different pictures: a moving bar on a gradient, each frame's number readable in its pixels."""
    out = []
    for i in range(n):
        a = np.zeros((H, W, 3), np.uint8)
        a[..., 0] = np.linspace(0, 255, W, dtype=np.uint8)[None, :]
        a[:, (i * 7) % W: (i * 7) % W + 20, 1] = 255
        a[:8, :, 2] = i  # the frame number
        out.append(a)
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    cv2 = pytest.importorskip("cv2")
    path = tmp_path_factory.mktemp("video") / "moving.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    for a in frames(200):
        w.write(np.ascontiguousarray(a[:, :, ::-1]))
    w.release()
    return path


def frame_number(a: np.ndarray) -> int:
    """Which of ``frames`` a decoded JPEG is: the blue rows give the number within JPEG's +-2, the
    green bar's position (7 pixels a frame) picks the one it is."""
    rough = int(np.median(a[:8, :, 2]))
    edge = int(np.argmax(a[H // 2, :, 1] > 128))
    return min(range(max(0, rough - 3), rough + 4), key=lambda i: abs((i * 7) % W - edge))


def jpgs(d: Path) -> list[Path]:
    return sorted(d.glob("*.jpg")) if d.is_dir() else []


def test_cli_collect_from_a_video_file(video, tmp_path):
    ds = tmp_path / "photos"
    p = run_edgecls("collect", ds, "--source", video, "--label", "cat", "--count", "5", "--every", "0")
    assert p.returncode == 0, p.stderr
    files = jpgs(ds / "cat")
    assert [str(f) for f in files] == p.stdout.split()  # printed in the order taken: names sort by time
    assert len(files) == 5 and not list(ds.rglob(".tmp-*"))
    for i, f in enumerate(files):  # the video's first five frames, in order, at full size
        with Image.open(f) as im:
            a = np.asarray(im.convert("RGB"))
        assert a.shape == (H, W, 3)
        assert abs(int(np.median(a[:8, :, 2])) - i) <= 2
    # A second run adds, never overwrites; the end of the file stops it and says so.
    p = run_edgecls("collect", ds, "--source", video, "--label", "cat", "--count", "300", "--every", "0")
    assert p.returncode == 0 and "the input ended before 300" in p.stderr
    assert len(jpgs(ds / "cat")) == 205 and set(files) <= set(jpgs(ds / "cat"))
    # What train reads: the class folder, nothing else.
    from train import data

    (ds / "empty").mkdir()
    for f in jpgs(ds / "cat")[:3]:
        (ds / "empty" / f.name).write_bytes(f.read_bytes())
    assert data.scan(ds).classes == ["cat", "empty"]


def test_cli_collect_refuses_what_it_cannot_do(video, tmp_path):
    assert_one_line_error(run_edgecls("collect", tmp_path / "d", "--source", video), "--serve", "--label")
    assert_one_line_error(run_edgecls("collect", tmp_path / "d", "--source", video, "--label", "_review"), "_review")
    assert_one_line_error(run_edgecls("collect", tmp_path / "d", "--source", video, "--label", "a/b"), "a/b")
    assert_one_line_error(run_edgecls("collect", tmp_path / "d", "--source", video, "--serve", "0.0.0.0:0",
                                      "--labels", "a"), "--public")
    assert_one_line_error(run_edgecls("collect", tmp_path / "d", "--source", tmp_path / "none.mp4", "--label", "a"),
                          "none.mp4")


def test_write_new_never_overwrites_and_sorts_by_time(tmp_path):
    a = files.write_new(tmp_path, "20250101-000000-000001", b"one")
    b = files.write_new(tmp_path, "20250101-000000-000001", b"two")
    c = files.write_new(tmp_path, "20250101-000000-000002", b"three")
    assert [p.read_bytes() for p in sorted(tmp_path.iterdir())] == [b"one", b"two", b"three"]
    assert (a.name, b.name, c.name) == ("20250101-000000-000001.jpg", "20250101-000000-000001_1.jpg",
                                        "20250101-000000-000002.jpg")
    s = collect.Collector(tmp_path / "ds", ["cat"])
    saved = [s.save("cat", Frame(f, time.time(), i)) for i, f in enumerate(frames(3))]
    assert [x.path for x in saved] == jpgs(tmp_path / "ds" / "cat")


def _start(video: Path, ds: Path, *args: str):
    cmd = [sys.executable, "-m", "edge_runtime.cli", "collect", str(ds), "--source", str(video), "--serve",
           "127.0.0.1:0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"collect page on (http://\S+/)", line)
        if m:
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(proc.stderr.read())


def _until(cond, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.mark.browser
def test_collect_page_in_headless_chromium(video, tmp_path):
    if not browser.chromium():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    ds = tmp_path / "photos"
    proc, url = _start(video, ds, "--labels", "cat,empty")
    try:
        with browser.Browser(url) as b:
            b.wait("document.querySelectorAll('#buttons button').length === 2")
            assert b.js("[...document.querySelectorAll('#buttons button')].map(x => x.dataset.label)") == ["cat", "empty"]
            assert b.js("document.getElementById('live').getAttribute('src')") == "/stream.mjpg"
            b.click("#class-0")  # a click: one photo of cat
            assert _until(lambda: len(jpgs(ds / "cat")) == 1)
            b.key("2")  # key 2: one photo of empty
            assert _until(lambda: len(jpgs(ds / "empty")) == 1)
            b.type("#newclass", "dog")  # a new class, then its key
            b.click("#add button")
            b.wait("document.querySelectorAll('#buttons button').length === 3")
            b.key("3")
            assert _until(lambda: len(jpgs(ds / "dog")) == 1)
            time.sleep(0.5)
            assert len(jpgs(ds / "cat")) == 1 and len(jpgs(ds / "empty")) == 1  # nothing else was saved
            b.key_down("1")  # held for 1.5 s: a burst of new frames, a few a second
            time.sleep(1.5)
            b.key_up("1")
            time.sleep(0.6)
            burst = len(jpgs(ds / "cat")) - 1
            assert 3 <= burst <= 9, burst
            shots = jpgs(ds / "cat")
            numbers = []
            for f in shots:
                with Image.open(f) as im:
                    numbers.append(frame_number(np.asarray(im.convert("RGB"))))
            assert numbers == sorted(set(numbers)), numbers  # a burst saves each frame once, in order
            b.wait(f"document.querySelector('#class-0 .count').textContent === '{len(shots)}'")
            # undo on the newest thumbnail removes exactly that photo
            newest = b.js("document.querySelector('#recent .undo').dataset.rel")
            assert newest == f"cat/{shots[-1].name}"
            b.click("#recent .undo")
            assert _until(lambda: jpgs(ds / "cat") == shots[:-1])
            b.wait(f"document.querySelector('#class-0 .count').textContent === '{len(shots) - 1}'")
            b.key("z")  # z: undo the last one left in the list
            assert _until(lambda: jpgs(ds / "cat") == shots[:-2])
            assert len(jpgs(ds / "empty")) == 1 and len(jpgs(ds / "dog")) == 1
            assert not list(ds.rglob(".tmp-*"))
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_the_page_skips_an_unreadable_image_of_a_folder(tmp_path):
    """Issue 28.7: one unreadable image in a folder source ended the page's reading thread and the
    page waited for ever; it is skipped and counted, as ``edgecls camera`` does."""
    from edge_runtime.live.sources import open_source

    folder = tmp_path / "photos"
    folder.mkdir()
    pics = frames(3)
    Image.fromarray(pics[0]).save(folder / "a.png")
    (folder / "b.jpg").write_bytes(b"not a picture")
    Image.fromarray(pics[2]).save(folder / "c.png")
    skipped: list[str] = []
    source, _ = open_source(str(folder), (W, H))
    grabber = collect.Grabber(source, file_fps=0, on_error=skipped.append).start()
    try:
        assert _until(lambda: grabber.ended is not None, 10), "the reading thread died without a word"
        f = grabber.latest(timeout=1.0)
        assert grabber.ended == "end of input" and f is not None and f.n == 2 and np.array_equal(f.rgb, pics[2])
        assert grabber.errors == 1 and "b.jpg" in grabber.last_error and skipped == [grabber.last_error]
    finally:
        grabber.close()


def test_collect_fps_paces_a_video_file(video, tmp_path):
    """Issue 28.21: --fps was ignored for a video file; 10 frames at 20 a second take 0.45 s at least."""
    ds = tmp_path / "photos"
    t = time.perf_counter()
    p = run_edgecls("collect", ds, "--source", video, "--label", "cat", "--count", "10", "--every", "0", "--fps", "20")
    took = time.perf_counter() - t
    assert p.returncode == 0, p.stderr
    times = [f.stat().st_mtime for f in jpgs(ds / "cat")]
    assert len(times) == 10 and times[-1] - times[0] >= 9 / 20 * 0.9, (times[-1] - times[0], took)


def test_collect_from_a_dataset_of_class_folders(tmp_path):
    """Issue 28.26: `collect --source DATASET/` walks the class folders as `camera` does."""
    src = tmp_path / "old"
    for i, cls in enumerate(("a", "b", "_review")):
        (src / cls).mkdir(parents=True)
        Image.fromarray(frames(3)[i]).save(src / cls / f"{i}.png")
    ds = tmp_path / "new"
    p = run_edgecls("collect", ds, "--source", src, "--label", "x", "--count", "5", "--every", "0")
    assert p.returncode == 0 and "the input ended before 5" in p.stderr, p.stderr
    got = [abs(int(np.median(np.asarray(Image.open(f))[:8, :, 2]))) for f in jpgs(ds / "x")]
    assert len(got) == 2 and all(abs(g - e) <= 2 for g, e in zip(got, [0, 1])), got
