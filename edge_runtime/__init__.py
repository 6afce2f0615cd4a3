"""edgecls device runtime: classify images and camera frames with a TFLite classifier.

Depends on numpy, Pillow and one interpreter package only; never on TensorFlow.

The public API: ``Classifier`` (``prepare`` -> ``infer`` -> ``rank``, or ``classify`` for all
three), the bundle (``load_bundle``, ``write_bundle``), the contract types (``InputContract``,
``OutputContract``), golden photos (``golden.record``, ``golden.check``) and the errors.
"""

__version__ = "0.2.0"

from . import golden
from .bundle import Bundle, load_bundle, write_bundle
from .classifier import BACKENDS, Classifier, Result
from .contract import ContractError, InputContract, OutputContract, TensorQuant
from .errors import (BackendUnavailable, BundleError, EdgeclsError, ImageError, LabelError, MissingExtra,
                     ModelError)
from .labels import read_labels
from .postprocess import Class
from .preprocess import RESIZE_METHODS, Normalization, load_image, resize

__all__ = [
    "BACKENDS", "RESIZE_METHODS", "BackendUnavailable", "Bundle", "BundleError", "Class", "Classifier",
    "ContractError", "EdgeclsError", "ImageError", "InputContract", "LabelError", "MissingExtra", "ModelError",
    "Normalization", "OutputContract", "Result", "TensorQuant", "golden", "load_bundle", "load_image",
    "read_labels", "resize", "write_bundle", "__version__",
]
