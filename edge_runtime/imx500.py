"""The Raspberry Pi AI Camera (Sony IMX500): the network runs on the sensor, the Pi reads its
output tensor from each frame's metadata.

How picamera2 does it (``picamera2/devices/imx500/imx500.py``), which this module relies on:
``IMX500(network.rpk)`` finds the sensor's V4L2 sub-device (a ``/sys/class/video4linux/v4l-subdevN``
whose driver module is imx500), uploads the network firmware and must be created before
``Picamera2(imx500.camera_num)``. Every completed request's metadata then carries
``CnnOutputTensor`` (all output tensors, float32, concatenated), ``CnnOutputTensorInfo`` (a
``CnnOutputTensorInfoExported`` struct: network name, tensor count, each tensor's dimensions)
and ``CnnKpiInfo`` (DNN and DSP runtime in microseconds); ``get_outputs(metadata)`` splits and
reshapes the tensors (Fortran order) or returns None for a frame without one, and
``get_kpi_info(metadata)`` gives the runtimes in milliseconds.

The bundle's ``imx500`` section (written by ``edgecls convert --imx500``) says the output is the
network's softmax (uint8, which picamera2 dequantizes), so scores are ranked as they come: no
softmax unless the bundle says logits, and the class count is the bundle's label count, never
ImageNet's 1000 or 1001. ``network.rpk`` is made on the Pi from ``imx500/packerOut.zip`` by
``imx500-package`` (deploy does it) and sits in the bundle's ``imx500/`` folder.

picamera2 is imported only inside ``Session.open``; everything else is numpy.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .bundle import Bundle, load_bundle
from .errors import BackendUnavailable, BundleError
from .postprocess import Class, top_k

SYS = "/sys"
RPK_ENV = "EDGECLS_IMX500_RPK"  # another network.rpk than the bundle's imx500/network.rpk
PICAMERA2_HINT = "on Raspberry Pi OS: sudo apt install python3-picamera2 imx500-all (and a venv with --system-site-packages)"


@dataclass(frozen=True)
class Device:
    """An IMX500 found in sysfs: its V4L2 sub-device node and its device id (as picamera2 finds it)."""

    subdev: str  # /dev/v4l-subdevN
    device_id: str  # e.g. 10-001a
    of_node: str  # the device-tree node, which holds the camera's Id


def find_devices(sys_root: str | os.PathLike[str] = SYS) -> list[Device]:
    """The IMX500 sensors on this machine: each ``class/video4linux/v4l-subdevN/device`` whose
    ``driver/module`` link names imx500, picamera2's own test."""
    out = []
    base = Path(sys_root) / "class" / "video4linux"
    for i in range(32):
        dev = base / f"v4l-subdev{i}" / "device"
        module, node = dev / "driver" / "module", dev / "of_node"
        try:
            if module.is_symlink() and node.is_symlink() and "imx500" in os.readlink(module):
                out.append(Device(f"/dev/v4l-subdev{i}", os.readlink(dev).split("/")[-1], os.readlink(node)))
        except OSError:
            continue
    return out


@dataclass(frozen=True)
class Network:
    """The bundle's IMX500 network: where its rpk is and how to read its output."""

    bundle: Bundle
    rpk: Path
    kind: str  # "probabilities" or "logits"
    classes: int
    input_size: tuple[int, int]  # (width, height), as the network takes it

    @property
    def labels(self) -> list[str]:
        return self.bundle.labels


