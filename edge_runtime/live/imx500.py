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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.bundle.format import Bundle, load_bundle
from edge_runtime.errors import BackendUnavailable, BundleError
from edge_runtime.live.frames import Frame, Source, SourceError
from edge_runtime.live.loop import Scorer
from edge_runtime.live.picamera2 import capture_time, picamera2_to_rgb

SYS = os.environ.get("EDGECLS_SYSFS", "/sys")  # where the sensor is looked for (another root: a container's)
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
        self.main_format = "XBGR8888"

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
        try:
            self.picam2 = Picamera2(self.imx.camera_num)
            config = self.picam2.create_preview_configuration(controls={"FrameRate": self.frame_rate}, buffer_count=12)
            self.imx.show_network_fw_progress_bar()
            self.picam2.configure(config)
            self.main_format = self.picam2.camera_configuration()["main"]["format"]
            self.picam2.start()
        except Exception as e:  # libcamera's errors: the camera is closed again, never left open
            self.close()
            raise BackendUnavailable(f"the AI Camera cannot start ({type(e).__name__}: {e})") from None
        return self

    def input_size(self) -> tuple[int, int]:
        return tuple(self.imx.get_input_size())  # type: ignore[return-value]

    def read(self) -> tuple[np.ndarray | None, tuple[float, float] | None]:
        """The next frame's class scores (None when it carries no tensor) and its (DNN, DSP) ms."""
        md = self.picam2.capture_metadata()
        return scores(self.imx.get_outputs(md), self.net), self.imx.get_kpi_info(md)

    def read_frame(self) -> tuple[np.ndarray, dict[str, Any], np.ndarray | None, tuple[float, float] | None]:
        """The next frame's picture (RGB, from the main stream), its metadata, its scores and (DNN, DSP) ms:
        one request, released at once."""
        request = self.picam2.capture_request()
        try:
            md = request.get_metadata()
            array = request.make_array("main")
        finally:
            request.release()
        rgb = picamera2_to_rgb(array, self.main_format, array.shape[1], array.shape[0])
        return rgb, md, scores(self.imx.get_outputs(md), self.net), self.imx.get_kpi_info(md)

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


class Imx500Source(Source):
    """The AI Camera as a frame source: each frame's picture (the main stream, for the web view and
    mining) with the scores the sensor computed for it attached (``Frame.scores``; None on a frame
    without an output tensor) and the sensor's DNN and DSP times (``Frame.stages``)."""

    name = "imx500"
    live = True

    def __init__(self, net: Network, frame_rate: float = 30.0):
        self.session = Session(net, frame_rate)
        self.n = 0

    def open(self) -> None:
        if self.session.picam2 is None:
            self.session.open()

    def read(self) -> Frame | None:
        try:
            rgb, md, sc, kpi = self.session.read_frame()
        except Exception as e:
            raise SourceError(f"the AI Camera stopped delivering frames ({type(e).__name__}: {e})") from None
        stages = {"invoke": kpi[0], "dsp": kpi[1]} if kpi else {}
        f = Frame(np.ascontiguousarray(rgb), capture_time(md.get("SensorTimestamp")), self.n, rgb, sc, stages)
        self.n += 1
        return f

    def close(self) -> None:
        self.session.close()


class SensorScorer(Scorer):
    """Scores the sensor already computed: nothing to prepare, nothing to invoke here. ``labels``
    are the bundle's (or the names given for them)."""

    def __init__(self, labels: list[str]):
        self.labels = labels

    def score(self, frame: Frame, x: Any) -> tuple[np.ndarray | None, dict[str, float]]:
        return frame.scores, dict(frame.stages or {})
