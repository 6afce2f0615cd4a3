"""Choosing a frame source from ``--source``, and the sources: ``open()``, ``read()`` -> the next RGB uint8 frame
with its timestamp (or None at the end), ``close()``.

- ``picamera2:`` the Raspberry Pi camera (``live.picamera2``).
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
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import MissingExtra
from edge_runtime.live.frames import Frame, Source, SourceError
from edge_runtime.live.picamera2 import Picamera2Source
from edge_runtime.model.preprocess import (
    DEFAULT_RESIZE,
    IMAGE_SUFFIXES,
    load_image,
)
from edge_runtime.system.machine import board_model, video_devices

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mjpeg", ".mjpg", ".h264"}

# --- OpenCV --------------------------------------------------------------------------------


def _cv2() -> Any:
    try:
        import cv2  # type: ignore[import-not-found]
    except ImportError as e:
        raise MissingExtra("webcams and video files", "camera", "cv2") from e
    return cv2


class Pacer:
    """Spaces calls ``1 / fps`` seconds apart (0: no wait), as a camera delivers frames."""

    def __init__(self, fps: float):
        self.fps = fps
        self.next_t = 0.0

    def wait(self) -> None:
        if not self.fps:
            return
        delay = self.next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next_t = max(self.next_t, time.monotonic()) + 1 / self.fps


class OpenCVSource(Source):
    """A USB webcam (``opencv:0``, ``/dev/video0``) or a video file, through OpenCV; ``fps`` paces
    a file's frames like a camera (0: as fast as they are asked for)."""

    def __init__(self, spec: str | int, live: bool, fps: float = 0.0):
        self.spec = spec
        self.live = live
        self.name = f"opencv:{spec}" if live else str(spec)
        self.fps = 0.0 if live else fps  # a camera keeps its own pace
        self.pacer = Pacer(self.fps)
        self.cap: Any = None
        self.n = 0

    def open(self) -> None:
        cv2 = _cv2()
        self.cap = cv2.VideoCapture(self.spec)
        if not self.cap.isOpened():
            what = "camera" if self.live else "video file"
            raise SourceError(f"{self.spec}: cannot open this {what} with OpenCV")

    def read(self) -> Frame | None:
        self.pacer.wait()
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
        self.pacer = Pacer(fps)
        self.n = 0

    def read(self) -> Frame | None:
        if self.n >= len(self.paths):
            return None
        self.pacer.wait()
        self.n += 1  # first: an unreadable image is skipped, not read again
        return Frame(load_image(self.paths[self.n - 1]), time.time(), self.n - 1)


def images_in(folder: str | os.PathLike[str]) -> list[str]:
    """The images in ``folder`` and below (a dataset's class folders), in name order, the folder's
    own first; folders and files starting with '_' or '.' are skipped, as training skips them."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        out += [os.path.join(root, f) for f in sorted(files)
                if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return out


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


def open_source(spec: str, size: tuple[int, int], fps: float = 0.0, isp_resize: bool = True,
                resize: str = DEFAULT_RESIZE, crop: str = "none") -> tuple[Source, str]:
    """A source from a ``--source`` value, and a note saying what ``auto`` took. ``isp_resize``,
    ``resize`` and ``crop`` (the bundle's) go to the Pi camera (see ``Picamera2Source``)."""
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
        return Picamera2Source(size, isp_resize=isp_resize, resize=resize, crop=crop), note
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
        paths = images_in(p)
        if not paths:
            raise SourceError(f"{spec}: no images in this directory or its sub-folders (folders starting with "
                              "'_' or '.' are skipped)")
        return ImagesSource(paths, spec, fps), note
    if any(c in spec for c in "*?["):
        paths = sorted(x for x in glob.glob(spec) if Path(x).suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise SourceError(f"{spec}: the pattern matches no images")
        return ImagesSource(paths, spec, fps), note
    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
        return ImagesSource([spec], spec, fps), note
    if p.is_file():
        return OpenCVSource(spec, live=False, fps=fps), note
    have = available()
    raise SourceError(f"{spec}: no such file, directory or camera; cameras found here: {', '.join(have) or 'none'} "
                      "(give a video file, a folder or glob of images, opencv:N, /dev/videoN or picamera2)")