def network(bundle: str | os.PathLike[str] | Bundle, rpk: str | os.PathLike[str] | None = None) -> Network:
    """The IMX500 network of a verified bundle; raises BundleError naming the fix when the bundle
    has none or its ``network.rpk`` was not made yet."""
    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    sec = b.meta.get("imx500")
    where = b.path / "edgecls.json"
    if not sec:
        raise BundleError(f"{where}: the bundle has no IMX500 network; convert with edgecls convert RUN --imx500")
    if not sec.get("converted"):
        raise BundleError(f"{where}: the IMX500 conversion failed when the bundle was made ({sec.get('error')}); "
                          "fix that and convert again")
    path = Path(rpk or os.environ.get(RPK_ENV) or b.path / sec.get("rpk", "imx500/network.rpk"))
    if not path.is_file():
        raise BundleError(f"{path}: no network.rpk; on the Pi run imx500-package -i {b.path / sec['packer']} "
                          f"-o {path.parent} (sudo apt install imx500-tools), or deploy the bundle again")
    out = sec.get("output", {})
    classes = int(out.get("classes", len(b.labels)))
    if classes != len(b.labels):
        raise BundleError(f"{where}: the IMX500 network outputs {classes} classes but labels.txt has "
                          f"{len(b.labels)}; reconvert the model")
    inp = sec.get("input", {})
    return Network(b, path, out.get("kind", "probabilities"), classes,
                   (int(inp.get("width", b.input.width)), int(inp.get("height", b.input.height))))


def scores(outputs: list[np.ndarray] | None, net: Network) -> np.ndarray | None:
    """The class scores in a frame's output tensors (None when the frame carries none): the first
    tensor, flattened, which must hold one score per label; softmax only for logits."""
    if outputs is None or len(outputs) == 0:
        return None
    s = np.asarray(outputs[0], dtype=np.float32).reshape(-1)
    if s.size != net.classes:
        raise BackendUnavailable(f"{net.rpk}: the IMX500 returned {s.size} values, the bundle has {net.classes} "
                                 "labels; the camera runs another network - deploy this bundle's network.rpk")
    if net.kind == "logits":
        e = np.exp(s - s.max())
        s = e / e.sum()
    return s


class Session:
    """The AI Camera running ``net``: picamera2's IMX500 (firmware upload) then Picamera2."""

    def __init__(self, net: Network, frame_rate: float = 30.0):
        self.net = net
        self.frame_rate = frame_rate
        self.imx: Any = None
        self.picam2: Any = None

    def open(self) -> "Session":
        try:
            from picamera2 import Picamera2
            from picamera2.devices import IMX500
        except ImportError:
            raise BackendUnavailable(f"the imx500 backend needs picamera2, which is not importable; {PICAMERA2_HINT}") from None
        try:
            self.imx = IMX500(str(self.net.rpk))  # must come before Picamera2: it uploads the network
        except RuntimeError as e:
            if "not found" in str(e):
                raise BackendUnavailable("no Raspberry Pi AI Camera (IMX500) found; check the ribbon cable and that "
                                         "libcamera lists it (rpicam-hello --list-cameras)") from None
            raise BackendUnavailable(f"{self.net.rpk}: the IMX500 refused the network ({e})") from None
        self.picam2 = Picamera2(self.imx.camera_num)
        config = self.picam2.create_preview_configuration(controls={"FrameRate": self.frame_rate}, buffer_count=12)
        self.imx.show_network_fw_progress_bar()
        self.picam2.configure(config)
        self.picam2.start()
        return self

    def input_size(self) -> tuple[int, int]:
        return tuple(self.imx.get_input_size())  # type: ignore[return-value]

    def read(self) -> tuple[np.ndarray | None, tuple[float, float] | None]:
        """The next frame's class scores (None when it carries no tensor) and its (DNN, DSP) ms."""
        md = self.picam2.capture_metadata()
        return scores(self.imx.get_outputs(md), self.net), self.imx.get_kpi_info(md)

    def close(self) -> None:
        if self.picam2 is not None:
            try:
                self.picam2.stop()
            finally:
                self.picam2.close()
                self.picam2 = None


def prefer(bundle: str | os.PathLike[str], sys_root: str | os.PathLike[str] = SYS) -> bool:
    """``--backend auto``: the IMX500 when the camera is one and the bundle has its network."""
    if not find_devices(sys_root):
        return False
    try:
        network(bundle)
    except BundleError:
        return False
    return True


