"""Zones and triggers: classify named regions of the frame, each on its own, only when needed.

A zone (``--zone door=X,Y,W,H``) is a rectangle of the full-resolution picture (``Frame.display``
when the source has one, the Pi camera's main stream; else ``Frame.rgb``), in pixels, or in
fractions of the frame when every value is at most 1. Its crop goes through the bundle's own
preprocessing (``Classifier.prepare``) and is classified as if it were a photo of its own.

A trigger decides, per zone and per frame, whether the zone is classified:

- ``always``: every frame;
- ``motion``: the zone's first frame; then a frame whose zone differs from the zone as it was last
  classified in more than ``motion_threshold`` of its pixels (a downscaled grey image, a pixel
  counting as changed when it moved by more than ``PIXEL_DELTA`` of 255), and every frame after it
  until the zone is still and its label has been the same ``settle`` times in a row; ``every``
  seconds as a heartbeat (0: none);
- ``every:S``: the first frame, then once every S seconds (frame time).

The decision is made in the capture thread (``ZoneSet.prepare``, so skipped zones cost no resize);
the loop hands each zone's result back with ``ZoneState.settle`` (a deque: no lock on the hot path),
and the capture thread reads them before its next decision. Counters per zone: classified, skipped."""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import numpy as np

from edge_runtime.errors import EdgeclsError
from edge_runtime.live.frames import Frame, Source

NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
SPEC_HELP = "give --zone NAME=X,Y,W,H in pixels of the full frame, or in fractions of it (every value <= 1)"
PIXEL_DELTA = 25  # a grey level change (of 255) above camera noise and JPEG ringing
MOTION_SIDE = 48  # the motion image's longer side, pixels
MIN_SIDE = 8  # a zone smaller than this (pixels) holds nothing a classifier can see


class ZoneError(EdgeclsError):
    """A zone that does not fit the frame the source delivers."""


