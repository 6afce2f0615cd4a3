"""edgecls device runtime: classify images and camera frames with a TFLite classifier.

Depends on numpy, Pillow and one interpreter package only; never on TensorFlow.
"""

__version__ = "0.1.0"

from .bundle import Bundle, load_bundle, write_bundle
from .classifier import BACKENDS, Classifier, Result
from .errors import (BackendUnavailable, BundleError, EdgeclsError, ImageError, LabelError, MissingExtra,
                     ModelError)
from .labels import read_labels
from .postprocess import Class
from .preprocess import RESIZE_METHODS, Normalization, load_image, resize

__all__ = [
    "BACKENDS", "RESIZE_METHODS", "BackendUnavailable", "Bundle", "BundleError", "Class", "Classifier",
    "EdgeclsError", "ImageError", "LabelError", "MissingExtra", "ModelError", "Normalization", "Result",
    "load_bundle", "load_image", "read_labels", "resize", "write_bundle", "__version__",
]
