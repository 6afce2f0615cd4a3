"""Run the device side on emulated Raspberry Pi OS arm64: the userland of
tools/arm64_userland.sh for a Debian release (bookworm: Python 3.11; trixie: Python 3.13; built
once, cached in .cache), the runtime installed from a wheel built from this checkout, `edgecls`
run through qemu-aarch64-static as a Pi 4 (Cortex-A72), a Pi 5 (Cortex-A76) or a Pi Zero 2 W
(Cortex-A53). bookworm-armhf is 32-bit Raspberry Pi OS under qemu-arm-static: tflite-runtime
2.14's armv7l wheel over Debian's armhf numpy and Pillow (there is no 32-bit ai-edge-litert)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPT = HERE / "tools" / "arm64_userland.sh"
CPUS = {"pi4": "cortex-a72", "pi5": "cortex-a76", "zero2": "cortex-a53"}
# qemu-arm has no AArch32 model of those cores; Cortex-A7 runs the ARMv7 code an armhf userland has.
CPUS_ARMHF = {"pi4": "cortex-a7", "pi5": "cortex-a7", "zero2": "cortex-a7"}
# Debian 12 / 13: Raspberry Pi OS until / since late 2025; and 32-bit Raspberry Pi OS (Bookworm)
PYTHONS = {"bookworm": "3.11", "trixie": "3.13", "bookworm-armhf": "3.11"}
RELEASES = ("bookworm", "trixie")  # the arm64 ones
ARMHF = "bookworm-armhf"
# ai-edge-litert + numpy 2 (arm64); tflite-runtime 2.14 + numpy<2 (bookworm: it has no cp313 wheel;
# on armhf it is the only interpreter, over Debian's numpy 1.24)
INTERPRETERS = ("litert", "tflite")
RELEASE_INTERPRETERS = {"bookworm": ("litert", "tflite"), "trixie": ("litert",), ARMHF: ("tflite",)}


def board(pi: int | str) -> str:
    return f"pi{pi}" if isinstance(pi, int) else pi


def targets(boards=("pi4", "pi5"), interpreters=INTERPRETERS, releases=RELEASES) -> list:
    """pytest params (release, board, interpreter) with ids like ``trixie-pi5-litert``."""
    return [pytest.param(r, b, i, id=f"{r}-{b}-{i}") for r in releases for b in boards
            for i in interpreters if i in RELEASE_INTERPRETERS[r]]


@dataclass
class Arm64:
    userland: Path  # root/, site-litert/, site-tflite/ (bookworm), wheels-pip/
    edgecls: Path  # the runtime installed from this checkout's wheel (--target)
    setup_seconds: float
    release: str = "bookworm"

    @property
    def root(self) -> Path:
        return self.userland / "root"

    @property
    def python(self) -> Path:
        return self.root / "usr/bin" / f"python{PYTHONS[self.release]}"

    def site(self, interpreter: str) -> Path:
        return self.userland / f"site-{interpreter}"

    def qemu(self, pi: int | str = 4) -> list[str]:
        """The qemu-user command line that runs a program of this userland as the given board."""
        for name in ("proc/cpuinfo", "proc/device-tree/model"):
            link = self.root / name
            link.unlink(missing_ok=True)
            link.symlink_to(f"{link.name}.{board(pi)}")
        if self.release == ARMHF:
            return ["qemu-arm-static", "-cpu", CPUS_ARMHF[board(pi)], "-L", str(self.root)]
        return ["qemu-aarch64-static", "-cpu", CPUS[board(pi)], "-L", str(self.root)]

    def env(self, pythonpath: str = "") -> dict[str, str]:
        env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "PYTHONNOUSERSITE": "1"}
        return {**env, "PYTHONPATH": pythonpath} if pythonpath else env

    def command(self, *args: str, pi: int | str = 4, module: str = "edge_runtime.cli",
                python_args: tuple[str, ...] = ()) -> list[str]:
        cmd = [*self.qemu(pi), str(self.python), *python_args]
        return cmd + (["-m", module, *map(str, args)] if module else list(map(str, args)))

    def run(self, *args: str, pi: int | str = 4, interpreter: str = "litert", module: str = "edge_runtime.cli",
            timeout: float = 600, python_args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        """Run ``python3 -m edge_runtime.cli ARGS`` (or ``-c`` code with module="") on the emulated Pi."""
        env = self.env(f"{self.edgecls}{os.pathsep}{self.site(interpreter)}")
        return subprocess.run(self.command(*args, pi=pi, module=module, python_args=python_args), check=False,
                              capture_output=True, text=True, env=env, timeout=timeout)


def userland(cache: Path, release: str = "bookworm") -> Path:
    """The cached userland of RELEASE, built if missing; keyed by the script's content hash."""
    key = hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:12]
    path = cache / f"arm64-{release}-{key}"
    from conftest import cache_lock  # conftest imports this module: read it late

    with cache_lock(path.name):
        _build(release, path)
    return path


def _build(release: str, path: Path) -> None:
    if not (path / ".done").exists():
        env = {**os.environ, "PIP": str(Path(sys.executable).with_name("pip"))}
        p = subprocess.run(["bash", str(SCRIPT), release, str(path)], check=False, capture_output=True, text=True, env=env,
                           timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(f"building the {release} arm64 userland failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")


def wheel(work: Path) -> Path:
    """This checkout's edgecls wheel (pure Python: the same file installs on every Pi)."""
    wheels = work / "wheel"
    if not list(wheels.glob("edgecls-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                       check=True, capture_output=True, text=True)
    (whl,) = wheels.glob("edgecls-*.whl")
    return whl


def build(cache: Path, work: Path, release: str = "bookworm") -> Arm64:
    """The cached userland (built if missing) plus this checkout's runtime wheel."""
    t = time.perf_counter()
    path = userland(cache, release)
    whl = wheel(work)
    target = work / "site-edgecls"
    shutil.rmtree(target, ignore_errors=True)
    # --no-deps: numpy, pillow and the interpreter come from the interpreter's site dir.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(whl)],
                   check=True, capture_output=True, text=True)
    return Arm64(path, target, time.perf_counter() - t, release)


@pytest.fixture(scope="session")
def arm64s(tmp_path_factory):
    """``arm64s(release)``: that release's emulated userland with this checkout's runtime, built
    once a session and shared by every arm64 test module."""
    built: dict[str, Arm64] = {}

    def get(release: str = "bookworm") -> Arm64:
        if release not in built:
            built[release] = build(CACHE(), tmp_path_factory.mktemp(f"arm64-{release}"), release)
        return built[release]

    return get


def CACHE() -> Path:  # conftest's CACHE, read late (conftest imports this module)
    from conftest import CACHE as cache

    return cache


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