@dataclass
class Summary:
    frames: int = 0
    classified: int = 0
    without_tensor: int = 0
    seconds: float = 0.0
    ended: str = "interrupted"
    dnn_ms: float | None = None  # mean DNN runtime on the sensor (CnnKpiInfo)
    dsp_ms: float | None = None

    @property
    def fps(self) -> float:
        return self.classified / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"summary": {"source": "imx500", "frames": self.frames, "classified": self.classified,
                            "without_tensor": self.without_tensor, "seconds": round(self.seconds, 3),
                            "fps": round(self.fps, 2), "ended": self.ended,
                            "imx500_ms": {"dnn": _r(self.dnn_ms), "dsp": _r(self.dsp_ms)}}}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def run(session: Session, emit: Callable[[dict], None], *, top: int = 3, threshold: float = 0.0,
        on_change: bool = False, smooth: int = 1, max_frames: int | None = None,
        stop: threading.Event | None = None) -> Summary:
    """Rank each frame's output tensor with the bundle's labels until ``max_frames``, ``stop`` or
    Ctrl-C. ``emit`` gets ``{"t", "frame", "classes", "imx500_ms"}`` per reported frame."""
    from .camera import Smoother

    stop = stop or threading.Event()
    s, smoother, last = Summary(), Smoother(smooth), None
    dnn: list[float] = []
    dsp: list[float] = []
    t0 = time.perf_counter()
    try:
        while not stop.is_set():
            sc, kpi = session.read()
            s.frames += 1
            if sc is None:
                s.without_tensor += 1
                continue
            s.classified += 1
            if kpi is not None:
                dnn.append(kpi[0])
                dsp.append(kpi[1])
            classes: list[Class] = top_k(smoother(sc), session.net.labels, top, threshold)
            label = classes[0].index if classes else None
            if (not on_change or label != last) and (classes or not threshold):
                emit({"t": round(time.time(), 6), "frame": s.frames,
                      "classes": [{"index": c.index, "label": c.label, "score": round(c.score, 6)} for c in classes],
                      "imx500_ms": {"dnn": _r(kpi[0]), "dsp": _r(kpi[1])} if kpi else None})
            last = label
            if max_frames and s.classified >= max_frames:
                s.ended = "max frames"
                break
    except KeyboardInterrupt:
        s.ended = "interrupted"
    finally:
        session.close()
    s.seconds = time.perf_counter() - t0
    s.dnn_ms = float(np.mean(dnn)) if dnn else None
    s.dsp_ms = float(np.mean(dsp)) if dsp else None
    return s


def bench_row(model: str, runs: int | None, seconds: float | None, warmup: int) -> dict[str, Any]:
    """``edgecls bench BUNDLE --backend imx500``: the network runs on the sensor, so what is measured
    is what each request's metadata says (CnnKpiInfo: DNN and DSP time per frame) and the rate
    classified frames arrive at; ``invoke_ms`` holds the DNN times. One row, as ``bench.measure``."""
    from .bench import latency_stats
    from .machine import peak_rss_mb, rss_mb

    net = network(model)
    rss0, t0 = rss_mb(), time.perf_counter()
    session = Session(net).open()  # uploads the network's firmware: the "create" time
    create_s = time.perf_counter() - t0
    try:
        t = time.perf_counter()
        _next_scored(session)
        first_s = time.perf_counter() - t
        for _ in range(warmup):
            _next_scored(session)
        dnn: list[float] = []
        frames, t_start = 0, time.perf_counter()
        deadline = t_start + (seconds or 0)
        while (len(dnn) < (runs or 0)) if seconds is None else (time.perf_counter() < deadline or not dnn):
            sc, kpi = session.read()
            frames += 1
            if sc is not None and kpi is not None:
                dnn.append(kpi[0] / 1e3)  # latency_stats takes seconds
        elapsed = time.perf_counter() - t_start
    finally:
        session.close()
    stats = latency_stats(dnn)
    return {"status": "ok", "model": model, "model_file": str(net.rpk), "file_bytes": net.rpk.stat().st_size,
            "backend": "imx500", "threads": None, "interpreter": "imx500 (on the sensor)", "interpreter_version": "",
            "input": "camera", "inputs": 0, "input_conversion": "on the sensor", "create_ms": create_s * 1e3,
            "first_invoke_ms": first_s * 1e3, "warmup": warmup, "invoke_ms": stats,
            "throughput_per_s": len(dnn) / elapsed if elapsed else 0.0,
            "imx500": {"frames": frames, "classified": len(dnn), "without_tensor": frames - len(dnn),
                       "frames_per_s": frames / elapsed if elapsed else 0.0},
            "rss_mb": {"before_load": rss0, "after_load": rss_mb(), "added_by_load": rss_mb() - rss0,
                       "peak": peak_rss_mb()},
            "notes": ["invoke_ms is the DNN time the sensor reports per frame (CnnKpiInfo), not a CPU invoke"]}


