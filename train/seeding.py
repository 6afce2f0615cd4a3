"""Reproducible runs: one seed for data order, augmentation and weight initialisation, and
TensorFlow's deterministic kernels when the user asks for a repeatable run (``--seed``).

``keras.utils.set_random_seed`` seeds Python's ``random``, NumPy and TensorFlow's global
generator, so the initial weights of a model built afterwards, dropout and the random
augmentation layers (each also given ``seed + k`` in fit.augmenter) follow the seed; the
shuffle of tf.data gets the seed explicitly (fit.dataset). Every run is seeded (0 unless
``--seed`` says otherwise).

``enable_op_determinism`` makes TensorFlow pick deterministic kernels and run tf.data's
parallel maps in a fixed order. It is not free: on the 2-core x86 VM an epoch of the demo took
4.4-4.5 CPU-seconds with it and 4.1-4.2 without (about 6%; issue 31), so it is turned on only
when the user passes ``--seed`` (``deterministic``). On a GPU some kernels lose much more speed or
have no deterministic version, so it is left off there and the log says so. With it, the same
seed gives the same metrics on the same machine (same TensorFlow, same CPU features): float
sums in another order on other hardware may still differ in the last bits.
"""

from __future__ import annotations

from ._tf import keras, tf


def seed_everything(seed: int, deterministic: bool = False) -> str:
    """Seed every generator training draws from and, if ``deterministic``, make TensorFlow's
    kernels deterministic; returns one line for the log."""
    keras.utils.set_random_seed(seed)
    what = f"seed {seed} (data order, augmentation, weight init"
    if not deterministic:
        return f"{what}; pass --seed for deterministic TensorFlow ops)"
    if tf.config.list_physical_devices("GPU"):
        return f"{what}); GPU kernels left non-deterministic for speed"
    tf.config.experimental.enable_op_determinism()
    return f"{what}, deterministic TensorFlow ops)"
