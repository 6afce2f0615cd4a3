"""``edgecls camera --save-uncertain DIR``: keep the frames the model is unsure of, to label later.

What is kept, in order of the checks:
1. uncertain: the top-1 score is below ``score`` (0.6) or the margin to the second class is below
   ``margin`` (0.15);
2. within the rate: at most ``per_minute`` frames saved in any 60 seconds;
3. not a near-duplicate of the last saved frame: a 16 x 16 grayscale thumbnail differs from the
   last saved one's by at least ``dup_level`` grey levels on average (a still scene is saved once);
4. room left: ``DIR`` below ``max_mb`` and the disk at least 10 % free. When either fails, or the
   disk is full, saving stops and says so once; every ``recheck`` seconds (10) the saving thread
   measures ``DIR`` and the disk again (``edgecls pull --delete-after`` empties ``DIR``) and
   saving resumes, said once, when ``DIR`` is below 90 % of ``max_mb`` and the disk 2 % above
   the free floor (the margins keep it from stopping again at the next frame). Any other write
   error, or a fault in the saving thread, stops saving for good, with a message.

``observe`` runs on the inference thread and only checks 1 and 2 and queues the frame (a bounded
queue; a full queue drops the frame); a worker thread does 3 and 4, encodes the JPEG and writes
it (the picture atomically, then its index line, undone if that cannot be written whole), and
the worker never dies: a frame never waits on a thread that is gone. Layout of ``DIR``, which ``edgecls pull`` reads:
    <UTC time>_<label>_<score>.jpg   the frame's full picture, the predicted label made file-safe
    <UTC time>_<zone>_<label>_<score>.jpg  with --zone: the zone's crop (what the classifier saw)
    index.jsonl                      one line per saved frame: file, t, frame, [zone,] label, score, top_k
"""

from __future__ import annotations

