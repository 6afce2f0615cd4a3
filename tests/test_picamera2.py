"""The Pi camera adapter against picamera2's own code (tests/picamera2_standin.py): real strides
with junk in the padding, every memory layout, the colour space configure() settles on, one
camera request per frame, and the software-resize path."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import CORAL
from PIL import Image

from edge_runtime import Classifier
from edge_runtime.live import loop as camera
from edge_runtime.live import sources
from edge_runtime.model import preprocess

standin = pytest.importorskip("picamera2_standin", reason="picamera2 is not installed (.ci/run: pip install --no-deps)")

V2 = CORAL / "mobilenet_v2_1.0_224_quant.tflite"
LABELS = CORAL / "imagenet_labels.txt"
HEIGHT = {96: 72, 200: 150, 224: 224}  # a model size per tested width


def open_source(cam, size, **kw) -> sources.Picamera2Source:
    src = sources.Picamera2Source(size, factory=lambda: cam, **kw)
    src.open()
    return src


def frame_of(cam, name: str, rgb: np.ndarray, decode=None) -> int:
    """Which of the stand-in's frames ``rgb`` is (its ``name`` stream), by exact content."""
    for (stream, k), (kind, data) in cam.truth.items():
        if stream == name:
            want = data if kind == "rgb" else decode(data)
            if np.array_equal(want, rgb):
                return k
    raise AssertionError(f"not one of the camera's {name} frames")


def reference_rgb(planes, encoding: str, full_range: bool) -> np.ndarray:
    """YUV 4:2:0 planes -> RGB by the standard equations, written out per channel in float64
    (independent of edge_runtime): E'y = (Y - 16) / 219, E'cb = (Cb - 128) / 224 for limited range;
    R = Y + 2(1 - Kr) Cr, B = Y + 2(1 - Kb) Cb, G = (Y - Kr R - Kb B) / Kg."""
    kr, kb = {"Rec601": (0.299, 0.114), "Rec709": (0.2126, 0.0722)}[encoding]
    y, u, v = (p.astype(np.float64) for p in planes)
    u = np.kron(u, np.ones((2, 2)))
    v = np.kron(v, np.ones((2, 2)))
    if full_range:
        yn, cb, cr = y, u - 128, v - 128
    else:
        yn, cb, cr = (y - 16) * 255 / 219, (u - 128) * 255 / 224, (v - 128) * 255 / 224
    r = yn + 2 * (1 - kr) * cr
    b = yn + 2 * (1 - kb) * cb
    g = (yn - kr * r - kb * b) / (1 - kr - kb)
    return np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("width", [96, 200, 224])
@pytest.mark.parametrize("fmt", ["RGB888", "BGR888", "XRGB8888", "XBGR8888"])
def test_rgb_layouts_with_padded_rows_reach_the_model_exactly(fmt, width):
    cam = standin.StandInPicamera2(noise=True, extra_stride=64)
    src = open_source(cam, (width, HEIGHT[width]), display=(320, 240), lores_format=fmt)
    try:
        conf = cam.camera_configuration()
        assert conf["lores"]["stride"] > width * standin.BYTES_PER_PIXEL[fmt]  # there is padding to get wrong
        f = src.read()
        assert f.rgb.shape == (HEIGHT[width], width, 3) and f.display.shape == (240, 320, 3)
        k = frame_of(cam, "lores", f.rgb)  # bit-exact: not one junk byte, channels in RGB order
        assert frame_of(cam, "main", f.display) == k  # the picture shown is the frame classified
        assert cam.consumed == 1 and cam.unreleased() == 0
        assert "ISP resize" in src.path and f"stride {conf['lores']['stride']}" in src.path
    finally:
        src.close()
    assert cam.closed


COLOUR_SPACES = {  # name -> (Picamera2Source arguments, libcamera's YCbCr encoding, full range)
    "Smpte170m": ({"display": (640, 480)}, "Rec601", False),  # video default below 1280x720
    "Rec709": ({"display": (1280, 720)}, "Rec709", False),  # video default at or above
    "Sycc": ({"display": (640, 480), "colour_space": "sycc"}, "Rec601", True),  # asked for
}


