"""Import TensorFlow and Keras once, quietly, or say which extra to install."""

from __future__ import annotations

import os
import re
import sys

from edge_runtime.errors import MissingExtra
from edge_runtime.model.interpreter import captured_stderr

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# What TensorFlow's C++ side prints at start-up on every machine without a GPU; anything else
# it prints is passed on.
_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IWE]\d{4} .*\b(port|cudart_stub|"
                    r"cuda_platform|cpu_feature_guard|cuda_executor|gpu_device)\.cc|To enable the following "
                    r"instructions|\s*$)")

# Keras imports scikit-learn (for its scikit-learn wrappers) and matplotlib.pyplot (for its image
# gallery) when they are installed, as the train extra installs them: about 2 s of every process
# that trains or converts on a 2-core machine, for features edgecls does not use. Keras guards
# both imports with `except ImportError`; a None in sys.modules makes them raise it while Keras
# loads, and is removed again, so that the demo's dataset and train's report import them as usual.
_UNUSED_BY_KERAS = [m for m in ("sklearn", "matplotlib.pyplot") if m not in sys.modules]
with captured_stderr() as _lines:
    sys.modules.update(dict.fromkeys(_UNUSED_BY_KERAS))
    try:
        import keras
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # the CUDA probe logs here, inside the capture
    except ImportError as e:  # a Pi with only the runtime installed
        raise MissingExtra("training and conversion", "train", "tensorflow") from e
    finally:
        for _m in _UNUSED_BY_KERAS:
            if sys.modules.get(_m, 0) is None:
                del sys.modules[_m]
for _line in _lines:  # to descriptor 2: under train.quiet its filter sees them like any native line
    if not _NOISE.match(_line):
        sys.stderr.flush()
        os.write(2, (_line + "\n").encode("utf-8", "replace"))

__all__ = ["tf", "keras"]