@dataclass(frozen=True)
class Zone:
    """A named rectangle, in pixels or (``fractions``) in fractions of the frame."""

    name: str
    x: float
    y: float
    w: float
    h: float
    fractions: bool

    @classmethod
    def parse(cls, spec: str) -> "Zone":
        """``NAME=X,Y,W,H``; a ValueError that names the spec and the fix otherwise."""
        name, sep, rest = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--zone {spec!r}: no name; {SPEC_HELP}, e.g. --zone door=0.1,0.2,0.3,0.5")
        if not NAME.fullmatch(name):
            raise ValueError(f"--zone {spec!r}: a zone name is 1 to 40 letters, digits, '_' or '-' (it names the "
                             "zone's MQTT topic and Home Assistant entity)")
        parts = [p.strip() for p in rest.split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(parts) != 4 or len(values) != 4 or not all(np.isfinite(values)):
            raise ValueError(f"--zone {spec!r}: expected four numbers X,Y,W,H; {SPEC_HELP}")
        x, y, w, h = values
        if min(values) < 0 or w == 0 or h == 0:
            raise ValueError(f"--zone {spec!r}: X and Y must be 0 or more, W and H above 0")
        fractions = max(values) <= 1
        if fractions and (x + w > 1 + 1e-9 or y + h > 1 + 1e-9):
            raise ValueError(f"--zone {spec!r}: as fractions, X+W and Y+H must be at most 1 (the zone ends outside "
                             "the frame)")
        if not fractions and any(v != int(v) for v in values):
            raise ValueError(f"--zone {spec!r}: pixels are whole numbers (a value above 1 makes them all pixels); "
                             "give every value as a fraction from 0 to 1, or all as pixels")
        return cls(name, x, y, w, h, fractions)

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` in a ``width`` x ``height`` picture; ZoneError if it does not fit."""
        if self.fractions:
            x0, y0 = round(self.x * width), round(self.y * height)
            x1, y1 = min(width, round((self.x + self.w) * width)), min(height, round((self.y + self.h) * height))
        else:
            x0, y0, x1, y1 = int(self.x), int(self.y), int(self.x + self.w), int(self.y + self.h)
            if x1 > width or y1 > height:
                raise ZoneError(f"--zone {self.spec}: ends at ({x1}, {y1}), outside the {width}x{height} frame this "
                                f"source delivers; give pixels inside it, or fractions (every value <= 1)")
        if x1 - x0 < MIN_SIDE or y1 - y0 < MIN_SIDE:
            raise ZoneError(f"--zone {self.spec}: {x1 - x0}x{y1 - y0} pixels of the {width}x{height} frame; a zone "
                            f"needs at least {MIN_SIDE}x{MIN_SIDE}")
        return x0, y0, x1, y1

    def crop(self, frame: Frame) -> Frame:
        """``frame`` cut to this zone (of its full-resolution picture), as a frame of its own."""
        pic = frame.display if frame.display is not None else frame.rgb
        x0, y0, x1, y1 = self.box(pic.shape[1], pic.shape[0])
        return Frame(np.ascontiguousarray(pic[y0:y1, x0:x1]), frame.t, frame.n)

    @property
    def spec(self) -> str:
        return f"{self.name}={','.join(f'{v:g}' for v in (self.x, self.y, self.w, self.h))}"


def parse_zones(specs: Sequence[str]) -> list[Zone]:
    """Every ``--zone``, in order; a name given twice is a ValueError."""
    zones = [Zone.parse(s) for s in specs]
    seen: set[str] = set()
    for z in zones:
        if z.name in seen:
            raise ValueError(f"--zone {z.name}: two zones with this name; give each zone its own name")
        seen.add(z.name)
    return zones


@dataclass(frozen=True)
class Trigger:
    kind: Literal["always", "motion", "every"] = "always"
    seconds: float = 0.0  # every:S

    @classmethod
    def parse(cls, text: str) -> "Trigger":
        if text in ("always", "motion"):
            return cls(text)  # type: ignore[arg-type]
        kind, sep, value = text.partition(":")
        if kind == "every" and sep:
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if 0 < seconds < float("inf"):
                return cls("every", seconds)
            raise ValueError(f"--trigger {text!r}: every:SECONDS takes a number of seconds above 0, e.g. every:30")
        raise ValueError(f"--trigger {text!r}: give always, motion or every:SECONDS")

    def describe(self) -> str:
        return f"every:{self.seconds:g}" if self.kind == "every" else self.kind


def motion_image(crop: np.ndarray) -> np.ndarray:
    """A small grey picture of ``crop`` (about ``MOTION_SIDE`` pixels on its longer side): a strided
    subsample to twice that size, then 2x2 means, which also tames sensor noise. Cheap: it reads
    about 4 * MOTION_SIDE**2 pixels whatever the zone's size."""
    step = max(1, max(crop.shape[:2]) // (2 * MOTION_SIDE))
    sub = crop[::step, ::step]
    grey = sub[..., 0] * np.uint16(77) + sub[..., 1] * np.uint16(150) + sub[..., 2] * np.uint16(29)
    h, w = grey.shape[0] // 2 * 2, grey.shape[1] // 2 * 2
    if h and w:  # 2x2 sums of the 8.8 fixed-point grey: 4 * 256 * level, at most 4 * 65280, fits in int32
        g = grey.astype(np.int32)
        grey = (g[0:h:2, 0:w:2] + g[1:h:2, 0:w:2] + g[0:h:2, 1:w:2] + g[1:h:2, 1:w:2]) >> 10
        return grey.astype(np.int16)
    return (grey >> 8).astype(np.int16)


def changed_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of pixels whose grey level moved by more than ``PIXEL_DELTA``."""
    return float(np.mean(np.abs(a - b) > PIXEL_DELTA))


@dataclass
class ZoneState:
    """One zone's trigger state and counters. The capture thread decides (``wants``); the loop
    reports each result (``settle``)."""

    zone: Zone
    trigger: Trigger
    motion_threshold: float = 0.05
    every: float = 0.0  # heartbeat with the motion trigger
    settle_after: int = 1  # still frames with the same label that end a burst of motion
    box: tuple[int, int, int, int] | None = None
    classified: int = 0
    skipped: int = 0
    last: dict[str, Any] = field(default_factory=dict)  # the newest result, for the web view
    _ref: np.ndarray | None = None  # the motion image as last classified
    _last_t: float | None = None  # frame time of the last classification
    _active: bool = False
    _still: int = 0
    _label: int | None = None
    _results: deque = field(default_factory=deque)  # (label, moved) from the loop

    def wants(self, crop: np.ndarray, t: float) -> tuple[bool, bool]:
        """Whether to classify this frame's zone, and whether it moved."""
        kind = self.trigger.kind
        if kind == "always":
            return True, True
        first = self._last_t is None
        period = self.trigger.seconds if kind == "every" else self.every
        due = first or bool(period and t - self._last_t >= period)  # type: ignore[operator]
        if kind == "every":
            if due:
                self._last_t = t
            return due, due
        self._drain()
        img = motion_image(crop)
        moved = first or changed_fraction(img, self._ref) > self.motion_threshold  # type: ignore[arg-type]
        if moved:
            self._active, self._still = True, 0
        if self._active or due:
            self._ref, self._last_t = img, t
            return True, moved
        return False, False

    def settle(self, label: int | None, moved: bool) -> None:
        """The loop's result for a classified frame (its top label before any threshold)."""
        self._results.append((label, moved))

    def _drain(self) -> None:
        while self._results:
            label, moved = self._results.popleft()
            self._still = 0 if moved or label != self._label else self._still + 1
            self._label = label
            if moved:
                self._active = True
            elif self._still >= self.settle_after:
                self._active = False

    def counts(self) -> dict[str, Any]:
        return {"classified": self.classified, "skipped": self.skipped}


@dataclass
class Planned:
    """One zone of one frame, as the capture thread leaves it for the loop."""

    state: ZoneState
    crop: np.ndarray
    x: Any  # the model input, or None: skipped
    moved: bool
    prep_ms: float


class ZoneSet:
    """The zones of a run: cropping, triggers, preprocessing (in the capture thread)."""

    def __init__(self, zones: Sequence[Zone], trigger: Trigger = Trigger(), motion_threshold: float = 0.05,
                 every: float = 0.0, settle_after: int = 1):
        if not zones:
            raise ValueError("no zones")
        if not 0 <= motion_threshold < 1:
            raise ValueError(f"--motion-threshold {motion_threshold:g}: a fraction of the zone, from 0 to below 1")
        if every and trigger.kind != "motion":
            raise ValueError("--every is the heartbeat of --trigger motion; with --trigger every:SECONDS the trigger "
                             "is a timer already, and --trigger always classifies every frame")
        self.zones = list(zones)
        self.trigger = trigger
        self.states = [ZoneState(z, trigger, motion_threshold, every, max(1, settle_after)) for z in zones]
        self.size: tuple[int, int] | None = None  # (width, height) of the picture the boxes are in

    @staticmethod
    def picture(frame: Any) -> np.ndarray:
        """The full-resolution picture zones are cut from."""
        return frame.display if frame.display is not None else frame.rgb

    def check(self, width: int, height: int) -> None:
        """Resolve every zone's box in a ``width`` x ``height`` picture (ZoneError if one does not fit)."""
        for s in self.states:
            s.box = s.zone.box(width, height)
        self.size = (width, height)

    def prepare(self, frame: Any, prepare: Callable[[np.ndarray], Any]) -> list[Planned]:
        """Each zone's crop, trigger decision and (when classified) model input."""
        pic = self.picture(frame)
        h, w = pic.shape[:2]
        if self.size != (w, h):
            self.check(w, h)
        out = []
        for s in self.states:
            x0, y0, x1, y1 = s.box  # type: ignore[misc]
            crop = pic[y0:y1, x0:x1]
            go, moved = s.wants(crop, frame.t)
            t = time.perf_counter()
            x = prepare(np.ascontiguousarray(crop)) if go else None
            out.append(Planned(s, crop, x, moved, (time.perf_counter() - t) * 1e3))
        return out

    def counts(self) -> dict[str, dict[str, Any]]:
        return {s.zone.name: s.counts() for s in self.states}

    def names(self) -> list[str]:
        return [z.name for z in self.zones]


class Peeked(Source):
    """``source`` with its first frame read ahead (``peek``), to check the zones against it before
    the loop starts; the loop then gets that frame first. An error of that first read is raised
    again at the loop's first read, where the loop handles it as it always does."""

    def __init__(self, source: Source):
        self.source = source
        self.name, self.live, self.fps = source.name, source.live, source.fps
        self._first: Frame | None = None
        self._error: Exception | None = None
        self._pending = False

    def peek(self) -> Frame | None:
        try:
            self._first = self.source.read()
        except EdgeclsError as e:
            self._error = e
        self._pending = True
        return self._first

    def open(self) -> None:
        self.source.open()

    def read(self) -> Frame | None:
        if self._pending:
            self._pending = False
            if self._error is not None:
                raise self._error
            return self._first
        return self.source.read()

    def close(self) -> None:
        self.source.close()
