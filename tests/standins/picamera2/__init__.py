"""A stand-in for picamera2 on a Raspberry Pi with the AI Camera, for tests on any machine.

Built from picamera2's own source (``picamera2/devices/imx500/imx500.py`` and
``picamera2/picamera2.py``): what a test can observe through the public API is the same, the
hardware behind it is a script. ``Picamera2.capture_metadata()`` returns the metadata libcamera's
IMX500 pipeline attaches to a request: ``CnnOutputTensor`` (every output tensor, float32,
flattened in Fortran order and concatenated), ``CnnOutputTensorInfo`` (the bytes of libcamera's
``CnnOutputTensorInfoExported``), ``CnnKpiInfo`` ([DNN us, DSP us]); a frame the script marks
``null`` carries none of them, as a frame without a tensor does.

The script is a JSON file named by $EDGECLS_TEST_IMX500_SCRIPT:
    {"camera_id": "/base/.../imx500@1a", "input_size": [W, H],
     "frames": [{"outputs": [[...scores...]], "shapes": [[N]], "kpi": [dnn_us, dsp_us]}, null, ...]}
(frames repeat when the script runs out); the sysfs it looks in is $EDGECLS_TEST_SYSFS. A script's
``"fail": "configure"`` or ``"start"`` makes that call raise, as libcamera does for a configuration
it refuses or a camera that cannot start. As with libcamera, a camera is held from ``Picamera2()``
until ``close()``: a second ``Picamera2()`` of it fails while it is held. Each acquire and release
is appended to the file named by $EDGECLS_TEST_PICAMERA2_LOG, when set ("acquire 0", "release 0").
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

__all__ = ["Picamera2", "CompletedRequest"]


_held: set[int] = set()  # the cameras acquired in this process (libcamera's CameraManager)


def _event(what: str) -> None:
    path = os.environ.get("EDGECLS_TEST_PICAMERA2_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(what + "\n")


def _fail(step: str) -> None:
    if _script().get("fail") == step:
        raise RuntimeError(f"Failed to {step} camera: Invalid argument")


def _script() -> dict:
    with open(os.environ["EDGECLS_TEST_IMX500_SCRIPT"], encoding="utf-8") as f:
        return json.load(f)


class CompletedRequest:
    """picamera2's CompletedRequest as edgecls uses it: ``get_metadata()``, ``make_array(name)`` (an
    XBGR8888 main stream is (h, w, 4), R, G, B, X in memory, rows without their padding) and
    ``release()``, after which the buffers are gone."""

    def __init__(self, metadata: dict, size: tuple[int, int], n: int):
        self.metadata, self.size, self.n, self.released = metadata, size, n, False

    def get_metadata(self) -> dict:
        return dict(self.metadata)

    def make_array(self, name: str) -> np.ndarray:
        if self.released:
            raise RuntimeError("request already released")
        if name != "main":
            raise KeyError(name)
        w, h = self.size
        y, x = np.mgrid[0:h, 0:w]
        px = np.zeros((h, w, 4), np.uint8)
        px[..., 0] = (x * 255 // max(w - 1, 1)).astype(np.uint8)  # R grows to the right
        px[..., 1] = (y * 255 // max(h - 1, 1)).astype(np.uint8)  # G downwards
        px[..., 2] = (self.n * 37) % 256  # B changes from frame to frame
        return px

    def release(self) -> None:
        self.released = True


class Picamera2:
    @staticmethod
    def global_camera_info() -> list[dict]:
        s = _script()
        return [{"Model": "imx500", "Location": 2, "Rotation": 0, "Id": s["camera_id"], "Num": 0}]

    def __init__(self, camera_num: int = 0):
        if camera_num != 0:
            raise IndexError("list index out of range")  # what picamera2 raises for a camera it does not have
        if camera_num in _held:
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        _held.add(camera_num)
        _event(f"acquire {camera_num}")
        self.camera_num = camera_num
        self.is_open = True
        self.started = False
        self.configured = None
        self.n = 0

    def create_preview_configuration(self, main=None, lores=None, raw=None, transform=None, colour_space=None,
                                     buffer_count=4, controls=None, display="main", encode="main", queue=True,
                                     sensor=None, use_case="preview") -> dict:
        return {"use_case": use_case, "buffer_count": buffer_count, "controls": dict(controls or {}),
                "main": {"format": "XBGR8888", "size": (640, 480)}}

    def configure(self, config: dict) -> None:
        _fail("configure")
        self.configured = config

    def start(self, config: dict | None = None, show_preview: bool = False) -> None:
        if config is not None:
            self.configure(config)
        if self.configured is None:
            raise RuntimeError("Camera has not been configured")
        _fail("start")
        self.started = True

    def camera_configuration(self) -> dict:
        return self.configured

    def capture_request(self, wait=None, flush=None) -> CompletedRequest:
        md = self.capture_metadata()
        return CompletedRequest(md, tuple(self.configured["main"]["size"]), self.n)

    def capture_metadata(self, wait=None) -> dict:
        if not self.started:
            raise RuntimeError("Camera is not running")
        frames = _script()["frames"]
        rate = float((self.configured.get("controls") or {}).get("FrameRate", 30.0))  # the sensor's pace
        now = time.monotonic()
        self.next_t = max(getattr(self, "next_t", now), now - 1 / rate)
        time.sleep(max(0.0, self.next_t - now))
        self.next_t += 1 / rate
        f = frames[self.n % len(frames)]
        self.n += 1
        md: dict = {"SensorTimestamp": 1_000_000 * self.n, "ScalerCrop": (0, 0, 4056, 3040)}
        if f is None:
            return md
        from .devices.imx500.imx500 import pack_tensor_info

        tensors = [np.asarray(o, dtype=np.float32).reshape(s, order="F") for o, s in zip(f["outputs"], f["shapes"])]
        md["CnnOutputTensor"] = [float(v) for t in tensors for v in t.reshape(-1, order="F")]
        md["CnnOutputTensorInfo"] = pack_tensor_info("network", [t.shape for t in tensors])
        if f.get("kpi"):
            md["CnnKpiInfo"] = list(f["kpi"])
        return md

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.started = False
        if self.is_open:
            self.is_open = False
            _held.discard(self.camera_num)
            _event(f"release {self.camera_num}")