@pytest.mark.parametrize("width", [96, 200, 224])
@pytest.mark.parametrize("space", list(COLOUR_SPACES))
def test_yuv420_keeps_its_stride_and_is_decoded_by_the_configured_colour_space(space, width, monkeypatch):
    kwargs, encoding, full = COLOUR_SPACES[space]
    monkeypatch.setitem(__import__("sys").modules, "libcamera", standin.libcamera)  # Sycc() comes from libcamera
    cam = standin.StandInPicamera2(noise=True, platform="vc4")  # a Pi 4: the lores stream is YUV420
    src = open_source(cam, (width, HEIGHT[width]), lores_format="YUV420", **kwargs)
    try:
        conf = cam.camera_configuration()
        assert str(conf["colour_space"]) == space and space in src.path
        assert conf["lores"]["stride"] == -(-width // 64) * 64  # 96 -> 128, 200 -> 256, 224 -> 256
        f = src.read()
        assert cam.consumed == 1 and cam.unreleased() == 0
    finally:
        src.close()
    (kind, planes), = [t for (name, _), t in cam.truth.items() if name == "lores"
                       and np.abs(reference_rgb(t[1], encoding, full).astype(int) - f.rgb).max() <= 1]
    # The old decode (full-range BT.601, stride taken as the width) is far off for the others.
    if space != "Sycc":
        assert np.abs(reference_rgb(planes, "Rec601", True).astype(int) - f.rgb).max() > 10


def test_one_camera_request_per_frame_both_streams_from_it_and_released():
    cam = standin.StandInPicamera2(noise=True, extra_stride=64)
    src = open_source(cam, (224, 224), display=(320, 240), lores_format="RGB888")
    try:
        frames = [src.read() for _ in range(6)]
        assert cam.consumed == 6 and cam.unreleased() == 0  # one request a read, each given back
        ks = [frame_of(cam, "lores", f.rgb) for f in frames]
        assert [frame_of(cam, "main", f.display) for f in frames] == ks
        assert len(set(ks)) > 1  # the frames move on
        now = time.time()
        assert all(0 <= now - f.t < 2 for f in frames) and [f.t for f in frames] == sorted(f.t for f in frames)
        assert [f.n for f in frames] == list(range(6))
    finally:
        src.close()


def test_isp_resize_off_takes_the_main_stream_and_resizes_by_the_bundles_method():
    cam = standin.StandInPicamera2(noise=True, extra_stride=64)
    src = open_source(cam, (224, 224), display=(320, 240), isp_resize=False, resize="bilinear", crop="center")
    try:
        assert cam.camera_configuration()["lores"] is None
        f = src.read()
        frame_of(cam, "main", f.display)
        assert np.array_equal(f.rgb, preprocess.resize(f.display, 224, 224, "bilinear", "center"))
        assert "software resize" in src.path and "--isp-resize off" in src.path
    finally:
        src.close()


def test_a_model_size_the_isp_cannot_give_is_finished_in_software_and_said():
    cam = standin.StandInPicamera2(noise=True)
    src = open_source(cam, (225, 225), display=(320, 240), lores_format="RGB888")
    try:
        assert cam.camera_configuration()["lores"]["size"] == (226, 226)  # align_stream: even sizes
        f = src.read()
        assert f.rgb.shape == (225, 225, 3) and "bilinear in software to 225x225" in src.path
    finally:
        src.close()


def photo(name: str, size) -> np.ndarray:
    return np.asarray(Image.open(CORAL / name).convert("RGB").resize(size, Image.BILINEAR))


@pytest.mark.parametrize("isp", [True, False])
def test_the_camera_loop_classifies_every_frame_it_takes(isp):
    parrot = photo("parrot.jpg", (640, 480))
    cam = standin.StandInPicamera2([parrot], platform="vc4")
    src = open_source(cam, (224, 224), lores_format="YUV420", isp_resize=isp)
    seen: list = []
    with Classifier(V2, labels=LABELS, backend="cpu") as clf:
        s = camera.run(clf, src, seen.append, camera.Options(top=1, max_frames=5))
    assert [r["classes"][0]["label"] for r in seen] == ["macaw"] * 5
    assert cam.consumed == s.captured and cam.unreleased() == 0 and cam.closed


def test_a_camera_that_stops_delivering_is_retried_then_the_run_ends_with_a_summary():
    cams: list = []

    def factory():  # the first camera gives 5 frames and goes silent; reopened ones give none
        cams.append(standin.StandInPicamera2(noise=True, frames=0 if cams else 5))
        return cams[-1]

    src = sources.Picamera2Source((224, 224), lores_format="RGB888", timeout=0.3, factory=factory)
    src.open()
    seen: list = []
    with Classifier(V2, labels=LABELS, backend="cpu") as clf:
        s = camera.run(clf, src, seen.append, camera.Options(top=1, retries=2))
    assert s.failed and "stopped delivering frames" in s.ended and "after 2 retries" in s.ended
    # Frames the loop was not yet asking for are recycled by picamera2 (it holds only the newest).
    assert 1 <= s.captured == cams[0].consumed <= 5 and 1 <= s.classified <= s.captured
    assert len(cams) == 3 and all(c.closed and c.unreleased() == 0 for c in cams)


def test_a_frame_that_comes_after_a_timed_out_read_is_left_for_the_next_read():
    """picamera2 keeps a capture job whose wait timed out: it would take the next frame and hold its
    request for nobody (and queue close() behind it). The source cancels it, so the late frame is
    still there, unconsumed, for the next read."""
    cam = standin.StandInPicamera2(noise=True, fps=0.5)  # a frame at start, the next 2 s later
    src = open_source(cam, (224, 224), lores_format="RGB888", timeout=30)
    try:
        assert src.read() is not None  # the first frame
        src.timeout = 0.3
        with pytest.raises(sources.SourceError, match="stopped delivering frames"):
            src.read()
        deadline = time.monotonic() + 30
        while cam.delivered < 2 and time.monotonic() < deadline:  # the late frame arrives
            time.sleep(0.05)
        time.sleep(0.2)  # what an abandoned job would do with it, it has done by now
        assert cam.delivered == 2 and cam.consumed == 1 and cam.unreleased() == 0
        src.timeout = 30
        assert src.read() is not None and cam.consumed == 2
    finally:
        src.close()
    assert cam.closed and cam.unreleased() == 0
