"""A bundle's features and its taught head: plain numpy, no TensorFlow.

``edgecls convert`` exports the int8 model with a second output, ``features``: the pooled
embedding the model's own classifier layer reads, whitened against the variation within the
training classes (convert/embedding.py; its ``features`` section names the layer). It stores, per class, the mean embedding of the
training photos and how many photos made it (``head/prototypes.npz``, a few KB). ``edgecls teach``
embeds new photos with the same model, merges their means into these prototypes, and writes a
bundle whose ``head`` section says to score with the prototypes instead of the model's own
classifier output.

The head: cosine nearest-class-mean ("imprinting" with normalised prototypes). A feature vector
``f`` scores class ``c`` as ``scale * cos(f, mean_c)`` and the scores go through a softmax.
Measured on the sign-language digits (benchmarks/results/teach.md): centring the features first
(SimpleShot) is worse; a softmax regression on the shots is better on the new classes but costs
the old ones (represented on the device by their means only) more than 2 points. ``scale`` is fitted when a
bundle is taught (``fit_scale``: the leave-one-out likelihood of the taught photos), so the
scores are probabilities a threshold can be set on. Merging is exact: a class mean is a
count-weighted average, so teaching 10 photos then 10 more equals teaching 20.

The head's output is quantized like TFLite's int8 SOFTMAX (uint8, scale 1/256, zero point 0),
so everything downstream of ``Classifier.infer`` (ranking, golden photos, thresholds) treats it
as any model's probability output.

The file: an ``.npz`` (no pickles) with ``labels`` (unicode, C), ``means`` (float32, C x D),
``counts`` (int64, C).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from edge_runtime.errors import BundleError

PROTOTYPES = "head/prototypes.npz"
FEATURES_SECTION, HEAD_SECTION = "features", "head"
KIND = "cosine-ncm"
DEFAULT_SCALE = 16.0  # softmax temperature of the cosines; see benchmarks/results/teach.md
OUT_SCALE = 1 / 256  # TFLite's quantized SOFTMAX: uint8, scale 1/256, zero point 0
MAX_CLASSES = 1 << 12
MAX_DIM = 1 << 14


@dataclass
class Prototypes:
    """Per class: its label, the mean feature vector of its photos and how many photos."""

    labels: list[str]
    means: np.ndarray  # float32, classes x dim
    counts: np.ndarray  # int64, classes

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, labels=np.array(self.labels, dtype=str), means=self.means.astype(np.float32),
                 counts=self.counts.astype(np.int64))
        return buf.getvalue()

    @staticmethod
    def from_file(path: str | os.PathLike[str]) -> "Prototypes":
        """Read and check a prototypes file; BundleError naming it otherwise."""
        where = os.fspath(path)
        try:
            with np.load(where, allow_pickle=False) as z:
                labels, means, counts = z["labels"], z["means"], z["counts"]
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise BundleError(f"{where}: unreadable prototypes file ({str(e)[:120]}); reconvert or reteach the "
                              "bundle") from None
        c = len(labels)
        if (labels.ndim != 1 or labels.dtype.kind != "U" or not 1 <= c <= MAX_CLASSES or means.ndim != 2
                or means.shape[0] != c or not 1 <= means.shape[1] <= MAX_DIM or means.dtype.kind != "f"
                or counts.shape != (c,) or counts.dtype.kind not in "iu" or not np.all(np.isfinite(means))
                or np.any(counts < 1)):
            raise BundleError(f"{where}: prototypes must be labels (C), finite means (C x D) and counts >= 1 (C); "
                              "reconvert or reteach the bundle")
        return Prototypes([str(x) for x in labels], means.astype(np.float32), counts.astype(np.int64))

    def merged(self, new: "Prototypes", only: bool = False) -> "Prototypes":
        """These classes with ``new`` taught into them: a class of the same label is refined (its
        mean becomes the count-weighted mean of both), other labels are added at the end. With
        ``only``, the result holds ``new``'s classes alone."""
        if only:
            return new
        if new.dim != self.dim:
            raise ValueError(f"feature sizes differ: {self.dim} and {new.dim}")
        labels, means, counts = list(self.labels), self.means.copy(), self.counts.copy()
        for label, mean, count in zip(new.labels, new.means, new.counts):
            if label in labels:
                i = labels.index(label)
                total = counts[i] + count
                means[i] = (means[i] * counts[i] + mean * count) / total
                counts[i] = total
            else:
                labels.append(label)
                means = np.vstack([means, mean[None]])
                counts = np.append(counts, count)
        return Prototypes(labels, means.astype(np.float32), counts)


