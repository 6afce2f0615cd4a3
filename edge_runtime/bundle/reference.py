"""The bundle's reference: what the model's outputs looked like on held-out photos, recorded by
``convert`` and ``adopt`` (and ``teach``, from leave-one-out scores of the taught photos) in ``edgecls.json`` so that a running camera can tell when what it sees
no longer looks like that (``live/drift.py``).

The ``reference`` section::

    {"photos": N,                       # held-out photos scored
     "edges": [0, 0.1, ..., 1.0],       # bin edges of the two histograms below (ascending, 0 to 1)
     "top1": [count per bin],           # the top-1 score of each photo
     "margin": [count per bin],         # top-1 minus top-2
     "labels": {"INDEX": count, ...},   # the predicted (top-1) class of each photo; absent classes left out
     "source": "held-out test split"}   # where the photos came from (free text)

Counts, not shares: the reader knows how much evidence the reference holds, which the drift
statistic needs (its bias shrinks with the number of photos)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.errors import BundleError

# Finer at the top, where a confident model puts most of its photos.
EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0)
FIX = "reconvert the model (or remove the reference section)"


@dataclass(frozen=True)
class Reference:
    """Histograms of top-1 score and margin, and the predicted-label counts, on ``photos`` photos."""

    photos: int
    edges: tuple[float, ...]
    top1: tuple[int, ...]
    margin: tuple[int, ...]
    labels: dict[int, int]
    source: str = ""

    @classmethod
    def from_scores(cls, scores: np.ndarray, source: str = "") -> "Reference":
        """The reference of a (photos, classes) array of class scores (probabilities)."""
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 2 or s.shape[0] == 0 or s.shape[1] < 2:
            raise ValueError(f"a reference needs scores of at least one photo and two classes, got shape {s.shape}")
        top2 = np.sort(s, axis=1)[:, -2:]
        top1, margin = top2[:, 1], top2[:, 1] - top2[:, 0]
        pred = s.argmax(axis=1)
        idx, counts = np.unique(pred, return_counts=True)
        return cls(int(s.shape[0]), EDGES, tuple(int(c) for c in histogram(top1, EDGES)),
                   tuple(int(c) for c in histogram(margin, EDGES)),
                   {int(i): int(c) for i, c in zip(idx, counts)}, source)

    def to_json(self) -> dict[str, Any]:
        return {"photos": self.photos, "edges": list(self.edges), "top1": list(self.top1), "margin": list(self.margin),
                "labels": {str(k): v for k, v in sorted(self.labels.items())}, "source": self.source}

    @classmethod
    def from_json(cls, d: Any, where: str, classes: int) -> "Reference":
        """A validated reference section; BundleError naming the key otherwise."""
        if not isinstance(d, dict):
            raise BundleError(f"{where}: reference must be a JSON object; {FIX}")
        photos = d.get("photos")
        if not _count(photos) or photos == 0:
            raise BundleError(f"{where}: reference.photos must be a positive count, got {photos!r}; {FIX}")
        edges = d.get("edges")
        if (not isinstance(edges, list) or not 2 <= len(edges) <= 1000 or not all(_num(e) for e in edges)
                or any(b <= a for a, b in zip(edges, edges[1:]))):
            raise BundleError(f"{where}: reference.edges must be 2 or more ascending numbers; {FIX}")
        hists = {}
        for key in ("top1", "margin"):
            h = d.get(key)
            if not isinstance(h, list) or len(h) != len(edges) - 1 or not all(_count(c) for c in h) or sum(h) != photos:
                raise BundleError(f"{where}: reference.{key} must be {len(edges) - 1} counts adding up to "
                                  f"reference.photos ({photos}); {FIX}")
            hists[key] = tuple(h)
        labels = d.get("labels")
        if not isinstance(labels, dict) or not all(
                isinstance(k, str) and k.isdigit() and int(k) < classes and _count(v) for k, v in labels.items()) \
                or sum(labels.values()) != photos:
            raise BundleError(f"{where}: reference.labels must map class indices below {classes} to counts adding "
                              f"up to reference.photos ({photos}); {FIX}")
        source = d.get("source", "")
        return cls(photos, tuple(float(e) for e in edges), hists["top1"], hists["margin"],
                   {int(k): v for k, v in labels.items()}, source if isinstance(source, str) else "")


def histogram(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Counts per bin; a value on an inner edge counts in the bin above it, and the last bin includes 1.0."""
    return np.bincount(bin_indices(values, edges), minlength=len(edges) - 1)


def bin_indices(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
