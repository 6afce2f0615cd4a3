"""The machine edgecls runs on: board, CPU, governor, temperature and throttling, video
devices, memory use, and the fix-it messages for each gap. Read from procfs and sysfs (and
``vcgencmd`` on a Pi); every function answers None or an empty value where the machine does not
expose the fact (a VM, a container, a desktop)."""

from __future__ import annotations

import glob
import os
import platform
import resource
import shutil
import sys
from typing import Any

from edge_runtime._version import __version__

DEVICE_TREE_MODEL = "/proc/device-tree/model"
GOVERNOR = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
TEMPERATURE = "/sys/class/thermal/thermal_zone0/temp"

# vcgencmd get_throttled bits (Raspberry Pi firmware documentation).
THROTTLE_BITS = {0: "under-voltage", 1: "ARM frequency capped", 2: "throttled", 3: "soft temperature limit",
                 16: "under-voltage occurred", 17: "ARM frequency capping occurred", 18: "throttling occurred",
                 19: "soft temperature limit occurred"}

FIX_GOVERNOR = "echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor"


def read_sysfs(path: str, limit: int = 1 << 16) -> str | None:
    """A small text file (sysfs, procfs) stripped, or None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace").strip("\x00\n ")
    except OSError:
        return None


def board_model() -> str | None:
    """The device tree's model string ("Raspberry Pi 4 Model B Rev 1.4"), None off a board."""
    return read_sysfs(DEVICE_TREE_MODEL)


def is_raspberry_pi() -> bool:
    return "Raspberry Pi" in (board_model() or "")


def is_pi4_or_older() -> bool:
    """Pi 4 and older ISPs give the lores stream only as YUV420."""
    return is_raspberry_pi() and "Raspberry Pi 5" not in (board_model() or "")


def cpu_model() -> str:
    """The CPU's name, once (``model name`` on x86, ``Model``/``Hardware`` on ARM)."""
    text = read_sysfs("/proc/cpuinfo", 1 << 20) or ""
    for key in ("model name", "Model", "Hardware"):
        for line in text.splitlines():
            if line.startswith(key) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def governor() -> str | None:
    return read_sysfs(GOVERNOR)


def governor_warning(gov: str | None) -> str | None:
    """What to say about a governor that moves benchmark numbers, or None."""
    if gov and gov != "performance":
        return f"CPU governor is '{gov}', not 'performance': clock changes move the numbers; {FIX_GOVERNOR}"
    return None


def throttle_flags(value: int) -> list[str]:
    return [name for bit, name in THROTTLE_BITS.items() if value & (1 << bit)]


def board_state() -> dict[str, Any]:
    """SoC temperature and throttling, from sysfs and ``vcgencmd`` where the board has them."""
    state: dict[str, Any] = {"temperature_c": None, "throttled": None, "throttle_flags": []}
    t = read_sysfs(TEMPERATURE)
    if t and t.lstrip("-").isdigit():
        state["temperature_c"] = int(t) / 1000
    if shutil.which("vcgencmd"):
        import subprocess  # here: only where there is a vcgencmd to run

        try:
            out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5).stdout
            value = int(out.strip().split("=")[1], 16)
            state["throttled"] = hex(value)
            state["throttle_flags"] = throttle_flags(value)
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            pass
    return state


def video_devices() -> list[str]:
    """V4L2 capture nodes (/dev/video*), sorted."""
    return sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p))


def rss_mb() -> float:
    """Resident memory of this process now, MiB."""
    statm = read_sysfs("/proc/self/statm")
    if statm:
        return int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MiB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 2**20 if sys.platform == "darwin" else kb / 1024


def available_packages() -> dict[str, str | None]:
    """Version of each interpreter package that can be found, None for the missing ones
    (without importing tensorflow)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name, dist in (("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime"),
                       ("tensorflow", "tensorflow")):
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def summary() -> dict[str, Any]:
    """The facts a benchmark row or a report names the machine by."""
    gov = governor()
    warning = governor_warning(gov)
    return {"cpu": cpu_model(), "cores": cores(), "arch": platform.machine(), "board": board_model(),
            "governor": gov, "os": platform.platform(), "python": platform.python_version(), "edgecls": __version__,
            "interpreters": {k: v for k, v in available_packages().items() if v},
            "warnings": [warning] if warning else []}


def os_release(path: str = "/etc/os-release") -> dict[str, str]:
    """The OS's ``/etc/os-release`` fields (PRETTY_NAME, VERSION_CODENAME, ...); empty where there is none."""
    text = read_sysfs(path) or ""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip().strip('"')
    return out
