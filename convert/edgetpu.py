"""Edge TPU: an offline preflight of a model's ops against Coral's documented requirements, and
the ``edgetpu_compiler`` run with its log parsed.

The requirements are those of https://coral.ai/docs/edgetpu/models-intro/ ("Model
requirements" and "Supported operations"): tensors quantized to 8 bits, sizes constant at
compile time, at most three dimensions larger than 1 (the innermost ones), and only the ops
of the supported-operations table. The compiler maps ops in order until the first one it
cannot run; that op and every op after it run on the CPU. The preflight itself is pure and lives in
``edge_runtime.model.edgetpu_ops`` (``edgecls inspect`` runs it on a device); it is re-exported here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edge_runtime.errors import EdgeclsError
from edge_runtime.model.edgetpu_ops import EIGHT_BIT, SUPPORTED_OPS, OpCheck, Preflight, check_op, preflight  # noqa: F401  (re-exported)

COMPILER = "edgetpu_compiler"
INSTALL_HINT = ("edgetpu_compiler is not on PATH; it comes only from Coral's apt repository, for x86-64 Linux "
                "(https://coral.ai/docs/edgetpu/compiler/: add packages.cloud.google.com/apt coral-edgetpu-stable, "
                "then apt-get install edgetpu-compiler)")


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
