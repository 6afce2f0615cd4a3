"""`edgecls camera`: a video file made from real photos, camera faults, and the web view in
headless Chromium (the picamera2 adapter: tests/test_picamera2.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CORAL, ROOT, assert_one_line_error, json_lines, run_edgecls
from PIL import Image

from edge_runtime import Classifier
from edge_runtime.live import sources

V2 = CORAL / "mobilenet_v2_1.0_224_quant.tflite"
LABELS = CORAL / "imagenet_labels.txt"
PHOTOS = ["cat.bmp", "parrot.jpg", "bird.bmp"]


def photo(name: str, size=(640, 480)) -> np.ndarray:
    return np.asarray(Image.open(CORAL / name).convert("RGB").resize(size, Image.BILINEAR))


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    cv2 = pytest.importorskip("cv2")
    path = tmp_path_factory.mktemp("video") / "photos.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for name in PHOTOS:
        for _ in range(8):
            w.write(np.ascontiguousarray(photo(name)[:, :, ::-1]))
    w.release()
    return path


def test_video_file_labels_every_frame_like_the_photo_it_shows(video):
    with Classifier(V2, labels=LABELS, backend="cpu") as clf:
        expected = [clf.classify(photo(n), top=1).classes[0].label for n in PHOTOS]
    p = run_edgecls("camera", V2, "--labels", LABELS, "--source", video, "--json", "--top-k", "1", "--backend", "cpu")
    assert p.returncode == 0, p.stderr
    rows = json_lines(p.stdout)
    frames, summary = rows[:-1], rows[-1]["summary"]
    assert [r["frame"] for r in frames] == list(range(24))  # a file drops nothing
    assert [r["classes"][0]["label"] for r in frames] == [e for e in expected for _ in range(8)]
    assert expected == ["Egyptian cat", "macaw", "chickadee"]
    assert summary["ended"] == "end of input" and summary["classified"] == 24 and summary["dropped"] == 0
    assert {"t", "frame", "classes", "latency_ms"} <= set(frames[0]) and frames[0]["latency_ms"]["invoke"] > 0
    changes = run_edgecls("camera", V2, "--labels", LABELS, "--source", video, "--on-change", "--top-k", "1")
    assert [l.split(":")[0] for l in changes.stdout.splitlines()] == ["frame 0", "frame 8", "frame 16"]


# --- picamera2: tests/test_picamera2.py runs the adapter on picamera2's own code ----------------


def test_no_camera_lists_what_exists(tmp_path):
    p = run_edgecls("camera", V2, "--labels", LABELS, "--source", "auto")
    if sources.available():
        pytest.skip("this machine has a camera")
    assert_one_line_error(p, "no camera found", "--source")
    p = run_edgecls("camera", V2, "--labels", LABELS, "--source", tmp_path / "nothing.mp4")
    assert_one_line_error(p, "nothing.mp4", "cameras found here: none")


# --- the web view --------------------------------------------------------------------------


def _start_camera(tmp_path, *args):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(24):  # 8 cats, 8 parrots, 8 birds: 12 s at 2 frames a second
        Image.fromarray(photo(PHOTOS[i // 8])).save(folder / f"{i:02d}.png")
    cmd = [sys.executable, "-m", "edge_runtime.cli", "camera", str(V2), "--labels", str(LABELS), "--source",
           str(folder), "--fps", "2", "--json", "--top-k", "1", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = None
    deadline = time.time() + 60
    while time.time() < deadline and url is None:
        line = proc.stderr.readline()
        m = re.search(r"web view on (http://\S+/)", line)
        url = m.group(1) if m else url
        if not line and proc.poll() is not None:
            break
    return proc, url


def _dom(url: str) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    p = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=2000",
                        "--dump-dom", url], capture_output=True, text=True, timeout=120)
    return p.stdout


@pytest.mark.browser
def test_web_view_in_headless_chromium_shows_the_current_label_and_updates(tmp_path):
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    proc, url = _start_camera(tmp_path, "--serve", "127.0.0.1:0")
    try:
        assert url and url.startswith("http://127.0.0.1:"), url
        first = _dom(url)
        time.sleep(2.5)
        second = _dom(url)
        frames = [int(re.search(r'id="frame">(\d+)<', d).group(1)) for d in (first, second)]
        labels = [re.search(r'id="top">([^<]+)<', d).group(1) for d in (first, second)]
        assert frames[1] > frames[0], frames
        expected = ["Egyptian cat", "macaw", "chickadee"]
        for n, label in zip(frames, labels):
            assert label.startswith(expected[n // 8]), (n, label)
        assert 'src="/stream.mjpg"' in first
        import urllib.request

        with urllib.request.urlopen(url + "status.json", timeout=10) as r:
            status = json.loads(r.read())
        assert status["classes"] and status["fps"] > 0
        with urllib.request.urlopen(url + "stream.mjpg", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            assert b"\xff\xd8" in r.read(4096)  # a JPEG starts
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_web_view_is_on_loopback_only_unless_asked(tmp_path):
    proc, url = _start_camera(tmp_path, "--serve", "0")  # a port, no host: 127.0.0.1
    try:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        others = [a for a in subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
                  if ":" not in a and not a.startswith("127.")]
        for addr in others:
            with socket.socket() as s:
                s.settimeout(3)
                assert s.connect_ex((addr, port)) != 0, f"reachable on {addr}"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    p = run_edgecls("camera", V2, "--labels", LABELS, "--source", CORAL / "cat.bmp", "--serve", "0.0.0.0:0")
    assert_one_line_error(p, "--public")


def _screenshot(url: str, width: int, height: int, out: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={width},{height}", "--virtual-time-budget=1500", f"--screenshot={out}", url],
                   capture_output=True, timeout=120)


@pytest.mark.browser
def test_live_page_score_bars_follow_the_frames_on_desktop_and_phone(tmp_path):
    """The page's score bars and label strip track the frames; screenshots at two widths
    (EDGECLS_DOCS_SCREENSHOTS=1 writes them to docs/ for the README)."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    proc, url = _start_camera(tmp_path, "--serve", "127.0.0.1:0", "--top-k", "3")
    try:
        assert url, "no web view"
        expected = ["Egyptian cat", "macaw", "chickadee"]
        seen = set()
        for _ in range(3):
            dom = _dom(url)
            frame = int(re.search(r'id="frame">(\d+)<', dom).group(1))
            bars = re.findall(r'class="bar" data-label="([^"]+)" data-score="([0-9.]+)"', dom)
            assert len(bars) == 3, dom[-2000:]
            scores = [float(s) for _, s in bars]
            assert scores == sorted(scores, reverse=True) and abs(sum(scores)) <= 1.001
            assert bars[0][0].startswith(expected[frame // 8]), (frame, bars)
            seen.add(expected[frame // 8])
            time.sleep(1.5)
        assert len(seen) >= 2, "the page did not move on with the frames"
        legend = re.search(r'id="legend">(.*?)</div>', dom).group(1)
        assert any(name in legend for name in seen)  # the last minute's strip names the labels it shows
        assert "cpu backend" in dom and "threads" in dom
        docs = ROOT / "docs" if os.environ.get("EDGECLS_DOCS_SCREENSHOTS") else tmp_path
        docs.mkdir(exist_ok=True)
        for name, (w, h) in {"live-page-desktop.png": (1280, 800), "live-page-phone.png": (390, 1200)}.items():
            _screenshot(url, w, h, docs / name)
            png = (docs / name).read_bytes()
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == w
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_fps_paces_a_video_file(video):
    """Issue 28.21: `--fps 8` on a video file played its frames as fast as the model ran."""
    p = run_edgecls("camera", V2, "--labels", LABELS, "--source", video, "--json", "--top-k", "1", "--backend", "cpu",
                    "--fps", "8", "--max-frames", "12")
    assert p.returncode == 0, p.stderr
    rows = json_lines(p.stdout)
    frames, summary = rows[:-1], rows[-1]["summary"]
    assert [r["frame"] for r in frames] == list(range(12))  # paced, still nothing dropped
    gaps = np.diff([r["t"] for r in frames])
    assert frames[-1]["t"] - frames[0]["t"] >= 11 / 8 * 0.95 and np.median(gaps) == pytest.approx(0.125, abs=0.02), gaps
    assert summary["fps"] <= 8.5


def test_a_dataset_of_class_folders_is_a_source(tmp_path):
    """Issue 28.26: `--source DATASET/` (one folder per class) said "no images in this directory";
    its class folders are walked in name order, skipping '_' and '.' folders as train does."""
    ds = tmp_path / "dataset"
    for cls, name in (("cat", "cat.bmp"), ("parrot", "parrot.jpg")):
        (ds / cls).mkdir(parents=True)
        Image.fromarray(photo(name)).save(ds / cls / f"{cls}.png")
    for skipped in ("_review", ".trash"):
        (ds / skipped).mkdir()
        (ds / skipped / "x.jpg").write_bytes(b"not a picture: reading it would be an error")
    p = run_edgecls("camera", V2, "--labels", LABELS, "--source", ds, "--json", "--top-k", "1", "--backend", "cpu")
    assert p.returncode == 0, p.stderr
    rows = json_lines(p.stdout)
    assert [r["classes"][0]["label"] for r in rows[:-1]] == ["Egyptian cat", "macaw"]
    assert rows[-1]["summary"]["classified"] == 2
    (ds / "cat" / "cat.png").unlink()
    (ds / "parrot" / "parrot.png").unlink()
    assert_one_line_error(run_edgecls("camera", V2, "--labels", LABELS, "--source", ds), "no images", "sub-folders")