def class_means(features: np.ndarray, labels: list[str], per_photo: list[str]) -> Prototypes:
    """Prototypes of feature vectors (N x D) whose class labels are ``per_photo``, in ``labels`` order."""
    idx = np.array([labels.index(p) for p in per_photo])
    means = np.stack([features[idx == i].mean(axis=0) for i in range(len(labels))]).astype(np.float32)
    counts = np.array([int(np.sum(idx == i)) for i in range(len(labels))], np.int64)
    return Prototypes(list(labels), means, counts)


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


class Head:
    """The cosine nearest-class-mean head over a model's feature output."""

    def __init__(self, protos: Prototypes, scale: float = DEFAULT_SCALE):
        self.labels = protos.labels
        self.scale = float(scale)
        self.weights = _unit(protos.means.astype(np.float64))  # classes x dim

    @property
    def classes(self) -> int:
        return len(self.labels)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Feature vectors (D or N x D, float) -> class probabilities (classes or N x classes)."""
        f = _unit(np.asarray(features, np.float64))
        return _softmax(self.scale * (f @ self.weights.T))

    def raw(self, features: np.ndarray) -> np.ndarray:
        """One feature vector -> the head's quantized output, [1, classes] uint8 at scale 1/256
        (as TFLite's quantized softmax writes it)."""
        p = self.probabilities(np.asarray(features).reshape(-1))
        return np.clip(np.round(p / OUT_SCALE), 0, 255).astype(np.uint8).reshape(1, -1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


SCALES = np.geomspace(4.0, 256.0, 49)


def loo_cosines(protos: Prototypes, features: np.ndarray, per_photo: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each taught photo's cosines to the class means (photos x classes), its own class's mean
    made without it (leave-one-out: what an unseen photo of the class would meet), and the photos'
    class indices."""
    means, counts = protos.means.astype(np.float64), protos.counts
    f = np.asarray(features, np.float64)
    idx = np.array([protos.labels.index(p) for p in per_photo])
    cos = _unit(f) @ _unit(means).T
    n = counts[idx].astype(np.float64)
    own = np.where(n[:, None] > 1, (means[idx] * n[:, None] - f) / np.maximum(n[:, None] - 1, 1), means[idx])
    cos[np.arange(len(f)), idx] = np.sum(_unit(f) * _unit(own), axis=1)
    return cos, idx


def fit_scale(protos: Prototypes, features: np.ndarray, per_photo: list[str]) -> float:
    """The softmax scale that best predicts each taught photo's class from prototypes made
    without it (``loo_cosines``), from ``SCALES``. Without that, the cosines of ReLU features
    (all between 0.8 and 1) would give near-uniform probabilities."""
    cos, idx = loo_cosines(protos, features, per_photo)
    rows = np.arange(len(idx))
    nll = [-np.mean(np.log(np.maximum(_softmax(s * cos)[rows, idx], 1e-12))) for s in SCALES]
    return float(round(SCALES[int(np.argmin(nll))], 3))


def loo_probabilities(protos: Prototypes, features: np.ndarray, per_photo: list[str], scale: float) -> np.ndarray:
    """The head's class probabilities of each taught photo with its own class mean made without
    it: the scores the taught bundle's drift reference records."""
    cos, _ = loo_cosines(protos, features, per_photo)
    return _softmax(float(scale) * cos)


def features_section(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The bundle's ``features`` section, or None for a bundle made without features."""
    s = meta.get(FEATURES_SECTION)
    return s if isinstance(s, dict) else None


def load_head(bundle_path: Any, meta: Mapping[str, Any]) -> Head | None:
    """The taught head a bundle's ``head`` section names, or None when it has none."""
    section = meta.get(HEAD_SECTION)
    if section is None:
        return None
    where = f"{bundle_path}/edgecls.json"
    if not isinstance(section, dict) or section.get("kind") != KIND or section.get("file") not in meta["files"]:
        raise BundleError(f"{where}: head must be {{\"kind\": \"{KIND}\", \"file\": a listed file, \"scale\": a "
                          "number}; reteach the bundle with this edgecls")
    scale = section.get("scale", DEFAULT_SCALE)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < 1e4:
        raise BundleError(f"{where}: head.scale must be a positive number, got {scale!r}; reteach the bundle")
    protos = Prototypes.from_file(os.path.join(os.fspath(bundle_path), section["file"]))
    return Head(protos, float(scale))