def _next_scored(session: Session, limit: int = 100) -> None:
    """Read until a frame carries a tensor."""
    for _ in range(limit):
        if session.read()[0] is not None:
            return
    raise BackendUnavailable(f"the AI Camera sent {limit} frames without an output tensor; is the network loaded?")


def verify_command(bundle: str) -> None:
    """``edgecls verify BUNDLE --backend imx500``: what can be checked here, and what cannot."""
    net = network(bundle)  # the bundle's imx500/ part, checksummed, and its network.rpk
    raise BundleError(f"{bundle}: the IMX500 network ({net.rpk.name}, {len(net.labels)} classes) is present and its "
                      "files match edgecls.json, but its outputs were not checked: edgecls does not feed the golden "
                      "photos to the sensor (picamera2's tensor injection); `edgecls camera --backend imx500` "
                      "shows what it classifies, `edgecls verify --backend cpu` checks the CPU model")


def camera_command(a: Any) -> int:
    """``edgecls camera BUNDLE --backend imx500``: the command layer for this backend (prints)."""
    import json
    import sys

    if a.smooth < 1:
        raise ValueError("--smooth must be at least 1")
    if a.serve:
        raise ValueError("--serve is not available with --backend imx500 yet; use --json")
    if a.labels:
        raise ValueError("--labels: the imx500 backend uses the bundle's labels.txt")
    net = network(a.model)
    session = Session(net, frame_rate=a.fps or 30.0).open()
    w, h = session.input_size()
    print(f"edgecls: IMX500 -> {net.rpk} ({net.classes} classes, {w}x{h} input, on the sensor)", file=sys.stderr)

    def emit(d: dict) -> None:
        if a.json:
            print(json.dumps(d), flush=True)
        else:
            top = ", ".join(f"{c['label']} ({c['score']:.3f})" for c in d["classes"]) or "(below the threshold)"
            ms = f"  [dnn {d['imx500_ms']['dnn']:.1f} ms]" if d["imx500_ms"] else ""
            print(f"frame {d['frame']}: {top}{ms}", flush=True)

    s = run(session, emit, top=a.top_k, threshold=a.threshold, on_change=a.on_change, smooth=a.smooth,
            max_frames=a.max_frames)
    if a.json:
        print(json.dumps(s.to_dict()), flush=True)
    dnn = f", DNN {s.dnn_ms:.1f} ms on the sensor" if s.dnn_ms is not None else ""
    print(f"edgecls: {s.classified} frames classified of {s.frames}, {s.without_tensor} without a tensor, "
          f"{s.fps:.1f} FPS over {s.seconds:.1f} s ({s.ended}){dnn}", file=sys.stderr)
    return 0


def doctor_check(sys_root: str | os.PathLike[str] = SYS) -> tuple[str, str, str]:
    """``edgecls doctor``'s line for the AI Camera: (status, what was found, what to do)."""
    import shutil

    devs = find_devices(sys_root)
    if not devs:
        return ("missing", "no Raspberry Pi AI Camera (IMX500) in sysfs",
                "only for --backend imx500: connect the AI Camera; on Raspberry Pi OS sudo apt install imx500-all")
    found = ", ".join(f"{d.subdev} ({d.device_id})" for d in devs)
    if shutil.which("imx500-package") is None:
        return ("warn", f"IMX500 at {found}; imx500-package not installed",
                "to turn a bundle's packerOut.zip into network.rpk: sudo apt install imx500-tools")
    return ("ok", f"IMX500 at {found}; imx500-package installed", "")
