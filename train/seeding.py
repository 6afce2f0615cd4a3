"""Reproducible runs: one seed for data order, augmentation and weight initialisation, and
TensorFlow's deterministic kernels where they cost nothing measurable (on the CPU).

``keras.utils.set_random_seed`` seeds Python's ``random``, NumPy and TensorFlow's global
generator, so the initial weights of a model built afterwards, dropout and the random
augmentation layers (each also given ``seed + k`` in fit.augmenter) follow the seed; the
shuffle of tf.data gets the seed explicitly (fit.dataset). ``enable_op_determinism`` makes
TensorFlow pick deterministic kernels and run tf.data's parallel maps in a fixed order; on a
GPU some kernels lose speed or have no deterministic version, so it is left off there and the
log says so. The same seed then gives the same metrics on the same machine (same TensorFlow,
same CPU features): float sums in another order on other hardware may still differ in the
last bits.
"""

from __future__ import annotations

from ._tf import keras, tf


def seed_everything(seed: int) -> str:
    """Seed every generator training draws from; returns one line for the log."""
    keras.utils.set_random_seed(seed)
    if tf.config.list_physical_devices("GPU"):
        return f"seed {seed} (data order, augmentation, weight init); GPU kernels left non-deterministic for speed"
    tf.config.experimental.enable_op_determinism()
    return f"seed {seed} (data order, augmentation, weight init, deterministic TensorFlow ops)"
