"""Run the device side on emulated Raspberry Pi OS arm64: the userland of
tools/arm64_userland.sh (built once, cached in .cache), the runtime installed from a wheel
built from this checkout, `edgecls` run through qemu-aarch64-static as a Pi 4 (Cortex-A72) or a
Pi 5 (Cortex-A76)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPT = HERE / "tools" / "arm64_userland.sh"
CPUS = {4: "cortex-a72", 5: "cortex-a76"}
INTERPRETERS = ("litert", "tflite")  # ai-edge-litert + numpy 2; tflite-runtime 2.14 + numpy<2


@dataclass
class Arm64:
    userland: Path  # root/, site-litert/, site-tflite/
    edgecls: Path  # the runtime installed from this checkout's wheel (--target)
    setup_seconds: float

    @property
    def root(self) -> Path:
        return self.userland / "root"

    def site(self, interpreter: str) -> Path:
        return self.userland / f"site-{interpreter}"

    def run(self, *args: str, pi: int = 4, interpreter: str = "litert", module: str = "edge_runtime.cli",
            timeout: float = 600, python_args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        """Run ``python3.11 -m edge_runtime.cli ARGS`` (or ``-c`` code with module="") on the emulated Pi."""
        for name in ("proc/cpuinfo", "proc/device-tree/model"):
            link = self.root / name
            link.unlink(missing_ok=True)
            link.symlink_to(f"{link.name}.pi{pi}")
        env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "PYTHONNOUSERSITE": "1",
               "PYTHONPATH": f"{self.edgecls}{os.pathsep}{self.site(interpreter)}"}
        cmd = ["qemu-aarch64-static", "-cpu", CPUS[pi], "-L", str(self.root), str(self.root / "usr/bin/python3.11"),
               *python_args]
        cmd += ["-m", module, *map(str, args)] if module else list(map(str, args))
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def build(cache: Path, work: Path) -> Arm64:
    """The cached userland (built if missing) plus this checkout's runtime wheel."""
    t = time.perf_counter()
    key = hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:12]
    userland = cache / f"arm64-{key}"
    from conftest import cache_lock

    with cache_lock(userland.name):
        _build_userland(userland)
    return _install_runtime(userland, work, t)


def _build_userland(userland: Path) -> None:
    if not (userland / ".done").exists():
        env = {**os.environ, "PIP": str(Path(sys.executable).with_name("pip"))}
        p = subprocess.run(["bash", str(SCRIPT), str(userland)], capture_output=True, text=True, env=env, timeout=1200)
        if p.returncode != 0:
            raise RuntimeError(f"building the arm64 userland failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")


def _install_runtime(userland: Path, work: Path, t: float) -> Arm64:
    wheels = work / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True, text=True)
    target = work / "site-edgecls"
    shutil.rmtree(target, ignore_errors=True)
    # --no-deps: numpy, pillow and the interpreter come from the interpreter's site dir.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    *map(str, wheels.glob("edgecls-*.whl"))], check=True, capture_output=True, text=True)
    return Arm64(userland, target, time.perf_counter() - t)


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
