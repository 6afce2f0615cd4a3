"""The whitening convert puts on the feature output (convert/embedding.py): what it computes,
and that it makes a cosine nearest-class mean right where the raw features mislead it."""

from __future__ import annotations

import numpy as np
import pytest

from convert.embedding import within_class_whitening


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _shrunk_within(x: np.ndarray, y: np.ndarray, a: float) -> np.ndarray:
    within = np.concatenate([x[y == c] - x[y == c].mean(0) for c in np.unique(y)])
    s = within.T @ within / len(within)
    return (1 - a) * s + a * np.trace(s) / len(s) * np.eye(len(s))


def test_it_whitens_the_shrunk_within_class_covariance_and_ignores_where_classes_sit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))  # correlated, unequal spreads
    y = np.repeat(np.arange(3), 100)
    t = within_class_whitening(x, y, shrinkage=0.3)
    assert t.shape == (6, 6) and t.dtype == np.float32
    np.testing.assert_allclose(t.T @ _shrunk_within(x, y, 0.3) @ t, np.eye(6), atol=1e-5)
    moved = x + np.array([[0.0] * 6, [50.0] * 6, [-9.0] * 6])[y]  # the classes far apart: the spread within is the same
    np.testing.assert_allclose(within_class_whitening(moved, y, 0.3), t, atol=1e-5)


def test_a_nuisance_that_misleads_the_raw_cosine_is_turned_down():
    """Two classes a small step apart along one axis; every photo also carries a large shared
    nuisance (light, person) along others. Ten photos a class: the raw cosine nearest mean is near
    chance, through the whitening fitted on *other* classes with the same nuisance it is right."""
    rng = np.random.default_rng(0)
    d = 16

    def photos(centre: np.ndarray, n: int) -> np.ndarray:
        nuisance = rng.normal(0, 3.0, (n, 2)) @ np.eye(2, d, k=3)  # axes 3 and 4
        return 5.0 + centre + nuisance + rng.normal(0, 0.3, (n, d))

    old = [np.eye(d)[i] * 2 for i in (1, 2)]
    x_old = np.concatenate([photos(c, 200) for c in old])
    y_old = np.repeat([0, 1], 200)
    t = within_class_whitening(x_old, y_old)
    new = [np.eye(d)[0] * 1.0, -np.eye(d)[0] * 1.0]
    shots = [photos(c, 10) for c in new]
    test = [photos(c, 300) for c in new]

    def accuracy(f) -> float:
        means = _unit(np.stack([f(s).mean(0) for s in shots]))
        return float(np.mean([np.mean(np.argmax(_unit(f(x)) @ means.T, 1) == i) for i, x in enumerate(test)]))

    raw, whitened = accuracy(lambda v: v), accuracy(lambda v: v @ t)
    assert raw < 0.75 and whitened > 0.95, (raw, whitened)


def test_classes_of_one_photo_add_nothing_and_bad_input_is_refused():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(41, 4))
    y = np.array([0] * 20 + [1] * 20 + [2])
    np.testing.assert_allclose(within_class_whitening(x, y), within_class_whitening(x[:40], y[:40]), atol=1e-6)
    with pytest.raises(ValueError, match="no class has two photos"):
        within_class_whitening(x[:3], np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"shrinkage must be in \(0, 1\]"):
        within_class_whitening(x, y, shrinkage=0.0)
    with pytest.raises(ValueError, match="do not vary within any class"):
        within_class_whitening(np.ones((6, 4)), np.array([0, 0, 0, 1, 1, 1]))
