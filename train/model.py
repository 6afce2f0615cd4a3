"""MobileNet classifiers from ``keras.applications`` that take raw RGB pixels 0..255.

The normalization each backbone expects is a layer inside the graph (the preprocessing
contract of DESIGN.md), so calibration, evaluation and the device all feed raw pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ._tf import keras

Arch = Literal["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"]
ARCHS: tuple[str, ...] = get_args(Arch)
BN_MOMENTUM = 0.9  # Keras's 0.999 leaves the moving statistics unconverged on small datasets


@dataclass(frozen=True)
class Built:
    model: Any  # image -> class probabilities
    features: Any  # image -> pooled backbone features (the frozen part of phase 1)
    backbone_layers: list  # the backbone's layers, input side first
    feature_dim: int


def _backbone(arch: str, x: Any, size: int, alpha: float, weights: str | None) -> Any:
    common = dict(input_tensor=x, include_top=False, weights=weights, input_shape=(size, size, 3))
    if arch == "mobilenet_v1":
        return keras.applications.MobileNet(alpha=alpha, **common)
    if arch == "mobilenet_v2":
        return keras.applications.MobileNetV2(alpha=alpha, **common)
    if arch == "mobilenet_v3_small":
        return keras.applications.MobileNetV3Small(alpha=alpha, include_preprocessing=False, **common)
    return keras.applications.MobileNetV3Large(alpha=alpha, include_preprocessing=False, **common)


def build(arch: str, num_classes: int, size: int, alpha: float = 1.0, weights: str | None = None,
          dropout: float = 0.2) -> Built:
    """A classifier: raw pixels -> Rescaling to [-1, 1] -> backbone -> average pooling ->
    dropout -> dense softmax. ``weights`` is ``"imagenet"`` (Keras downloads them), a local
    weights file of the backbone without its top, or None (random init)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHS)}")
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise FileNotFoundError(f"{weights}: no such weights file; pass a Keras .h5/.weights.h5 file of the "
                                "backbone without its top, 'imagenet' to download, or 'none'")
    inputs = keras.Input((size, size, 3), name="image")
    # Every MobileNet in keras.applications expects [-1, 1] (V3's own preprocessing layer does
    # the same); one Rescaling layer for all keeps the graph uniform.
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize")(inputs)
    backbone = _backbone(arch, x, size, alpha, weights)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(backbone.output)
    y = keras.layers.Dropout(dropout, name="dropout")(pooled)
    y = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(y)
    model = keras.Model(inputs, y, name=f"{arch}_{alpha:g}_{size}")
    features = keras.Model(inputs, pooled, name="features")
    layers = [l for l in backbone.layers if not isinstance(l, (keras.layers.InputLayer, keras.layers.Rescaling))]
    return Built(model, features, layers, int(pooled.shape[-1]))


def head(feature_dim: int, num_classes: int, dropout: float = 0.2) -> Any:
    """The classifier head alone, trained on cached features in phase 1; its layer names match
    ``build``'s so its weights copy over."""
    f = keras.Input((feature_dim,), name="features")
    y = keras.layers.Dropout(dropout, name="dropout")(f)
    y = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(y)
    return keras.Model(f, y, name="head")


def set_trainable(built: Built, fine_tune_layers: int) -> int:
    """Freeze the backbone except its top ``fine_tune_layers`` layers (all when negative).
    BatchNormalization stays frozen (inference mode) when pretrained weights are tuned, the
    usual practice: a small batch's statistics would undo the ImageNet ones. Returns how many
    layers with weights are trainable."""
    layers = built.backbone_layers
    n = len(layers) if fine_tune_layers < 0 else min(fine_tune_layers, len(layers))
    for i, layer in enumerate(layers):
        layer.trainable = i >= len(layers) - n
    return sum(1 for l in layers if l.trainable and l.weights)


def freeze_batchnorm(built: Built) -> None:
    for layer in built.backbone_layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
