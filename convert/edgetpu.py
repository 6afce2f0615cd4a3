"""Edge TPU: an offline preflight of a model's ops against Coral's documented requirements, and
the ``edgetpu_compiler`` run with its log parsed.

The requirements are those of https://coral.ai/docs/edgetpu/models-intro/ ("Model
requirements" and "Supported operations"): tensors quantized to 8 bits, sizes constant at
compile time, at most three dimensions larger than 1 (the innermost ones), and only the ops
of the supported-operations table. The compiler maps ops in order until the first one it
cannot run; that op and every op after it run on the CPU.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from edge_runtime.errors import EdgeclsError
from edge_runtime.interpreter import OpInfo, TensorInfo, read_ops

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
COMPILER = "edgetpu_compiler"
INSTALL_HINT = ("edgetpu_compiler is not on PATH; it comes only from Coral's apt repository, for x86-64 Linux "
                "(https://coral.ai/docs/edgetpu/compiler/: add packages.cloud.google.com/apt coral-edgetpu-stable, "
                "then apt-get install edgetpu-compiler)")


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


# --- the compiler ---------------------------------------------------------------------------


class CompileError(EdgeclsError):
    """edgetpu_compiler failed or timed out; the message quotes its reason."""


@dataclass
class CompileLog:
    """What ``edgetpu_compiler -s`` reports."""

    version: str | None = None
    ok: bool = False
    error: str | None = None
    ops_total: int | None = None
    ops_tpu: int | None = None
    ops_cpu: int | None = None
    subgraphs: int | None = None
    on_chip_memory: str | None = None
    off_chip_memory: str | None = None
    operators: list[dict] = field(default_factory=list)  # {"op", "count", "status"}

    def unmapped(self) -> list[dict]:
        return [r for r in self.operators if r["status"] != "Mapped to Edge TPU"]

    def to_dict(self) -> dict:
        return {"compiler_version": self.version, "ok": self.ok, "error": self.error, "ops_total": self.ops_total,
                "ops_on_edgetpu": self.ops_tpu, "ops_on_cpu": self.ops_cpu, "subgraphs": self.subgraphs,
                "on_chip_memory": self.on_chip_memory, "off_chip_memory": self.off_chip_memory,
                "operators": self.operators}


_FIELDS = {
    "version": re.compile(r"Edge TPU Compiler version (\S+)"),
    "ops_total": re.compile(r"Total number of operations: (\d+)"),
    "ops_tpu": re.compile(r"Number of operations that will run on Edge TPU: (\d+)"),
    "ops_cpu": re.compile(r"Number of operations that will run on CPU: (\d+)"),
    "subgraphs": re.compile(r"Number of Edge TPU subgraphs: (\d+)"),
    "on_chip_memory": re.compile(r"On-chip memory used for caching model parameters: (\S+)"),
    "off_chip_memory": re.compile(r"Off-chip memory used for streaming uncached model parameters: (\S+)"),
}
_ROW = re.compile(r"^([A-Z][A-Z0-9_]+)\s+(\d+)\s+(\S.*?)\s*$")
_INTS = ("ops_total", "ops_tpu", "ops_cpu", "subgraphs")


def parse_log(text: str) -> CompileLog:
    """Parse the compiler's output (stdout with ``-s``, or its ``.log`` file)."""
    log = CompileLog()
    in_table = False
    errors: list[str] = []
    for line in text.splitlines():
        line = line.strip().lstrip(">").strip()
        for name, rx in _FIELDS.items():
            m = rx.search(line)
            if m and getattr(log, name) is None:
                setattr(log, name, int(m.group(1)) if name in _INTS else m.group(1))
        if line.startswith("Model compiled successfully"):
            log.ok = True
        if line.startswith(("Compilation failed", "ERROR:", "Internal compiler error")):
            errors.append(line)
        if re.match(r"^Operator\s+Count\s+Status", line):
            in_table = True
            continue
        if in_table:
            m = _ROW.match(line)
            if m:
                log.operators.append({"op": m.group(1), "count": int(m.group(2)), "status": m.group(3)})
    if errors:  # the line with the reason ("Compilation failed: ...") says the most
        log.error = next((e for e in errors if e.startswith("Compilation failed:")), errors[0])
        log.ok = log.ok and not any(e.startswith("Compilation failed") for e in errors)
    if log.ops_total is not None and log.ops_tpu is None and log.operators and not log.unmapped():
        log.ops_tpu, log.ops_cpu = log.ops_total, 0  # a fully mapped model prints no per-device counts
    return log


def compiler_path() -> str | None:
    return shutil.which(COMPILER)


def compile_model(model: Path, out_dir: Path, timeout_s: int = 180) -> tuple[Path, CompileLog]:
    """Run ``edgetpu_compiler -s`` on ``model`` into ``out_dir``; returns the compiled model and
    the parsed log. Raises CompileError with the compiler's own words on failure."""
    exe = compiler_path()
    if exe is None:
        raise FileNotFoundError(INSTALL_HINT)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        p = subprocess.run([exe, "--show_operations", "--timeout_sec", str(timeout_s), "--out_dir", str(out_dir),
                            str(model)], capture_output=True, text=True, timeout=timeout_s + 30)
    except subprocess.TimeoutExpired:
        raise CompileError(f"{COMPILER} did not finish within {timeout_s + 30} s; the CPU model is fine, retry "
                           "without --edgetpu or with a smaller model") from None
    log = parse_log(p.stdout + "\n" + p.stderr)
    compiled = out_dir / (model.stem + "_edgetpu.tflite")
    if p.returncode != 0 or not log.ok or not compiled.exists():
        raise CompileError(f"{COMPILER} failed on the int8 model: {log.error or (p.stderr or p.stdout).strip()[-300:]}; "
                           "no bundle written (convert without --edgetpu for a CPU bundle)")
    return compiled, log
