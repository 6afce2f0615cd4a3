"""``edgecls doctor``: what this machine can run, and what to do about each gap."""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os
import platform
import shutil
import struct
import sys
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

from edge_runtime._version import __version__
from edge_runtime.live import imx500
from edge_runtime.model import interpreter as interp
from edge_runtime.system.machine import (
    FIX_GOVERNOR,
    available_packages,
    board_model,
    cpu_model,
    governor,
    os_release,
    read_sysfs,
    video_devices,
)

Status = Literal["ok", "warn", "missing"]

# Coral USB Accelerator before and after its firmware is loaded.
CORAL_USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}


@dataclass
class Check:
    name: str
    status: Status
    found: str
    fix: str = ""


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def edgetpu_devices() -> list[str]:
    found = sorted(glob.glob("/dev/apex_*"))
    for d in glob.glob("/sys/bus/usb/devices/*"):
        ids = (read_sysfs(os.path.join(d, "idVendor")), read_sysfs(os.path.join(d, "idProduct")))
        if ids in CORAL_USB_IDS:
            found.append(f"usb:{os.path.basename(d)} ({ids[0]}:{ids[1]})")
    return found


# Python versions ai-edge-litert 2.3 publishes wheels for (x86_64 and aarch64).
LITERT_PYTHONS = ((3, 11), (3, 12), (3, 13))


def platform_checks(release: dict[str, str], machine: str, userland_bits: int, python: tuple[int, int],
                    versions: dict[str, str | None]) -> list[Check]:
    """The OS release and Python, and what to do about the combinations known not to work."""
    name = release.get("PRETTY_NAME") or release.get("NAME") or "unknown OS"
    out = [Check("os", "ok", f"{name}, {machine} kernel, {userland_bits}-bit userland, Python {python[0]}.{python[1]}")]
    if userland_bits == 32:
        kernel = " on a 64-bit kernel" if machine in ("aarch64", "arm64", "x86_64") else ""
        out.append(Check("32-bit", "warn", f"a 32-bit userland{kernel}: ai-edge-litert has no 32-bit wheels",
                         "use 64-bit Raspberry Pi OS; or, on 32-bit Bookworm, tflite-runtime's armv7l wheel over "
                         "Debian's python3-numpy and python3-pil (README: 32-bit Raspberry Pi OS)"))
    elif not versions.get("ai_edge_litert") and python not in LITERT_PYTHONS:
        out.append(Check("python version", "warn", f"Python {python[0]}.{python[1]}: ai-edge-litert 2.3 has wheels "
                         "for Python 3.11 to 3.13 only", "make the venv with python3.13 (Trixie) or python3.11 "
                         "(Bookworm)"))
    return out


