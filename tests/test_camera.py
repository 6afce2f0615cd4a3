"""`edgecls camera`: a video file made from real photos, the picamera2 adapter with a stand-in
camera in every documented memory layout, camera faults, and the web view in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CORAL, assert_one_line_error, json_lines, run_edgecls
from edge_runtime import Classifier, camera, sources

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


# --- picamera2 -----------------------------------------------------------------------------


def to_layout(rgb: np.ndarray, fmt: str) -> np.ndarray:
    """The array picamera2's capture_array returns for ``fmt`` (its manual's memory orders)."""
    h, w, _ = rgb.shape
    x = np.full((h, w, 1), 255, np.uint8)
    if fmt == "RGB888":
        return np.ascontiguousarray(rgb[:, :, ::-1])  # B, G, R
    if fmt == "BGR888":
        return rgb.copy()  # R, G, B
    if fmt == "XRGB8888":
        return np.concatenate([rgb[:, :, ::-1], x], axis=2)  # B, G, R, X
    if fmt == "XBGR8888":
        return np.concatenate([rgb, x], axis=2)  # R, G, B, X
    assert fmt == "YUV420"
    f = rgb.astype(np.float64)
    y = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    u = -0.168736 * f[..., 0] - 0.331264 * f[..., 1] + 0.5 * f[..., 2] + 128
    v = 0.5 * f[..., 0] - 0.418688 * f[..., 1] - 0.081312 * f[..., 2] + 128
    sub = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731  (4:2:0)
    planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8).reshape(-1) for p in (y, sub(u), sub(v))]
    return np.concatenate(planes).reshape(h * 3 // 2, w)


class StandInPicamera2:
    """Answers like picamera2.Picamera2 (create_video_configuration, configure, start,
    capture_array, close) with a real photo in the configured layouts."""

    def __init__(self, rgb: np.ndarray, fail_after: int | None = None):
        self.rgb, self.fail_after, self.captures, self.config = rgb, fail_after, 0, None
        self.closed = False

    def create_video_configuration(self, main=None, lores=None, **kw):
        return {"main": dict(main), "lores": dict(lores)}

    def configure(self, config):
        self.config = config

    def start(self):
        pass

    def capture_array(self, name="main"):
        self.captures += 1
        if self.fail_after is not None and self.captures > self.fail_after:
            raise RuntimeError("Camera frontend has timed out!")
        s = self.config[name]
        w, h = s["size"]
        return to_layout(np.asarray(Image.fromarray(self.rgb).resize((w, h), Image.NEAREST)), s["format"])

    def close(self):
        self.closed = True


@pytest.mark.parametrize("fmt", ["RGB888", "BGR888", "XRGB8888", "XBGR8888", "YUV420"])
def test_picamera2_layouts_reach_the_model_as_rgb(fmt):
    # Blocks of 2x2 equal pixels, so that 4:2:0 chroma loses nothing and "within rounding" is fair.
    rgb = photo("parrot.jpg", (112, 112)).repeat(2, axis=0).repeat(2, axis=1)
    cam = StandInPicamera2(rgb)
    src = sources.Picamera2Source((224, 224), display=(320, 240), lores_format=fmt, factory=lambda: cam)
    src.open()
    assert cam.config["lores"] == {"size": (224, 224), "format": fmt}  # the ISP resizes, the CPU does not
    f = src.read()
    diff = np.abs(f.rgb.astype(int) - rgb.astype(int))
    assert f.rgb.shape == (224, 224, 3) and diff.max() <= (2 if fmt == "YUV420" else 0), diff.max()
    assert f.display.shape == (240, 320, 3)
    with Classifier(V2, labels=LABELS, backend="cpu") as clf:
        direct = clf.classify(rgb).raw
        seen = []
        camera.run(clf, src, seen.append, top=1, max_frames=1)
        via_camera = clf.classify(f.rgb).raw
    assert seen[0]["classes"][0]["label"] == "macaw"
    assert np.abs(via_camera.astype(int) - direct.astype(int)).max() <= (3 if fmt == "YUV420" else 0)
    assert cam.closed


def test_a_camera_that_disconnects_is_retried_then_the_run_ends_with_a_summary():
    cam = StandInPicamera2(photo("cat.bmp", (224, 224)), fail_after=10)  # 5 frames (lores + main each)
    src = sources.Picamera2Source((224, 224), lores_format="RGB888", factory=lambda: cam)
    src.open()
    seen: list = []
    with Classifier(V2, labels=LABELS, backend="cpu") as clf:
        s = camera.run(clf, src, seen.append, top=1, retries=2)
    assert s.failed and "stopped delivering frames" in s.ended and "after 2 retries" in s.ended
    assert 1 <= s.classified <= 5 and s.captured == 5


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
