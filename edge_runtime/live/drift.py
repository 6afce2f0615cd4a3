"""Drift: does what the camera sees still look like the photos the bundle was checked on?

The bundle's ``reference`` (``bundle/reference.py``) holds histograms of the top-1 score and the
margin (top-1 minus top-2) on held-out photos, and their predicted labels. ``Drift`` keeps the
same for a sliding window of the last ``window`` live frames and compares the two.

The statistic (``score``): the **population stability index** (PSI) of the top-1 scores and of
the margins, the larger of the two, less its sampling bias:

    PSI = sum over bins of (live_i - ref_i) * ln(live_i / ref_i)

with each share smoothed by half a count per bin (Jeffreys), so an empty bin is finite. Between
two samples of the *same* distribution PSI is not 0 but about ``(k - 1) * (1/n + 1/m)`` (k bins
holding photos, n reference photos, m live frames: PSI is a chi-square divergence), which for a
small reference is itself above the usual 0.1 to 0.25 alarm levels; that expected value is
subtracted and the result floored at 0. Read it as PSI is read: below 0.1 nothing moved, 0.1 to
0.25 a moderate shift, above 0.25 the camera sees something the model was not checked on (a
fogged or bumped lens, night, another scene): its confidence has moved.

Beside it, ``label_shift``: the total variation distance between the live and the reference
shares of predicted labels (0: the same mix, 1: no label in common). It is reported, not part of
``score``: a camera that watches one class for an hour legitimately sees a mix unlike a balanced
test split.

Pure numpy and the standard library; ``observe`` costs a few microseconds a frame (an argmax, a
partition, two bisections, counter updates); the score is computed when read, and every
``check_every`` frames for the warning."""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edge_runtime.bundle.reference import Reference

WINDOW = 200  # live frames compared with the reference
MIN_FRAMES = 50  # no score before this many (fewer frames say little)
DRIFT_WARN = 0.25  # the usual PSI level of a significant shift
STATISTIC = "psi"  # named in the status JSON and the metrics' help


@dataclass(frozen=True)
class DriftScore:
    score: float  # max(top1_psi, margin_psi), bias-corrected
    top1_psi: float
    margin_psi: float
    label_shift: float  # total variation distance of the predicted-label shares, 0..1
    frames: int  # live frames in the window

    def to_json(self) -> dict[str, float | int | str]:
        return {"score": round(self.score, 4), "statistic": STATISTIC, "top1_psi": round(self.top1_psi, 4),
                "margin_psi": round(self.margin_psi, 4), "label_shift": round(self.label_shift, 4),
                "frames": self.frames}


def psi(ref: np.ndarray, live: np.ndarray) -> float:
    """Bias-corrected PSI of two histograms of counts over the same bins (see the module's docstring)."""
    ref, live = np.asarray(ref, np.float64), np.asarray(live, np.float64)
    n, m = ref.sum(), live.sum()
    if n == 0 or m == 0:
        return 0.0
    k = len(ref)
    e = (ref + 0.5) / (n + 0.5 * k)
    a = (live + 0.5) / (m + 0.5 * k)
    raw = float(np.sum((a - e) * np.log(a / e)))
    occupied = int(np.count_nonzero((ref + live) > 0))
    return max(0.0, raw - max(occupied - 1, 0) * (1.0 / n + 1.0 / m))


def label_shift(ref: dict[int, int], live: dict[int, int]) -> float:
    """Total variation distance between two label-count maps' shares."""
    n, m = sum(ref.values()), sum(live.values())
    if n == 0 or m == 0:
        return 0.0
    return 0.5 * sum(abs(ref.get(i, 0) / n - live.get(i, 0) / m) for i in set(ref) | set(live))


class Drift:
    """The live window against ``reference``. ``observe`` runs in the camera loop; ``score`` may be
    read from any thread. ``log`` hears, once each time, that the score crossed ``warn`` and that
    it came back below it."""

    def __init__(self, reference: Reference, window: int = WINDOW, warn: float | None = DRIFT_WARN,
                 log: Callable[[str], None] | None = None, check_every: int = 10):
        if window < 2:
            raise ValueError(f"--drift-window {window}: the window must hold at least 2 frames (default 200)")
        self.reference, self.window, self.warn, self.log = reference, window, warn, log
        self.min_frames = min(MIN_FRAMES, window)
        self.edges = list(reference.edges)
        self.ref_top1 = np.asarray(reference.top1, np.int64)
        self.ref_margin = np.asarray(reference.margin, np.int64)
        bins = len(self.edges) - 1
        self.top1 = [0] * bins
        self.margin = [0] * bins
        self.labels: dict[int, int] = {}
        self.recent: deque[tuple[int, int, int]] = deque()  # (top-1 bin, margin bin, label) per frame
        self.check_every = max(1, check_every)
        self.seen = 0
        self.warned = False
        self.lock = threading.Lock()

    def _bin(self, v: float) -> int:
        return min(max(bisect_right(self.edges, v) - 1, 0), len(self.edges) - 2)

    def observe(self, scores: np.ndarray) -> None:
        """One frame's class scores (unsmoothed)."""
        label = int(scores.argmax())
        top = float(scores[label])
        rest = scores.copy()  # the second score: a copy and a max cost a third of np.partition's time
        rest[label] = -np.inf
        second = float(rest.max()) if len(scores) > 1 else 0.0
        item = (self._bin(top), self._bin(top - second), label)
        with self.lock:
            self.recent.append(item)
            self.top1[item[0]] += 1
            self.margin[item[1]] += 1
            self.labels[label] = self.labels.get(label, 0) + 1
            if len(self.recent) > self.window:
                t, g, old = self.recent.popleft()
                self.top1[t] -= 1
                self.margin[g] -= 1
                left = self.labels[old] - 1
                if left:
                    self.labels[old] = left
                else:
                    del self.labels[old]
            self.seen += 1
            due = self.warn is not None and self.log is not None and self.seen % self.check_every == 0
        if due:
            self._check()

    def score(self) -> DriftScore | None:
        """The window against the reference, or None while it holds fewer than ``min_frames`` frames."""
        with self.lock:
            frames = len(self.recent)
            if frames < self.min_frames:
                return None
            top1, margin, labels = list(self.top1), list(self.margin), dict(self.labels)
        t, g = psi(self.ref_top1, np.asarray(top1)), psi(self.ref_margin, np.asarray(margin))
        return DriftScore(max(t, g), t, g, label_shift(self.reference.labels, labels), frames)

    def _check(self) -> None:
        s = self.score()
        if s is None or self.warn is None or self.log is None:
            return
        if s.score > self.warn and not self.warned:
            self.warned = True
            self.log(f"drift {s.score:.2f} is above --drift-warn {self.warn:g} over the last {s.frames} frames (top-1 "
                     f"PSI {s.top1_psi:.2f}, margin PSI {s.margin_psi:.2f}, label shift {s.label_shift:.2f}): the "
                     "camera sees something unlike the bundle's held-out photos - check the lens, the light and the "
                     "scene")
        elif s.score <= self.warn and self.warned:
            self.warned = False
            self.log(f"drift {s.score:.2f} is back below --drift-warn {self.warn:g}")


def describe(s: DriftScore | None) -> str:
    """One line for the summary."""
    if s is None:
        return "drift: too few frames to judge"
    level = "none" if s.score < 0.1 else "moderate" if s.score <= 0.25 else "significant"
    return (f"drift {s.score:.3f} ({level}; top-1 PSI {s.top1_psi:.3f}, margin PSI {s.margin_psi:.3f}, "
            f"label shift {s.label_shift:.2f}) over the last {s.frames} frames")