import errno
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
RECHECK = 10.0  # seconds between measurements of DIR and its disk while saving is stopped for room
RESUME_SIZE = 0.9  # saving resumes when DIR is below this fraction of max_mb ...
RESUME_FREE = 0.02  # ... and the disk this fraction of its size above the free floor
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # a write error that more room cures


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
    stopped: str = ""  # why saving is stopped, while it is
    stops: int = 0  # how often saving stopped
    resumed: int = 0  # and resumed
    bytes: int = 0  # in DIR

    def describe(self, directory: str) -> str:
        return (f"{self.saved} uncertain frames saved in {directory} ({self.uncertain} of {self.seen} frames were "
                f"uncertain; skipped: {self.rate_limited} over the rate, {self.duplicates} near-duplicates, "
                f"{self.dropped} while busy)" + ("; saving had stopped (see above)" if self.stopped else "")
                + (f"; saving stopped and resumed {_times(self.resumed)}" if self.resumed else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "uncertain": self.uncertain, "saved": self.saved, "rate_limited": self.rate_limited,
                "duplicates": self.duplicates, "dropped": self.dropped, "stopped": self.stopped, "stops": self.stops,
                "resumed": self.resumed}


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _bytes(n: float) -> str:
    """A size for a message: ``1.50 GB``, ``0.18 MB``."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.2f} MB"


class Miner:
    """Keeps uncertain frames in ``directory``; see the module's docstring. ``log`` gets the
    one-time messages (saving stopped, a write failed)."""

    def __init__(self, directory: str | os.PathLike[str], score: float = 0.6, margin: float = 0.15,
                 per_minute: int = 6, max_mb: float | None = None, dup_level: float = DEFAULT_DUP_LEVEL,
                 min_free: float = MIN_FREE, log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, wait: bool = False, recheck: float = RECHECK):
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
        self.recheck = recheck
        self.for_room = False  # saving is stopped until there is room again (else for good)
        self.stats = Stats(bytes=self._measure())
        self.lock = threading.Lock()
        self.settled = threading.Condition(self.lock)  # notified each time a queued frame has been judged
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

    def observe(self, frame: Any, classes: Sequence[Any], zone: str | None = None) -> bool:
        """Called for every classified frame (``classes``: best first, at least two where the model
        has them). Never blocks unless the Miner was made with ``wait`` (a file's frames: they wait
        their turn, as in ``camera.run``); a full queue drops the frame. With ``wait``, a frame that
        finds the rate taken by frames still queued waits until they are judged (a near-duplicate
        among them gives its place back), so what a file yields does not depend on how fast this
        machine's disk or saving thread is. Returns whether the frame was queued for saving. With
        ``zone`` (a --zone's crop as ``frame``), its index line says so."""
        self.stats.seen += 1
        if self.stats.stopped or not self.uncertain(classes):
            return False
        self.stats.uncertain += 1
        now = self.clock()
        with self.lock:
            while True:
                while self.saved_at and now - self.saved_at[0] >= 60.0:
                    self.saved_at.popleft()
                if len(self.saved_at) + self.pending < self.per_minute:
                    break
                if not (self.wait and self.pending and self.worker.is_alive()):
                    self.stats.rate_limited += 1
                    return False
                self.settled.wait(0.5)  # (a timeout: a worker that dies is noticed)
            self.pending += 1
        top = [{"index": int(c.index), "label": c.label, "score": round(float(c.score), 6)} for c in classes]
        if not self._put((frame, top, now, zone)):
            with self.lock:
                self.pending -= 1
                self.settled.notify_all()
            self.stats.dropped += 1
            return False
        return True

    def _put(self, item: Any) -> bool:
        """Queue ``item``; with ``wait``, wait for room for as long as the saving thread lives."""
        while True:
            try:
                self.queue.put(item, block=self.wait, timeout=0.5 if self.wait else None)
                return True
            except queue.Full:
                if not self.wait or not self.worker.is_alive():
                    return False

    def _work(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=self.recheck if self.stats.stopped and self.for_room else None)
            except queue.Empty:
                self._try_resume()
                continue
            if item is None:
                return
            frame, top, now, zone = item
            saved = False
            try:
                saved = self._save(frame, top, zone)
            except OSError as e:
                if e.errno in FULL_ERRNOS:
                    self._stop(f"the disk of {self.dir} is full ({e.strerror or e}); no frames saved until there "
                               "is room again", for_room=True)
                else:
                    self._stop(f"cannot write in {self.dir} ({e.strerror or e}); no more frames saved")
            except Exception as e:  # a fault of this thread: say it, keep draining the queue
                self._stop(f"saving a frame failed ({type(e).__name__}: {e}); no more frames saved")
            finally:
                with self.lock:
                    self.pending -= 1
                    if saved:
                        self.saved_at.append(now)
                    self.settled.notify_all()

    def _save(self, frame: Any, top: list[dict], zone: str | None = None) -> bool:
        if self.stats.stopped:
            return False
        thumb = thumbnail(frame)
        if self.last_thumb is not None and float(np.mean(np.abs(thumb - self.last_thumb))) < self.dup_level:
            self.stats.duplicates += 1
            return False
        if self.max_bytes is not None and self.stats.bytes >= self.max_bytes:
            self.stats.bytes = self._measure()  # what DIR holds now: pull may have emptied it
        if self.max_bytes is not None and self.stats.bytes >= self.max_bytes:
            self._stop(f"{self.dir} has reached --save-max-mb ({self.max_bytes / 1e6:g} MB); no frames saved until "
                       "it is emptied (edgecls pull --delete-after)", for_room=True)
            return False
        usage = shutil.disk_usage(self.dir)
        if usage.free < self.min_free * usage.total:
            self._stop(f"the disk of {self.dir} is less than {self.min_free:.0%} free "
                       f"({_bytes(usage.free)} of {_bytes(usage.total)}); no frames saved until there is "
                       "room again", for_room=True)
            return False
        data = jpeg(frame)
        label, score = (top[0]["label"], top[0]["score"]) if top else ("none", 0.0)
        path = write_new(self.dir, stamp(frame.t), data,
                         tail=(f"_{zone}" if zone else "") + f"_{safe_label(label)}_{score:.3f}")
        record = {"file": path.name, "t": round(frame.t, 6), "frame": frame.n, **({"zone": zone} if zone else {}),
                  "label": label, "score": score, "top_k": top}
        try:
            self._append_index(record)
        except BaseException:
            path.unlink()  # a picture without its index line is not kept
            raise
        self.last_thumb = thumb
        self.stats.saved += 1
        self.stats.bytes += len(data)
        return True

    def _append_index(self, record: dict[str, Any]) -> None:
        """One whole line at the end of index.jsonl, or none: a short write is cut off again."""
        line = (json.dumps(record) + "\n").encode()
        fd = os.open(self.dir / INDEX, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                if os.write(fd, line) != len(line):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)

    def _measure(self) -> int:
        """Bytes in DIR's files (one directory listing)."""
        total = 0
        with os.scandir(self.dir) as it:
            for e in it:
                try:
                    if e.is_file(follow_symlinks=False):
                        total += e.stat(follow_symlinks=False).st_size
                except OSError:  # removed while listed
                    continue
        return total

    def _try_resume(self) -> None:
        """While saving is stopped for room: measure DIR and its disk, resume when both have room."""
        try:
            size = self._measure()
            usage = shutil.disk_usage(self.dir)
        except OSError:
            return  # DIR is gone or unreadable for now: measure again later
        if self.max_bytes is not None and size >= RESUME_SIZE * self.max_bytes:
            return
        if usage.free < (self.min_free + RESUME_FREE) * usage.total:
            return
        self.stats.bytes = size
        self.stats.stopped, self.for_room = "", False
        self.stats.resumed += 1
        self.log(f"saving uncertain frames in {self.dir} resumed ({_bytes(size)} there, {_bytes(usage.free)} free "
                 "on its disk)")

    def _stop(self, why: str, for_room: bool = False) -> None:
        if not self.stats.stopped:
            self.stats.stopped, self.for_room = why, for_room
            self.stats.stops += 1
            self.log(why)

    def close(self, timeout: float = 10.0) -> Stats:
        """Save what is queued (waiting at most ``timeout`` seconds), stop the worker; returns the counts."""
        try:
            self.queue.put(None, timeout=timeout if self.worker.is_alive() else 0.001)
        except queue.Full:
            pass  # a worker that is gone or stuck on the disk: its daemon thread ends with the process
        self.worker.join(timeout)
        return self.stats
