"""Keras model -> TFLite bytes: the float model, and the full-integer model calibrated on raw
pixels that went through the runtime's own decode and resize."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from typing import Any, Iterator, Literal, get_args

import numpy as np

from edge_runtime.errors import EdgeclsError
from edge_runtime.model.interpreter import OpInfo, captured_stderr
from train._tf import keras, tf


class ConversionFailed(EdgeclsError):
    """The TFLite converter refused the model; the message carries its reason."""


IoType = Literal["uint8", "int8", "float32"]
IO_TYPES: tuple[str, ...] = get_args(IoType)
_TF_TYPES = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32}


def feature_tensor(model: Any) -> Any | None:
    """The embedding a classifier's last layer reads: the output of the layer named ``pool``
    (train/model.py's global average pooling), else the input of the last Dense layer when that
    is a flat vector; None when the model has neither."""
    try:
        return model.get_layer("pool").output
    except ValueError:
        pass
    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    if dense and dense[-1].output is model.outputs[0]:
        x = dense[-1].input
        if len(x.shape) == 2:
            return x
    return None


def with_features(model: Any, transform: np.ndarray | None = None) -> Any | None:
    """``model`` with two outputs named as the runtime looks for them (``interpreter.split_outputs``):
    ``scores`` (the model's own output) and ``features`` (``feature_tensor``, mapped by
    ``transform`` (D x K) when given: a dense layer without bias named ``embedding``, which the
    scores do not pass through; convert/embedding.py); None when the model has no feature tensor."""
    f = feature_tensor(model)
    if f is None:
        return None
    if transform is not None:
        if transform.ndim != 2 or transform.shape[0] != f.shape[-1]:
            raise ValueError(f"the feature transform is {transform.shape}, the features have {f.shape[-1]} dimensions")
        layer = keras.layers.Dense(transform.shape[1], use_bias=False, name="embedding")
        f = layer(f)
        layer.set_weights([np.asarray(transform, np.float32)])
    return keras.Model(model.inputs, {"scores": model.outputs[0], "features": f}, name=model.name)


def _converter(model: Any) -> tuple[Any, list[str]]:
    """A converter for ``model`` with a static [1, H, W, 3] input (batch size 1), from one traced
    function, frozen (TensorFlow's converter would otherwise export a SavedModel of it first:
    about 8 of its 9.5 seconds on a 2-core machine, twice per convert; the int8 model comes out
    bit-identical); and the names of its outputs in the converted model's order, the scores first
    (``with_features``'s ``scores`` and ``features``; MediaPipe reads the first output as the
    classification head), which ``_signed`` writes back as a signature."""
    _, h, w, c = model.input_shape
    spec = tf.TensorSpec([1, h, w, c], tf.float32, name=INPUT_NAME)
    probe = model.output
    names = sorted(probe, key=lambda k: k != "scores") if isinstance(probe, dict) else ["output_0"]

    def serve(image: Any) -> Any:
        out = model(image, training=False)
        return tuple(out[k] for k in names) if isinstance(out, dict) else out

    fn = tf.function(serve).get_concrete_function(spec)
    absl = logging.getLogger("absl")  # "consider providing the trackable_obj": that path is the SavedModel one
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        return tf.lite.TFLiteConverter.from_concrete_functions([fn]), names
    finally:
        absl.setLevel(level)


INPUT_NAME = "image"


def _signed(tflite: bytes, outputs: list[str]) -> bytes:
    """``tflite`` with the ``serving_default`` signature a SavedModel conversion would have given
    it: the input named ``image``, the outputs by name (``scores``, ``features``), which the
    runtime reads (edge_runtime/model/interpreter.py ``signature_outputs``)."""
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils

    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite))
    g = m.subgraphs[0]
    if len(g.inputs) != 1 or len(g.outputs) != len(outputs):
        raise ConversionFailed(f"TFLite conversion gave {len(g.inputs)} input(s) and {len(g.outputs)} output(s); "
                               f"expected 1 and {len(outputs)}")

    def tensor(name: str, index: int) -> Any:
        t = fb.TensorMapT()
        t.name, t.tensorIndex = name, int(index)
        return t

    sig = fb.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = "serving_default", 0
    sig.inputs = [tensor(INPUT_NAME, g.inputs[0])]
    sig.outputs = [tensor(n, i) for n, i in zip(outputs, g.outputs)]
    m.signatureDefs = [sig]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The converter prints pages of notes (on both file descriptors) and Python warnings; keep
    them, and show their tail only if the conversion fails."""
    sys.stdout.flush()
    saved = os.dup(1)
    with captured_stderr() as lines, tempfile.TemporaryFile() as out, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        os.dup2(out.fileno(), 1)
        try:
            yield
        except Exception as e:
            sys.stdout.flush()
            os.dup2(saved, 1)
            out.seek(0)
            notes = out.read().decode("utf-8", "replace").splitlines() + lines
            detail = " | ".join(l.strip() for l in notes if "rror" in l)[-600:]
            raise ConversionFailed(f"TFLite conversion failed: {str(e).strip()[:400]}"
                                   + (f" ({detail})" if detail else "")) from e
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def to_float(model: Any) -> bytes:
    with _quiet():
        conv, names = _converter(model)
        return _signed(conv.convert(), names)


def to_int8(model: Any, calibration: np.ndarray, io: str = "uint8", per_channel_dense: bool = False) -> bytes:
    """Full-integer quantization: int8 kernels only (the conversion fails rather than leave a
    float op in the graph), ``io`` as the input and output type, calibrated on ``calibration``
    (N x H x W x 3 uint8 raw pixels). Dense layers get one scale per tensor unless
    ``per_channel_dense``: tflite-runtime 2.14 on arm64 crashes on per-channel dense layers."""
    if io not in IO_TYPES:
        raise ValueError(f"unknown I/O type {io!r}; valid: {', '.join(IO_TYPES)}")
    if len(calibration) == 0:
        raise ValueError("no calibration images")

    def representative() -> Iterator[list[np.ndarray]]:
        for img in calibration:
            yield [np.asarray(img, np.float32)[None]]

    with _quiet():
        conv, names = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = _TF_TYPES[io]
    conv.inference_output_type = _TF_TYPES[io]
    if not per_channel_dense:
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    with _quiet():
        return _signed(conv.convert(), names)


def float_ops(ops: list[OpInfo]) -> list[str]:
    """Ops inside the graph that compute in float. The float32 I/O conversion is not counted: a
    QUANTIZE of a graph input (a tensor no op makes and no weight) and a DEQUANTIZE into a graph
    output (a tensor no op reads; with the feature output there are two of them). Anything else
    with a float tensor is."""
    made = {t.name for op in ops for t in op.outputs}
    read = {t.name for op in ops for t in op.inputs}
    found = []
    for op in ops:
        if op.name == "QUANTIZE" and all(t.name not in made and not t.constant for t in op.inputs):
            continue
        if op.name == "DEQUANTIZE" and all(t.name not in read for t in op.outputs):
            continue
        floats = [t for t in op.inputs + op.outputs if t.dtype in ("float32", "float16")]
        if floats:
            found.append(f"{op.name} (op {op.index}) on {floats[0].dtype} {floats[0].name}")
    return found
