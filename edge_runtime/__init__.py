"""edgecls device runtime: classify images and camera frames with a TFLite classifier.

Depends on numpy, Pillow and one interpreter package only; never on TensorFlow.

The public API: ``Classifier`` (``prepare`` -> ``infer`` -> ``rank``, or ``classify`` for all
three), the bundle (``load_bundle``, ``write_bundle``), the contract types (``InputContract``,
``OutputContract``), golden photos (``golden.record``, ``golden.check``) and the errors.
"""

from edge_runtime._version import __version__
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

__all__ = [
    "BACKENDS", "RESIZE_METHODS", "BackendUnavailable", "Bundle", "BundleError", "Class", "Classifier",
    "ContractError", "EdgeclsError", "ImageError", "InputContract", "LabelError", "MissingExtra", "ModelError",
    "Normalization", "OutputContract", "Result", "TensorQuant", "golden", "load_bundle", "load_image",
    "read_labels", "resize", "write_bundle", "__version__",
]
