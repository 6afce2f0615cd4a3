"""edgecls device runtime: classify images and camera frames with a TFLite classifier.

Depends on numpy, Pillow and one interpreter package only; never on TensorFlow.

The public API: ``Classifier`` (``prepare`` -> ``infer`` -> ``rank``, or ``classify`` for all
three; ``classify_each`` for many, pipelined), the bundle (``load_bundle``, ``write_bundle``),
the contract types (``InputContract``, ``OutputContract``), golden photos (``golden.record``,
``golden.check``) and the errors.

Each name is imported when first used (PEP 562): ``import edge_runtime`` and the ``edgecls``
command's start-up load no numpy, Pillow or interpreter until something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edge_runtime._version import __version__

if TYPE_CHECKING:
    from edge_runtime.bundle import golden
    from edge_runtime.bundle.classifier import BACKENDS, Classifier, Result
    from edge_runtime.bundle.format import Bundle, load_bundle, write_bundle
    from edge_runtime.errors import (
                                     BackendUnavailable,
                                     BundleError,
                                     EdgeclsError,
                                     ImageError,
                                     LabelError,
                                     MissingExtra,
                                     ModelError,
    )
    from edge_runtime.model.contract import ContractError, InputContract, OutputContract, TensorQuant
    from edge_runtime.model.labels import read_labels
    from edge_runtime.model.postprocess import Class
    from edge_runtime.model.preprocess import RESIZE_METHODS, Normalization, load_image, resize

# Public name -> the module that defines it.
_MODULES = {"golden": "edge_runtime.bundle.golden"}
_WHERE = {
    **dict.fromkeys(("BACKENDS", "Classifier", "Result"), "edge_runtime.bundle.classifier"),
    **dict.fromkeys(("Bundle", "load_bundle", "write_bundle"), "edge_runtime.bundle.format"),
    **dict.fromkeys(("BackendUnavailable", "BundleError", "EdgeclsError", "ImageError", "LabelError", "MissingExtra",
                     "ModelError"), "edge_runtime.errors"),
    **dict.fromkeys(("ContractError", "InputContract", "OutputContract", "TensorQuant"), "edge_runtime.model.contract"),
    "read_labels": "edge_runtime.model.labels",
    "Class": "edge_runtime.model.postprocess",
    **dict.fromkeys(("RESIZE_METHODS", "Normalization", "load_image", "resize"), "edge_runtime.model.preprocess"),
}

__all__ = [
    "BACKENDS", "RESIZE_METHODS", "BackendUnavailable", "Bundle", "BundleError", "Class", "Classifier",
    "ContractError", "EdgeclsError", "ImageError", "InputContract", "LabelError", "MissingExtra", "ModelError",
    "Normalization", "OutputContract", "Result", "TensorQuant", "golden", "load_bundle", "load_image",
    "read_labels", "resize", "write_bundle", "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    else:
        raise AttributeError(f"module 'edge_runtime' has no attribute {name!r}")
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
