"""What every action sink shares: the state a sink is told about, and the sink's own thread that
takes events from a bounded queue.

The camera loop must never wait for an action. It only ``offer``s an event, which appends to a
deque under a lock held for a few instructions; when the queue is full the oldest event is dropped
and counted. Each sink's thread takes events one at a time and calls ``handle``; a sink with an
``interval`` also gets ``tick()`` that often. ``stop(deadline)`` lets the thread finish what is
queued until the deadline, then counts what is left as dropped."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from edge_runtime.model.postprocess import Class

Log = Callable[[str], None]


def stderr_log(msg: str) -> None:
    print(f"edgecls: {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class State:
    """The current (debounced) label and the frame it was last seen with. ``label`` is None while
    no class leads with at least ``--min-score``. ``previous`` is set on a change."""

    label: str | None
    frame: int
    t: float  # time.time() when the frame was captured
    classes: Sequence[Class]
    previous: str | None = None
    zone: str | None = None  # the zone (--zone NAME=...) this state is of; None: the whole frame

    @property
    def score(self) -> float | None:
        """The current label's score in this frame (None if it is not in the frame's top-k)."""
        for c in self.classes:
            if c.label == self.label:
                return c.score
        return None

    def to_json(self) -> dict[str, Any]:
        """The state message: what MQTT publishes and a webhook posts."""
        s = self.score
        return {**({"zone": self.zone} if self.zone is not None else {}),
                "label": self.label, "score": None if s is None else round(s, 6), "frame": self.frame,
                "time": round(self.t, 3), "top_k": [{"label": c.label, "score": round(c.score, 6)} for c in self.classes]}


class Sink:
    """One action target, run by its own thread. Subclasses set ``name`` and implement ``handle``
    (and optionally ``open``, ``tick`` and ``close``); they count ``sent`` and ``failed``."""

    name = "sink"

    def __init__(self, log: Log = stderr_log, maxlen: int = 16, interval: float | None = None):
        self.log = log
        self.maxlen = maxlen
        self.interval = interval
        self.sent = self.failed = self.dropped = 0
        self.stopping = threading.Event()
        self._queue: deque[Any] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None

    # -- for subclasses ----------------------------------------------------------------------
    def open(self) -> None:
        """Acquire resources (called in the caller's thread by ``start``, so errors surface there)."""

    def handle(self, state: State) -> None:
        raise NotImplementedError

    def tick(self) -> None:
        """Called every ``interval`` seconds in the sink's thread."""

    def close(self) -> None:
        """Release resources (called by ``stop`` after the thread ended or the deadline passed)."""

    def extra_stats(self) -> dict[str, Any]:
        return {}

    def wait(self, seconds: float) -> bool:
        """Sleep that a stop cuts short; False if the sink is stopping (give up retries)."""
        return not self.stopping.wait(seconds)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.open()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"edgecls-{self.name}")
        self._thread.start()

    def offer(self, state: State) -> None:
        """Queue ``state`` without ever blocking; the oldest queued one is dropped when full."""
        with self._cv:
            if len(self._queue) >= self.maxlen:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(state)
            self._cv.notify()

    def _run(self) -> None:
        next_tick = time.monotonic() + self.interval if self.interval else math.inf
        while True:
            with self._cv:
                while not self._queue and not self.stopping.is_set():
                    wait = next_tick - time.monotonic()
                    if wait <= 0:
                        break
                    self._cv.wait(min(wait, 3600))
                item = self._queue.popleft() if self._queue else None
            if item is not None:
                self._safely(self.handle, item)
            elif self.stopping.is_set():
                return
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + (self.interval or math.inf)
                self._safely(self.tick)

    def _safely(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:  # an action's failure is logged and counted, never fatal
            self.failed += 1
            self.log(f"{self.name}: {type(e).__name__}: {e}")

    def stop(self, deadline: float) -> None:
        """Finish what is queued until ``deadline`` (time.monotonic()), then count the rest as dropped."""
        self.stopping.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._cv:
            self.dropped += len(self._queue)
            self._queue.clear()
        try:
            self.close()
        except Exception as e:
            self.log(f"{self.name}: closing: {type(e).__name__}: {e}")

    def stats(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "dropped": self.dropped, **self.extra_stats()}


def binary_rules(specs: Sequence[str], zones: Sequence[str]) -> list[tuple[str | None, str]]:
    """``--ha-binary`` rules as (zone, label): ``ZONE:LABEL`` names one zone, a bare LABEL means
    every zone (or the whole frame without zones)."""
    out: list[tuple[str | None, str]] = []
    for spec in dict.fromkeys(specs):
        zone, sep, label = spec.partition(":")
        if zones and sep and zone in zones:
            out.append((zone, label))
        else:
            out += [(z, spec) for z in zones] if zones else [(None, spec)]
    return list(dict.fromkeys(out))
