"""What every frame source hands over: a ``Frame`` (RGB uint8, its capture time and number, and
optionally a larger picture and scores computed on the sensor), behind one small interface
(``Source``: ``open()``, ``read()`` -> the next frame or None at the end, ``close()``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.errors import EdgeclsError


class SourceError(EdgeclsError):
    """A frame source that cannot be opened or has stopped delivering."""


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray  # H x W x 3 uint8, RGB
    t: float  # seconds (time.time()) when it was captured
    n: int  # frame number from this source, from 0
    display: np.ndarray | None = None  # a larger RGB picture for the web view, when the source has one
    scores: np.ndarray | None = None  # class scores computed before the frame arrived (the IMX500's sensor)
    stages: dict[str, float] | None = None  # and the times of that computation, ms


class Source:
    """Base class. ``live`` sources (cameras) drop frames when inference is slower; files do not.
    ``fps`` above 0: a file that paces itself at that rate, like a camera."""

    name = "source"
    live = False
    fps = 0.0

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
