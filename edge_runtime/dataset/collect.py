"""``edgecls collect``'s work: photos from a frame source into ``DATASET/<class>/`` (``Collector``),
the thread that keeps the newest frame (``Grabber``), and taking photos without the page
(``take``). The page is ``web.collect``; the command is ``cli.collect``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_runtime.dataset.files import check_class, class_folders, count_images, jpeg, stamp, write_new
from edge_runtime.errors import EdgeclsError
from edge_runtime.live.frames import Frame, Source, SourceError
from edge_runtime.live.zones import Zone

RECENT = 12  # photos the page lists (and can undo)
BURST_FPS = 4.0  # photos a second while a button or key is held (the page paces it)


@dataclass(frozen=True)
class Saved:
    path: Path
    label: str
    rel: str  # "class/name.jpg"
    frame: int


class Collector:
    """Class folders under ``root``: save frames, count, undo. Thread-safe (the page's requests
    arrive on several threads)."""

    def __init__(self, root: str | os.PathLike[str], labels: list[str] | tuple[str, ...] = (),
                 zone: Zone | None = None):
        self.root = Path(root)
        self.zone = zone  # --zone: save the zone's crop, what the camera's classifier will see
        if self.root.exists() and not self.root.is_dir():
            raise EdgeclsError(f"{self.root}: not a directory; give the dataset folder (one sub-folder per class)")
        self.lock = threading.Lock()
        self.labels: list[str] = []
        for name in [*class_folders(self.root), *labels]:
            self.add_class(name)
        self.recent: deque[Saved] = deque(maxlen=RECENT)
        self.saved: dict[str, int] = {}  # photos saved (less those undone) by this process, per class
        self.last_frame = -1
        self.capturing = threading.Lock()  # one capture at a time: a click and a burst never share a frame

    def capture(self, grabber: "Grabber", label: str, burst: bool) -> Saved | None:
        """Save the camera's next unsaved frame as ``label``. A burst waits up to a second for a
        frame not saved yet (None if none came); a click takes one too when it comes within half a
        second, else the newest frame, so a click always saves a photo."""
        with self.capturing:
            f = grabber.latest(newer_than=self.last_frame, timeout=1.0 if burst else 0.5)
            if f is None and not burst:
                f = grabber.latest(timeout=3.0)
            return self.save(label, f) if f is not None else None

    def add_class(self, name: str) -> str:
        name = check_class(name)
        with self.lock:
            if name not in self.labels:
                self.labels.append(name)
        return name

    def save(self, label: str, frame: Frame) -> Saved:
        label = self.add_class(label)
        if self.zone is not None:
            frame = self.zone.crop(frame)
        path = write_new(self.root / label, stamp(), jpeg(frame))
        s = Saved(path, label, f"{label}/{path.name}", frame.n)
        with self.lock:
            self.recent.append(s)
            self.saved[label] = self.saved.get(label, 0) + 1
            self.last_frame = frame.n
        return s

    def undo(self, rel: str | None = None) -> Saved | None:
        """Delete one of the recent photos (the last one when ``rel`` is None); None if there is none."""
        with self.lock:
            hits = [s for s in self.recent if rel is None or s.rel == rel]
            if not hits:
                return None
            s = hits[-1]
            self.recent.remove(s)
            self.saved[s.label] -= 1
        try:
            s.path.unlink()
        except FileNotFoundError:
            pass
        return s

    def counts(self) -> dict[str, int]:
        with self.lock:
            labels = list(self.labels)
        return {c: count_images(self.root / c) for c in labels}

    def state(self) -> dict[str, Any]:
        with self.lock:
            recent = [{"rel": s.rel, "label": s.label, "frame": s.frame} for s in reversed(self.recent)]
        return {"classes": [{"label": c, "count": n} for c, n in self.counts().items()], "recent": recent,
                "root": str(self.root)}


class Grabber:
    """Reads a source in a thread and keeps the newest frame; a file's frames are paced at
    ``file_fps`` (unless the source paces itself: ``--fps``) so the page shows them moving, and
    its last frame stays when it ends. An image of a folder that cannot be read is skipped,
    counted in ``errors`` (the last message in ``last_error``) and passed to ``on_error``, as
    ``edgecls camera`` does; any other failure ends the reading with ``ended`` saying why, so
    nothing waits for a frame that cannot come."""

    def __init__(self, source: Source, on_frame: Callable[[Frame], None] | None = None, file_fps: float = 10.0,
                 on_error: Callable[[str], None] | None = None):
        self.source = source
        self.on_frame = on_frame
        self.on_error = on_error
        self.gap = 0.0 if source.live or source.fps or not file_fps else 1.0 / file_fps
        self.frame: Frame | None = None
        self.ended: str | None = None
        self.errors = 0
        self.last_error = ""
        self.cv = threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="edgecls-collect")

    def start(self) -> "Grabber":
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                f = self._read()
                if f is False:
                    continue
                if f is None:
                    self.ended = "end of input"
                    return
                with self.cv:
                    self.frame = f
                    self.cv.notify_all()
                if self.on_frame:
                    self.on_frame(f)
                if self.gap:
                    time.sleep(self.gap)
        except SourceError as e:
            self.ended = str(e)
        except Exception as e:  # never leave the page waiting on a thread that is gone
            self.ended = f"reading {self.source.name} failed ({type(e).__name__}: {e})"
        finally:
            with self.cv:
                if self.ended is None:
                    self.ended = "stopped"
                self.cv.notify_all()

    def _read(self) -> Frame | None | bool:
        """The source's next frame, None at its end, False for an unreadable image that was skipped."""
        try:
            return self.source.read()
        except SourceError:
            raise
        except EdgeclsError as e:  # not a SourceError: an image of a folder that cannot be decoded
            if self.source.live:
                raise
            self.errors += 1
            self.last_error = str(e)
            if self.on_error:
                self.on_error(str(e))
            return False

    def latest(self, newer_than: int = -1, timeout: float = 2.0) -> Frame | None:
        """The newest frame; with ``newer_than``, wait up to ``timeout`` for one after that number
        (None if none came)."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while (self.frame is None or self.frame.n <= newer_than) and self.ended is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cv.wait(left)
            f = self.frame
        return f if f is not None and f.n > newer_than else None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.source.close()


def take(collector: Collector, source: Source, label: str, count: int, every: float,
         on_saved: Callable[[Saved], None] | None = None, stop: threading.Event | None = None) -> list[Saved]:
    """``count`` photos of ``label``, ``every`` seconds apart: a camera's newest frame each time,
    a file's frames in order. Stops early at the end of a file (what was taken is returned)."""
    label = collector.add_class(label)
    stop = stop or threading.Event()
    saved: list[Saved] = []
    if source.live:
        grabber = Grabber(source).start()
        try:
            last = -1
            next_t = time.monotonic()
            while len(saved) < count and not stop.is_set():
                time.sleep(max(0.0, next_t - time.monotonic()))
                f = grabber.latest(newer_than=last, timeout=10.0)
                if f is None:
                    if grabber.ended:
                        raise SourceError(grabber.ended)
                    continue
                next_t = time.monotonic() + every
                last = f.n
                saved.append(collector.save(label, f))
                if on_saved:
                    on_saved(saved[-1])
        finally:
            grabber.close()
        return saved
    try:
        while len(saved) < count and not stop.is_set():
            f = source.read()
            if f is None:
                break
            saved.append(collector.save(label, f))
            if on_saved:
                on_saved(saved[-1])
            if every and len(saved) < count:
                time.sleep(every)
    finally:
        source.close()
    return saved


def frame_of(array: np.ndarray, n: int = 0) -> Frame:
    """A Frame from an RGB array (for the Python API and tests)."""
    return Frame(np.ascontiguousarray(array), time.time(), n)

