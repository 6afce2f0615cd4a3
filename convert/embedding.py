"""The embedding a bundle exports for ``edgecls teach``: the pooled features, whitened against
the variation inside the training classes.

Photos of one class differ in ways that say nothing about any class: the person, the light,
the background, the camera. A classifier trained on a few classes needs its features only to
separate those classes; along the directions where photos of one class vary most, a feature
vector is mostly that nuisance, and a cosine nearest-class-mean head (edge_runtime/bundle/head.py)
over new classes taught from ten photos is misled by it. Whitening the features with the
training photos' within-class covariance (the shared covariance of linear discriminant analysis)
turns those directions down and the quiet ones up, so the cosine between two photos measures
what varies between classes. Measured on the sign-language digits (benchmarks/results/teach.md):
+3 to +5 points on classes taught from 10 photos, the old classes unchanged or better.

The map is fitted on the float model's features of the training photos and put inside the
graph, as a dense layer without bias on the feature output (convert/quantize.py
``with_features``): the device embeds with one invoke as before, and nothing of the runtime
changes. The model's own scores do not pass through it, so they are bit-identical with or
without it.

``T = V diag(lambda)^-1/2`` with ``S = V diag(lambda) V^T`` the within-class covariance shrunk
towards a multiple of the identity, ``S' = (1 - a) S + a tr(S)/D I``: ``T^T S' T = I``. The
shrinkage ``a`` keeps directions the training photos barely vary along (the noise of a few
hundred photos in a few hundred dimensions) from being blown up. ``T`` is kept in the
eigenbasis, not rotated back (``V diag^-1/2 V^T``): cosines are the same either way, and its
entries then have one scale per column, which a per-tensor int8 weight keeps.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

SHRINKAGE = 0.5  # the ``a`` above; sign-language digits: 0.4 to 0.7 all within a point
CHUNK = 256  # photos converted to float and embedded at a time


def within_class_whitening(features: np.ndarray, labels: np.ndarray, shrinkage: float = SHRINKAGE) -> np.ndarray:
    """The D x D map ``T`` above for ``features`` (N x D) of classes ``labels`` (N): with ``S'``
    the shrunk within-class covariance, ``T^T S' T = I``. Classes of one photo add nothing to
    ``S`` (no spread to measure). ValueError when no class has two photos or ``shrinkage`` is
    not in (0, 1]."""
    if not 0 < shrinkage <= 1:
        raise ValueError(f"shrinkage must be in (0, 1], got {shrinkage}")
    x = np.asarray(features, np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be N x D with one label each, got {x.shape} and {y.shape}")
    centred = [x[y == c] - x[y == c].mean(axis=0) for c in np.unique(y) if np.sum(y == c) > 1]
    if not centred:
        raise ValueError("no class has two photos: the within-class spread cannot be measured")
    within = np.concatenate(centred)
    s = within.T @ within / len(within)
    d = s.shape[0]
    level = np.trace(s) / d
    if not level > 0:
        raise ValueError("the features do not vary within any class (all photos of a class identical?)")
    s = (1 - shrinkage) * s + shrinkage * level * np.eye(d)
    eigenvalues, v = np.linalg.eigh(s)
    return (v / np.sqrt(eigenvalues)).astype(np.float32)


def fit(model: Any, pixels: np.ndarray, labels: np.ndarray, progress: Callable[[str], None]) -> np.ndarray | None:
    """``within_class_whitening`` of a Keras classifier's feature tensor (convert/quantize.py
    ``feature_tensor``) over the training photos ``pixels`` (N x H x W x 3 uint8, as convert
    decoded them) of classes ``labels``, ``CHUNK`` photos at a time in float; None when the model
    has no feature tensor or no class has two photos."""
    from train._tf import keras

    from .quantize import feature_tensor

    f = feature_tensor(model)
    labels = np.asarray(labels)
    if f is None or not any(np.sum(labels == c) > 1 for c in np.unique(labels)):
        return None
    embed = keras.Model(model.inputs, f)
    progress(f"fitting the feature whitening on {len(pixels)} training photos ({int(f.shape[-1])} features)")
    parts = [embed.predict(pixels[i:i + CHUNK].astype(np.float32), batch_size=32, verbose=0)
             for i in range(0, len(pixels), CHUNK)]
    return within_class_whitening(np.concatenate(parts), labels)
