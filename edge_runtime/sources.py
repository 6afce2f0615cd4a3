"""Frame sources behind one small interface: ``open()``, ``read()`` -> the next RGB uint8 frame
with its timestamp (or None at the end), ``close()``.

- ``picamera2:`` the Raspberry Pi camera: a main stream for display and a lores stream for
  inference sized to the model's input where the ISP allows (then the CPU does no resize).
- ``opencv:N`` or ``/dev/videoN``: a USB webcam through OpenCV (BGR -> RGB).
- a video file (OpenCV), or a directory / glob of images: everything above the source can be
  tested and used without a camera.

picamera2 and OpenCV are imported only by the sources that need them.
"""

from __future__ import annotations

import glob
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import EdgeclsError, MissingExtra
from .machine import board_model, is_pi4_or_older, video_devices
from .preprocess import IMAGE_SUFFIXES, load_image

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mjpeg", ".mjpg", ".h264"}


class SourceError(EdgeclsError):
    """A frame source that cannot be opened or has stopped delivering."""


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray  # H x W x 3 uint8, RGB
    t: float  # seconds (time.time()) when it was captured
    n: int  # frame number from this source, from 0
    display: np.ndarray | None = None  # a larger RGB picture for the web view, when the source has one


class Source:
    """Base class. ``live`` sources (cameras) drop frames when inference is slower; files do not."""

    name = "source"
    live = False

    def open(self) -> None:
        pass

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- picamera2 -----------------------------------------------------------------------------

# How picamera2 lays out each format in memory (its manual: "RGB888" is 24 bits per pixel ordered
# [B, G, R]; "XRGB8888" is 32 bits ordered [B, G, R, X]); the index list picks R, G, B.
PICAMERA2_ORDER: dict[str, list[int]] = {
    "RGB888": [2, 1, 0],
    "BGR888": [0, 1, 2],
    "XRGB8888": [2, 1, 0],
    "XBGR8888": [0, 1, 2],
}


