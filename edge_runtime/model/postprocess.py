"""From a raw output tensor to ranked classes. Plain numpy."""

from __future__ import annotations

from typing import Literal, NamedTuple, Sequence

import numpy as np

OutputKind = Literal["probabilities", "logits"]


class Class(NamedTuple):
    """One ranked class: its index in the label file, its label and its score."""

    index: int
    label: str
    score: float


def dequantize(raw: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Raw output -> float32 scores. Quantized values are widened before the zero point is
    subtracted, so uint8 255 - 0 and int8 -128 - 127 cannot wrap around."""
    if scale == 0:
        return raw.astype(np.float32, copy=False)
    return (raw.astype(np.int32) - np.int32(zero_point)).astype(np.float32) * np.float32(scale)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def top_k(scores: np.ndarray, labels: Sequence[str], k: int = 5, threshold: float = 0.0) -> list[Class]:
    """The ``k`` best classes with a score of at least ``threshold``, best first; equal
    scores are ordered by index."""
    scores = scores.reshape(-1)
    if k <= 0:
        return []
    order = np.argsort(-scores, kind="stable")[:k]
    return [Class(int(i), labels[i], float(scores[i])) for i in order if scores[i] >= threshold]