def checks() -> list[Check]:
    out = [Check("edgecls", "ok", __version__),
           Check("python", "ok", f"{platform.python_version()} ({sys.executable})"),
           Check("machine", "ok", f"{platform.machine()}, {interp.default_threads()} cores, {cpu_model()}")]
    out += platform_checks(os_release(), platform.machine(), struct.calcsize("P") * 8, sys.version_info[:2],
                           available_packages())
    import numpy

    out.append(Check("numpy", "ok", numpy.__version__))
    out.append(Check("pillow", "ok", _version("pillow") or "?"))

    versions = available_packages()
    found = ", ".join(f"{k} {v}" for k, v in versions.items() if v) or "none"
    try:
        pkg = interp.resolve_package()
        out.append(Check("interpreter", "ok", f"{pkg.name} {pkg.version} (installed: {found})"))
    except Exception as e:
        out.append(Check("interpreter", "missing", str(e), "pip install ai-edge-litert"))
    if versions.get("tflite_runtime") and numpy.__version__.split(".")[0] != "1":
        out.append(Check("tflite-runtime", "warn", f"tflite-runtime {versions['tflite_runtime']} with numpy {numpy.__version__}",
                         "tflite-runtime needs numpy<2: pip install 'numpy<2', or use ai-edge-litert"))

    lib = interp.edgetpu_library()
    try:
        ctypes.CDLL(lib)
        lib_status: tuple[Status, str, str] = ("ok", f"{lib} loads", "")
    except OSError:
        lib_status = ("missing", f"{lib} not found",
                      "install libedgetpu1-std from Coral's apt repository (https://coral.ai/software/#debian-packages)")
    out.append(Check("edgetpu library", *lib_status))
    devices = edgetpu_devices()
    out.append(Check("edgetpu devices", "ok" if devices else "missing", ", ".join(devices) or "none",
                     "" if devices else "plug in a Coral USB Accelerator (or install the PCIe driver gasket-dkms)"))

    ok, why = interp.vulkan_status()
    has_cm = importlib.util.find_spec("ai_edge_litert") is not None
    if not has_cm:
        out.append(Check("gpu", "missing", "no ai-edge-litert (its CompiledModel API is the GPU path)", "pip install ai-edge-litert"))
    else:
        out.append(Check("gpu", "ok" if ok else "missing", why,
                         "" if ok else "install your GPU's Vulkan driver (and libvulkan1); --backend gpu also runs on "
                         "software Vulkan, for testing only"))

    cams = video_devices()
    pic = importlib.util.find_spec("picamera2") is not None
    cv = importlib.util.find_spec("cv2") is not None
    out.append(Check("picamera2", "ok" if pic else "missing", "importable" if pic else "not importable",
                     "" if pic else "on Raspberry Pi OS: sudo apt install python3-picamera2, and a venv with "
                     "--system-site-packages"))
    out.append(Check("opencv", "ok" if cv else "missing", "importable" if cv else "not importable",
                     "" if cv else "for USB webcams: pip install 'edgecls[camera]'"))
    out.append(Check("video devices", "ok" if cams else "missing", ", ".join(cams) or "none",
                     "" if cams else "connect a camera, or classify images and video files"))

    out.append(Check("ai camera", *imx500_check()))  # the Raspberry Pi AI Camera  # type: ignore[arg-type]

    gov = governor()
    if gov is None:
        out.append(Check("cpu governor", "ok", "not exposed (virtual machine or container)"))
    else:
        out.append(Check("cpu governor", "ok" if gov == "performance" else "warn", gov,
                         "" if gov == "performance" else "for stable latency: " + FIX_GOVERNOR))
    board = board_model()
    out.append(Check("board", "ok", board or "not a device-tree board (desktop or VM)"))
    return out


def report(json_out: bool = False, need: Sequence[str] = ()) -> tuple[str, int]:
    """The doctor's text (or JSON) and exit status: 1 when no interpreter can run models, or when
    a check named in ``need`` is not ok. ValueError for a name that is no check."""
    items = checks()
    names = [c.name for c in items]
    unknown = [n for n in need if n not in names]
    if unknown:
        raise ValueError(f"doctor --need: no check named {', '.join(map(repr, unknown))}; the checks: {', '.join(names)}")
    code = 1 if any((c.name in need and c.status != "ok") or (c.name == "interpreter" and c.status == "missing")
                    for c in items) else 0
    if json_out:
        import json

        return json.dumps({"checks": [asdict(c) for c in items]}), code
    mark = {"ok": "ok  ", "warn": "WARN", "missing": "--  "}
    lines = []
    for c in items:
        lines.append(f"[{mark[c.status]}] {c.name:16} {c.found}")
        if c.fix:
            lines.append(f"       {'':16} -> {c.fix}")
    return "\n".join(lines), code


def imx500_check(sys_root: str | os.PathLike[str] = imx500.SYS) -> tuple[str, str, str]:
    """``edgecls doctor``'s line for the AI Camera: (status, what was found, what to do)."""
    devs = imx500.find_devices(sys_root)
    if not devs:
        return ("missing", "no Raspberry Pi AI Camera (IMX500) in sysfs",
                "only for --backend imx500: connect the AI Camera; on Raspberry Pi OS sudo apt install imx500-all")
    found = ", ".join(f"{d.subdev} ({d.device_id})" for d in devs)
    if shutil.which("imx500-package") is None:
        return ("warn", f"IMX500 at {found}; imx500-package not installed",
                "to turn a bundle's packerOut.zip into network.rpk: sudo apt install imx500-tools")
    return ("ok", f"IMX500 at {found}; imx500-package installed", "")