def yuv420_to_rgb(yuv: np.ndarray, width: int, height: int) -> np.ndarray:
    """Planar YUV 4:2:0 (I420: the Y plane, then U and V at half resolution, as picamera2 returns
    a YUV420 stream: an array of ``height * 3 // 2`` rows of ``width`` bytes) to RGB, with the
    full-range BT.601 (JFIF / sYCC) matrix libcamera uses for these streams."""
    y = yuv[:height, :width].astype(np.float32)
    chroma = yuv[height:height + height // 2].reshape(-1)
    quarter = (width // 2) * (height // 2)
    u = chroma[:quarter].reshape(height // 2, width // 2).astype(np.float32) - 128.0
    v = chroma[quarter:2 * quarter].reshape(height // 2, width // 2).astype(np.float32) - 128.0
    u = u.repeat(2, axis=0).repeat(2, axis=1)
    v = v.repeat(2, axis=0).repeat(2, axis=1)
    rgb = np.stack([y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def picamera2_to_rgb(array: np.ndarray, fmt: str, width: int, height: int) -> np.ndarray:
    """A picamera2 ``capture_array`` result in ``fmt`` -> H x W x 3 RGB (a copy)."""
    if fmt == "YUV420":
        return yuv420_to_rgb(array, width, height)
    if fmt not in PICAMERA2_ORDER:
        raise SourceError(f"picamera2 format {fmt!r} is not supported; use one of "
                          f"{', '.join([*PICAMERA2_ORDER, 'YUV420'])}")
    return np.ascontiguousarray(array[:height, :width, PICAMERA2_ORDER[fmt]])


class Picamera2Source(Source):
    """The Pi camera through picamera2 (``create_video_configuration``, ``configure``, ``start``,
    ``capture_array``, ``close``). ``factory`` builds the camera object (tests pass a stand-in)."""

    name = "picamera2"
    live = True

    def __init__(self, size: tuple[int, int], display: tuple[int, int] = (640, 480), lores_format: str | None = None,
                 main_format: str = "RGB888", factory: Callable[[], Any] | None = None):
        self.width, self.height = size
        self.display_size = display
        self.lores_format = lores_format or ("YUV420" if is_pi4_or_older() else "RGB888")
        self.main_format = main_format
        self.factory = factory
        self.cam: Any = None
        self.n = 0

    def open(self) -> None:
        factory = self.factory
        if factory is None:
            try:
                from picamera2 import Picamera2  # type: ignore[import-not-found]
            except ImportError as e:
                raise SourceError("picamera2 is not importable; on Raspberry Pi OS: sudo apt install python3-picamera2 "
                                  "and a venv with --system-site-packages") from e
            factory = Picamera2
        try:
            self.cam = factory()
            w = self.width + (-self.width % 2)  # YUV420 needs even sizes
            h = self.height + (-self.height % 2)
            config = self.cam.create_video_configuration(
                main={"size": self.display_size, "format": self.main_format},
                lores={"size": (w, h), "format": self.lores_format})
            self.cam.configure(config)
            lores = config["lores"]
            self.lores_w, self.lores_h = lores["size"]
            self.lores_format = lores["format"]
            self.cam.start()
        except SourceError:
            raise
        except Exception as e:  # IndexError/RuntimeError from libcamera when no camera is attached
            raise SourceError(f"the Pi camera cannot start ({type(e).__name__}: {e}); is a camera connected "
                              "and enabled?") from None

    def read(self) -> Frame | None:
        try:
            lores = self.cam.capture_array("lores")
            main = self.cam.capture_array("main")
        except Exception as e:
            raise SourceError(f"the Pi camera stopped delivering frames ({e})") from None
        rgb = picamera2_to_rgb(lores, self.lores_format, self.lores_w, self.lores_h)
        disp = picamera2_to_rgb(main, self.main_format, *self.display_size)
        f = Frame(rgb, time.time(), self.n, disp)
        self.n += 1
        return f

    def close(self) -> None:
        if self.cam is not None:
            try:
                self.cam.close()
            finally:
                self.cam = None


# --- OpenCV --------------------------------------------------------------------------------


def _cv2() -> Any:
    try:
        import cv2  # type: ignore[import-not-found]
    except ImportError as e:
        raise MissingExtra("webcams and video files", "camera", "cv2") from e
    return cv2


class OpenCVSource(Source):
    """A USB webcam (``opencv:0``, ``/dev/video0``) or a video file, through OpenCV."""

    def __init__(self, spec: str | int, live: bool):
        self.spec = spec
        self.live = live
        self.name = f"opencv:{spec}" if live else str(spec)
        self.cap: Any = None
        self.n = 0

    def open(self) -> None:
        cv2 = _cv2()
        self.cap = cv2.VideoCapture(self.spec)
        if not self.cap.isOpened():
            what = "camera" if self.live else "video file"
            raise SourceError(f"{self.spec}: cannot open this {what} with OpenCV")

    def read(self) -> Frame | None:
        ok, bgr = self.cap.read()
        if not ok:
            if self.live:
                raise SourceError(f"{self.name}: the camera stopped delivering frames")
            return None  # the end of the file
        f = Frame(np.ascontiguousarray(bgr[:, :, ::-1]), time.time(), self.n)
        self.n += 1
        return f

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


# --- image files ---------------------------------------------------------------------------


class ImagesSource(Source):
    """A directory or glob of images, in name order; ``fps`` paces them like a camera (0: as fast
    as they are asked for)."""

    def __init__(self, paths: list[str], name: str, fps: float = 0.0):
        self.paths = paths
        self.name = name
        self.fps = fps
        self.n = 0
        self.next_t = 0.0

    def read(self) -> Frame | None:
        if self.n >= len(self.paths):
            return None
        if self.fps:
            delay = self.next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.next_t = max(self.next_t, time.monotonic()) + 1 / self.fps
        self.n += 1  # first: an unreadable image is skipped, not read again
        return Frame(load_image(self.paths[self.n - 1]), time.time(), self.n - 1)


# --- choosing one --------------------------------------------------------------------------


def available() -> list[str]:
    """What this machine has, for error messages and ``auto``."""
    found = []
    if platform.machine().startswith(("aarch64", "arm")) and board_model():
        try:
            import picamera2  # type: ignore[import-not-found]  # noqa: F401

            found.append("picamera2:")
        except ImportError:
            pass
    found += [f"opencv:{d.removeprefix('/dev/video')}" for d in video_devices()]
    return found


def open_source(spec: str, size: tuple[int, int], fps: float = 0.0) -> tuple[Source, str]:
    """A source from a ``--source`` value, and a note saying what ``auto`` took."""
    if spec == "auto":
        have = available()
        if not have:
            raise SourceError("no camera found (no Pi camera through picamera2, no /dev/video*); pass a video "
                              "file or a folder of images with --source")
        spec = have[0]
        note = f"--source auto took {spec} (found: {', '.join(have)})"
    else:
        note = ""
    if spec.startswith("picamera2"):
        return Picamera2Source(size), note
    if spec.startswith("opencv:") or spec.startswith("/dev/video"):
        index = spec.split(":", 1)[1] if spec.startswith("opencv:") else spec.removeprefix("/dev/video")
        if not index.isdigit():
            raise ValueError(f"{spec!r}: give a webcam as opencv:N or /dev/videoN")
        if spec.startswith("/dev/") and not os.path.exists(spec):
            have = available()
            raise SourceError(f"{spec}: no such camera; found: {', '.join(have) or 'none'}")
        return OpenCVSource(int(index), live=True), note
    p = Path(spec)
    if p.is_dir():
        paths = sorted(str(x) for x in p.iterdir() if x.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise SourceError(f"{spec}: no images in this directory")
        return ImagesSource(paths, spec, fps), note
    if any(c in spec for c in "*?["):
        paths = sorted(x for x in glob.glob(spec) if Path(x).suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise SourceError(f"{spec}: the pattern matches no images")
        return ImagesSource(paths, spec, fps), note
    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
        return ImagesSource([spec], spec, fps), note
    if p.is_file():
        return OpenCVSource(spec, live=False), note
    have = available()
    raise SourceError(f"{spec}: no such file, directory or camera; cameras found here: {', '.join(have) or 'none'} "
                      "(give a video file, a folder or glob of images, opencv:N, /dev/videoN or picamera2)")
