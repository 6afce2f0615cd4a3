"""The Edge TPU's op table: which ops of an int8 model Coral's compiler is predicted to map
to the Edge TPU, after https://coral.ai/docs/edgetpu/models-intro/ ("Model requirements" and
"Supported operations"): tensors quantized to 8 bits, sizes constant at compile time, at most
three dimensions larger than 1 (the innermost ones), and only the ops of the
supported-operations table. The compiler maps ops in order until the first one it cannot run;
that op and every op after it run on the CPU.

Pure Python over ``interpreter.read_ops``: ``edgecls inspect`` runs it on a device, ``convert``
(``convert/edgetpu.py``, which also runs the compiler) on the workstation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from edge_runtime.model.interpreter import OpInfo, TensorInfo, read_ops

# Coral's supported-operations table, as TFLite builtin names.
SUPPORTED_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS", "FULLY_CONNECTED",
    "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM", "MAX_POOL_2D",
    "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6",
    "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX",
    "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH",
    "TRANSPOSE_CONV",
})
EIGHT_BIT = {"int8", "uint8"}


@dataclass(frozen=True)
class OpCheck:
    index: int
    op: str
    problem: str | None  # why the Edge TPU cannot run this op itself, or None
    on_tpu: bool  # the prediction, after the first unsupported op's cut-off


@dataclass
class Preflight:
    model: str
    ops: list[OpCheck]

    @property
    def mapped(self) -> int:
        return sum(o.on_tpu for o in self.ops)

    @property
    def fully_mapped(self) -> bool:
        return bool(self.ops) and self.mapped == len(self.ops)

    @property
    def first_cpu_op(self) -> OpCheck | None:
        return next((o for o in self.ops if not o.on_tpu), None)

    def problems(self) -> list[OpCheck]:
        return [o for o in self.ops if o.problem]

    def to_dict(self) -> dict:
        first = self.first_cpu_op
        return {"ops": len(self.ops), "mapped": self.mapped, "fully_mapped": self.fully_mapped,
                "first_cpu_op": None if first is None else {"index": first.index, "op": first.op,
                                                             "reason": first.problem},
                "problems": [{"index": o.index, "op": o.op, "reason": o.problem} for o in self.problems()]}

    def table(self) -> str:
        """Ops as the compiler's log groups them: name, count, where it is predicted to run, why."""
        first = self.first_cpu_op
        rows: dict[tuple[str, str], int] = {}
        for o in self.ops:
            if o.on_tpu:
                status = "Edge TPU"
            elif o.problem:
                status = f"CPU: {o.problem.split(':')[0]}"
            else:
                status = f"CPU: after op {first.index} ({first.op}), the first the Edge TPU cannot run"
            rows[(o.op, status)] = rows.get((o.op, status), 0) + 1
        lines = [f"{'op':<24} {'count':>5}  predicted"]
        lines += [f"{op:<24} {n:>5}  {status}" for (op, status), n in rows.items()]
        if first is not None:
            lines.append(f"first op the Edge TPU cannot run: op {first.index} ({first.op}): {first.problem}")
        return "\n".join(lines)


def _tensor_problem(t: TensorInfo) -> str | None:
    if any(d < 0 for d in t.shape_signature):
        return f"dynamic shape: {t.name} is {list(t.shape_signature)}; sizes must be constant at compile time"
    big = [i for i, d in enumerate(t.shape) if d > 1]
    if not t.constant and big and big[0] < len(t.shape) - 3:  # weights (filters) are 4-D by nature
        return f"more than 3 dimensions: {t.name} is {list(t.shape)}; only the 3 innermost may be larger than 1"
    return None


def check_op(op: OpInfo, first: bool, last: bool) -> str | None:
    """Why the Edge TPU cannot run ``op`` (None if it can), after Coral's requirements."""
    if op.name not in SUPPORTED_OPS:
        return f"unsupported op: {op.name} is not in the Edge TPU's supported-operations table"
    tensors = op.inputs + op.outputs
    for t in tensors:
        problem = _tensor_problem(t)
        if problem:
            return problem
    activations = [t for t in tensors if not t.constant]
    bad = sorted({t.dtype for t in activations if t.dtype not in EIGHT_BIT})
    if op.name == "QUANTIZE" and (first or last):
        bad = [d for d in bad if d != "float32"]  # float I/O converted at the edge runs on the CPU anyway
    if bad:
        return f"not 8-bit: works on {', '.join(bad)} tensors; the Edge TPU needs 8-bit quantized ones"
    weights = [t for t in op.inputs if t.constant and t.dtype not in ("int8", "uint8", "int32", "int64")]
    if weights:
        return f"not 8-bit: {weights[0].dtype} weights; the Edge TPU needs 8-bit quantized ones"
    return None


def preflight(model: str | Path, ops: Sequence[OpInfo] | None = None) -> Preflight:
    """Predict which ops of an int8 ``.tflite`` the compiler maps to the Edge TPU."""
    ops = list(ops if ops is not None else read_ops(str(model)))
    checks, cut = [], False
    for i, op in enumerate(ops):
        problem = check_op(op, i == 0, i == len(ops) - 1)
        cut = cut or problem is not None
        checks.append(OpCheck(op.index, op.name, problem, not cut))
    return Preflight(str(model), checks)
