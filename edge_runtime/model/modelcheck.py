"""Is this model an image classifier edgecls can run? Checked on the interpreter's tensor details
before ``allocate_tensors()``, so a model whose input would take gigabytes, or that is not a
classifier at all, gets one line saying what kind of model it looks like instead of an
out-of-memory kill, a crash or a result that means nothing.

What edgecls runs: one input of fixed shape ``[1, height, width, 3]`` (uint8, int8 or float32,
at most ``MAX_SIDE`` pixels a side) and one output of one score per class (``[1, N]`` or
``[N]``, N >= 2, uint8, int8 or float32), from a softmax or as logits.

Plain Python over the details dicts (``shape``, ``shape_signature``, ``dtype``) and, when the
package can list them, the ops; nothing here imports an interpreter package.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edge_runtime.errors import ModelError

MAX_SIDE = 4096  # the same bound as the bundle contract's height and width
MAX_INPUT_BYTES = MAX_SIDE * MAX_SIDE * 3 * 4
IMAGE_DTYPES = ("uint8", "int8", "float32")
SCORE_DTYPES = ("uint8", "int8", "float32")
RUNS = "edgecls runs image classifiers: one [1, height, width, 3] input, one score per class out"


def _shape(d: dict[str, Any]) -> list[int]:
    sig = d.get("shape_signature")
    return [int(v) for v in (sig if sig is not None and len(sig) else d["shape"])]


def _show(shape: Sequence[int]) -> str:
    return "[" + ", ".join("?" if v < 0 else str(v) for v in shape) + "]"


def describe_outputs(outputs: Sequence[dict[str, Any]]) -> str:
    """A guess at what a model with several outputs is."""
    n = len(outputs)
    if n == 4 or (n in (2, 3) and any(len(_shape(o)) == 3 and _shape(o)[-1] == 4 for o in outputs)):
        return "an object detector (boxes, classes, scores); edgecls classifies whole images"
    return "not a single-output classifier"


def check_input_size(path: str, inputs: Sequence[dict[str, Any]]) -> None:
    """Before ``allocate_tensors()``: refuse inputs larger than any image classifier's (a
    ``[1, 20000, 20000, 3]`` float input alone is 4.5 GiB)."""
    for d in inputs:
        shape = [max(v, 1) for v in _shape(d)]
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(d["dtype"]).itemsize
        if size > MAX_INPUT_BYTES:
            raise ModelError(f"{path}: input {_show(_shape(d))} {np.dtype(d['dtype']).name} takes "
                             f"{size / (1 << 20):,.0f} MiB, more than any image classifier's input (at most "
                             f"{MAX_SIDE}x{MAX_SIDE}x3 float32); {RUNS}")


def check_io(path: str, inputs: Sequence[dict[str, Any]], outputs: Sequence[dict[str, Any]],
             ops: Sequence[dict[str, Any]] | None = None) -> None:
    """Raise ModelError naming ``path``, what kind of model this looks like and what edgecls runs,
    unless the model is a classifier edgecls can run. ``inputs``/``outputs``: the interpreter's
    ``get_input_details()``/``get_output_details()``; ``ops``: its op details, when available."""
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{path}: a classifier has one input and one output; this model has {len(inputs)} inputs "
                         f"and {len(outputs)} outputs: {describe_outputs(outputs) if len(inputs) == 1 else RUNS}")
    inp, out = inputs[0], outputs[0]
    shape, dtype = _shape(inp), np.dtype(inp["dtype"]).name
    if dtype not in IMAGE_DTYPES:
        kind = ("a text or sequence model (token ids)" if dtype in ("int32", "int64")
                else "a model quantized for 16-bit activations" if dtype == "int16" else f"a {dtype}-input model")
        raise ModelError(f"{path}: takes {dtype} input {_show(shape)}, which looks like {kind}; {RUNS} "
                         f"({', '.join(IMAGE_DTYPES)})")
    if len(shape) != 4 or shape[3] != 3 or shape[0] not in (1, -1):
        kind = ("an audio or signal model" if len(shape) in (2, 3) else
                f"an image model with {shape[3]} channel(s)" if len(shape) == 4 else f"a rank-{len(shape)} input")
        raise ModelError(f"{path}: input shape {_show(shape)} is not [1, height, width, 3] ({kind}); {RUNS}")
    if shape[1] < 0 or shape[2] < 0:
        raise ModelError(f"{path}: input shape {_show(shape)} has a dynamic height or width (exported without "
                         "a fixed input size), which edgecls would run at whatever size the file holds; "
                         "re-export it with a fixed size, e.g. [1, 224, 224, 3]")
    if shape[1] > MAX_SIDE or shape[2] > MAX_SIDE or min(shape[1], shape[2]) < 1:
        mib = shape[1] * shape[2] * 3 * np.dtype(dtype).itemsize / (1 << 20)
        raise ModelError(f"{path}: input {shape[1]}x{shape[2]} ({mib:,.0f} MiB for the input tensor alone) is "
                         f"outside what an image classifier takes (1 to {MAX_SIDE} pixels a side); {RUNS}")
    oshape, odtype = _shape(out), np.dtype(out["dtype"]).name
    if len(oshape) > 1 and oshape[0] == -1:
        oshape[0] = 1  # the dynamic batch of a Keras export: batch 1 here
    if any(v < 0 for v in oshape):
        raise ModelError(f"{path}: output shape {_show(oshape)} is dynamic; {RUNS}")
    if odtype not in SCORE_DTYPES:
        kind = ("class indexes (an ARGMAX at the end) or token ids" if odtype in ("int32", "int64")
                else f"{odtype} values")
        raise ModelError(f"{path}: outputs {odtype} {_show(oshape)}, which looks like {kind}, not class scores; "
                         f"{RUNS} (export it without the final ARGMAX)")
    big = [v for v in oshape if v > 1]
    if len(big) > 1:
        raise ModelError(f"{path}: output shape {_show(oshape)} is a feature map or a per-pixel output "
                         "(a backbone without its classifier head, segmentation or detection), not one score "
                         f"per class; {RUNS}")
    if int(np.prod(oshape)) < 2:
        raise ModelError(f"{path}: outputs one number {_show(oshape)} (a regression or a single-score model), "
                         f"not one score per class; {RUNS} (for two classes: two outputs)")
    producer = _producer(ops or (), int(out.get("index", -1)))
    if producer == "L2_NORMALIZATION":
        raise ModelError(f"{path}: its output comes from L2_NORMALIZATION: an embedder (feature vectors for "
                         f"similarity search), not class scores; {RUNS}")


def _producer(ops: Sequence[dict[str, Any]], tensor: int) -> str | None:
    """The op that makes ``tensor``, looking through reshapes and (de)quantization."""
    made = {int(o): op for op in ops for o in op.get("outputs", ())}
    for _ in range(8):
        op = made.get(tensor)
        if op is None:
            return None
        if op["op_name"] in ("RESHAPE", "SQUEEZE", "QUANTIZE", "DEQUANTIZE"):
            tensor = int(op["inputs"][0])
            continue
        return str(op["op_name"])
    return None
