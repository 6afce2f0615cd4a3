"""``edgecls camera --save-uncertain DIR``: keep the frames the model is unsure of, to label later.

What is kept, in order of the checks:
1. uncertain: the top-1 score is below ``score`` (0.6) or the margin to the second class is below
   ``margin`` (0.15);
2. within the rate: at most ``per_minute`` frames saved in any 60 seconds;
3. not a near-duplicate of the last saved frame: a 16 x 16 grayscale thumbnail differs from the
   last saved one's by at least ``dup_level`` grey levels on average (a still scene is saved once);
4. room left: ``DIR`` below ``max_mb`` and the disk at least 10 % free; when either fails saving
   stops for good and says so once.

``observe`` runs on the inference thread and only checks 1 and 2 and queues the frame (a bounded
queue; a full queue drops the frame); a worker thread does 3 and 4, encodes the JPEG and writes
it. Layout of ``DIR``, which ``edgecls pull`` reads:
    <UTC time>_<label>_<score>.jpg   the frame's full picture, the predicted label made file-safe
    index.jsonl                      one line per saved frame: file, t, frame, label, score, top_k
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from edge_runtime.dataset.files import jpeg, safe_label, stamp, write_new

INDEX = "index.jsonl"
MIN_FREE = 0.10  # fraction of the disk that must stay free
THUMB = 16
DEFAULT_DUP_LEVEL = 4.0  # mean absolute difference of the thumbnails, grey levels 0..255
QUEUE = 8  # frames waiting to be saved (a place in the rate each, so at most --save-per-minute)


def thumbnail(frame: Any) -> np.ndarray:
    """A THUMB x THUMB grayscale float thumbnail of the frame's full picture."""
    pic = frame.display if frame.display is not None else frame.rgb
    return np.asarray(Image.fromarray(pic).convert("L").resize((THUMB, THUMB), Image.BILINEAR), np.float32)


@dataclass
class Stats:
    seen: int = 0
    uncertain: int = 0
    saved: int = 0
    rate_limited: int = 0
    duplicates: int = 0
    dropped: int = 0  # the queue was full
    stopped: str = ""  # why saving stopped, if it did
    bytes: int = 0  # in DIR

    def describe(self, directory: str) -> str:
        return (f"{self.saved} uncertain frames saved in {directory} ({self.uncertain} of {self.seen} frames were "
                f"uncertain; skipped: {self.rate_limited} over the rate, {self.duplicates} near-duplicates, "
                f"{self.dropped} while busy)" + ("; saving had stopped (see above)" if self.stopped else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "uncertain": self.uncertain, "saved": self.saved, "rate_limited": self.rate_limited,
                "duplicates": self.duplicates, "dropped": self.dropped, "stopped": self.stopped}


class Miner:
    """Keeps uncertain frames in ``directory``; see the module's docstring. ``log`` gets the
    one-time messages (saving stopped, a write failed)."""

    def __init__(self, directory: str | os.PathLike[str], score: float = 0.6, margin: float = 0.15,
                 per_minute: int = 6, max_mb: float | None = None, dup_level: float = DEFAULT_DUP_LEVEL,
                 min_free: float = MIN_FREE, log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, wait: bool = False):
        for name, v in (("--uncertain-score", score), ("--uncertain-margin", margin)):
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must be from 0 to 1, got {v}")
        if per_minute < 1:
            raise ValueError(f"--save-per-minute must be at least 1, got {per_minute}")
        if max_mb is not None and max_mb <= 0:
            raise ValueError(f"--save-max-mb must be above 0, got {max_mb}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.score, self.margin, self.per_minute = score, margin, per_minute
        self.max_bytes = None if max_mb is None else int(max_mb * 1e6)
        self.dup_level, self.min_free = dup_level, min_free
        self.log = log or (lambda m: None)
        self.clock = clock
        self.wait = wait
        self.stats = Stats(bytes=sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file()))
        self.lock = threading.Lock()
        self.saved_at: deque[float] = deque()  # clock() of each save in the last minute
        self.pending = 0  # queued frames that hold a place in the rate
        self.last_thumb: np.ndarray | None = None
        self.queue: queue.Queue[Any] = queue.Queue(QUEUE)
        self.worker = threading.Thread(target=self._work, daemon=True, name="edgecls-mining")
        self.worker.start()

    def uncertain(self, classes: Sequence[Any]) -> bool:
        """Whether a frame with these ranked classes (best first) is one to keep."""
        if not classes:
            return True  # nothing above the threshold: as unsure as it gets
        second = classes[1].score if len(classes) > 1 else 0.0
        return classes[0].score < self.score or classes[0].score - second < self.margin

    def observe(self, frame: Any, classes: Sequence[Any]) -> bool:
        """Called for every classified frame (``classes``: best first, at least two where the model
        has them). Never blocks unless the Miner was made with ``wait`` (a file's frames: they wait
        their turn, as in ``camera.run``); a full queue drops the frame. Returns whether the frame
        was queued for saving."""
        self.stats.seen += 1
        if self.stats.stopped or not self.uncertain(classes):
            return False
        self.stats.uncertain += 1
        now = self.clock()
        with self.lock:
            while self.saved_at and now - self.saved_at[0] >= 60.0:
                self.saved_at.popleft()
            if len(self.saved_at) + self.pending >= self.per_minute:
                self.stats.rate_limited += 1
                return False
            self.pending += 1
        top = [{"index": int(c.index), "label": c.label, "score": round(float(c.score), 6)} for c in classes]
        try:
            self.queue.put((frame, top, now), block=self.wait)
        except queue.Full:
            with self.lock:
                self.pending -= 1
            self.stats.dropped += 1
            return False
        return True

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            frame, top, now = item
            saved = False
            try:
                saved = self._save(frame, top)
            except OSError as e:
                self._stop(f"cannot write in {self.dir} ({e.strerror or e}); no more frames saved")
            finally:
                with self.lock:
                    self.pending -= 1
                    if saved:
                        self.saved_at.append(now)

    def _save(self, frame: Any, top: list[dict]) -> bool:
        if self.stats.stopped:
            return False
        thumb = thumbnail(frame)
        if self.last_thumb is not None and float(np.mean(np.abs(thumb - self.last_thumb))) < self.dup_level:
            self.stats.duplicates += 1
            return False
        if self.max_bytes is not None and self.stats.bytes >= self.max_bytes:
            self._stop(f"{self.dir} has reached --save-max-mb ({self.max_bytes / 1e6:g} MB); no more frames saved")
            return False
        usage = shutil.disk_usage(self.dir)
        if usage.free < self.min_free * usage.total:
            self._stop(f"the disk of {self.dir} is less than {self.min_free:.0%} free "
                       f"({usage.free / 1e9:.2f} of {usage.total / 1e9:.1f} GB); no more frames saved")
            return False
        data = jpeg(frame)
        label, score = (top[0]["label"], top[0]["score"]) if top else ("none", 0.0)
        path = write_new(self.dir, stamp(frame.t), data, tail=f"_{safe_label(label)}_{score:.3f}")
        record = {"file": path.name, "t": round(frame.t, 6), "frame": frame.n, "label": label, "score": score,
                  "top_k": top}
        with open(self.dir / INDEX, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.last_thumb = thumb
        self.stats.saved += 1
        self.stats.bytes += len(data)
        return True

    def _stop(self, why: str) -> None:
        if not self.stats.stopped:
            self.stats.stopped = why
            self.log(why)

    def close(self, timeout: float = 10.0) -> Stats:
        """Save what is queued, stop the worker; returns the counts."""
        self.queue.put(None)
        self.worker.join(timeout)
        return self.stats
