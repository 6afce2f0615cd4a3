"""A Raspberry Pi camera made of picamera2's own code: the real ``picamera2`` package (installed
with ``pip install --no-deps picamera2``) runs on a stand-in for libcamera's Python binding.

What is picamera2's own: ``Picamera2.create_video_configuration`` (colour-space defaults,
``align_stream``), ``configure_`` (``check_camera_config``, the libcamera configuration it
builds, ``_update_camera_config`` with its colour-space round trip), ``start_`` (requests made
and queued), ``process_requests`` (the event loop's job running and the one held request),
``dispatch_functions`` and ``Job``, ``capture_request``/``capture_array``/``capture_arrays``,
``CompletedRequest`` (``make_array``, ``get_metadata``, ``release`` re-queueing the request),
``MappedArray`` and ``Helpers._make_array_shared``.

What stands in, following libcamera's Python binding and the Raspberry Pi pipeline handler:
the ``libcamera`` module (``ColorSpace`` presets and enums, ``Transform``, ``Orientation``,
sizes, statuses), the camera (``generate_configuration``, ``validate`` choosing strides with
row padding, ``queue_request``), an allocator of anonymous ``mmap`` buffers, and a sensor thread
that completes one queued request every 1/fps seconds, filling each stream's buffer with the
scene in its memory layout and colour space, with junk in every padding byte, and stamping
``SensorTimestamp`` on the monotonic clock. The thread plays the part of picamera2's event loop.

Only the modules picamera2 imports at import time for features not used here (encoders,
DNG, DRM preview: videodev2, prctl, piexif, simplejpeg, pidng, kms) are opaque placeholders.
"""

from __future__ import annotations

import enum
import importlib
import mmap
import sys
import threading
import time
import types
from typing import Any

import numpy as np
from PIL import Image

# --- libcamera's Python binding, as picamera2 uses it ------------------------------------------


class _Enum(enum.Enum):
    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


class ColorSpace:
    """libcamera::ColorSpace: primaries, transfer function, YCbCr encoding, range, and the presets
    of libcamera's color_space.cpp."""

    Primaries = _Enum("Primaries", "Raw Smpte170m Rec709 Rec2020")
    TransferFunction = _Enum("TransferFunction", "Linear Srgb Rec709")
    YcbcrEncoding = _Enum("YcbcrEncoding", "Null Rec601 Rec709 Rec2020")
    Range = _Enum("Range", "Full Limited")

    def __init__(self, other: "ColorSpace | None" = None, *args: Any):
        if isinstance(other, ColorSpace):
            args = (other.primaries, other.transferFunction, other.ycbcrEncoding, other.range)
        elif other is not None:
            args = (other, *args)
        self.primaries, self.transferFunction, self.ycbcrEncoding, self.range = args

    def __str__(self) -> str:
        for name in ("Raw", "Srgb", "Sycc", "Smpte170m", "Rec709", "Rec2020"):
            p = getattr(ColorSpace, name)()
            if (p.primaries, p.transferFunction, p.ycbcrEncoding, p.range) == (
                    self.primaries, self.transferFunction, self.ycbcrEncoding, self.range):
                return name
        return (f"{self.primaries.name}/{self.transferFunction.name}/{self.ycbcrEncoding.name}/"
                f"{self.range.name}")

    @staticmethod
    def Raw() -> "ColorSpace":
        C = ColorSpace
        return C(C.Primaries.Raw, C.TransferFunction.Linear, C.YcbcrEncoding.Null, C.Range.Full)

    @staticmethod
    def Srgb() -> "ColorSpace":
        C = ColorSpace
        return C(C.Primaries.Rec709, C.TransferFunction.Srgb, C.YcbcrEncoding.Null, C.Range.Full)

    @staticmethod
    def Sycc() -> "ColorSpace":
        C = ColorSpace
        return C(C.Primaries.Rec709, C.TransferFunction.Srgb, C.YcbcrEncoding.Rec601, C.Range.Full)

    @staticmethod
    def Smpte170m() -> "ColorSpace":
        C = ColorSpace
        return C(C.Primaries.Smpte170m, C.TransferFunction.Rec709, C.YcbcrEncoding.Rec601, C.Range.Limited)

    @staticmethod
    def Rec709() -> "ColorSpace":
        C = ColorSpace
        return C(C.Primaries.Rec709, C.TransferFunction.Rec709, C.YcbcrEncoding.Rec709, C.Range.Limited)

    @staticmethod
    def Rec2020() -> "ColorSpace":
        C = ColorSpace
        return C(C.Primaries.Rec2020, C.TransferFunction.Rec709, C.YcbcrEncoding.Rec2020, C.Range.Limited)


class Transform:
    def __init__(self, other: "Transform | None" = None, hflip: int = 0, vflip: int = 0, transpose: int = 0):
        if isinstance(other, Transform):
            hflip, vflip, transpose = other.hflip, other.vflip, other.transpose
        self.hflip, self.vflip, self.transpose = bool(hflip), bool(vflip), bool(transpose)

    def __str__(self) -> str:
        return f"<libcamera.Transform '{'h' * self.hflip}{'v' * self.vflip}{'t' * self.transpose}'>"


class Size:
    def __init__(self, width: int, height: int):
        self.width, self.height = width, height


class Rectangle:
    def __init__(self, x: int = 0, y: int = 0, width: int = 0, height: int = 0):
        self.x, self.y, self.width, self.height = x, y, width, height


class PixelFormat:
    def __init__(self, name: str):
        self.name = name

    def __str__(self) -> str:
        return self.name


class ControlId:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"libcamera.ControlId({self.name})"


class SensorConfiguration:
    bit_depth = 0
    output_size = None


def _libcamera_module() -> types.ModuleType:
    m = types.ModuleType("libcamera")
    m.__doc__ = "stand-in for libcamera's Python binding (tests/picamera2_standin.py)"
    for cls in (ColorSpace, Transform, Size, Rectangle, PixelFormat, SensorConfiguration):
        setattr(m, cls.__name__, cls)
    m.Orientation = _Enum("Orientation", "Rotate0 Rotate0Mirror Rotate180 Rotate180Mirror Rotate90Mirror Rotate270 "
                                         "Rotate90 Rotate270Mirror")
    m.StreamRole = _Enum("StreamRole", "Raw StillCapture VideoRecording Viewfinder")
    m.ControlType = _Enum("ControlType", "None_ Bool Byte Integer32 Integer64 Float String Rectangle Size")
    m.CameraManager = type("CameraManager", (), {})
    m.CameraConfiguration = type("CameraConfiguration", (), {"Status": _Enum("Status", "Valid Adjusted Invalid")})
    m.FrameMetadata = type("FrameMetadata", (), {"Status": _Enum("Status", "Success Error Cancelled")})
    m._libcamera = types.SimpleNamespace(ColorSpace=ColorSpace, Transform=Transform)
    controls = types.ModuleType("libcamera.controls")
    for name in ("ExposureTime", "ExposureTimeMode", "AnalogueGain", "AnalogueGainMode", "SensorTimestamp",
                 "FrameDuration"):
        setattr(controls, name, ControlId(name))
    controls.draft = types.SimpleNamespace(NoiseReductionModeEnum=_Enum("NoiseReductionModeEnum",
                                                                        "Off Fast HighQuality Minimal ZSL"))
    m.controls = controls
    m.properties = types.SimpleNamespace(draft=types.SimpleNamespace())
    return m


class _Opaque:
    """A placeholder for modules picamera2 imports for features these tests never run."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, name: str) -> "_Opaque":
        if name.startswith("__"):
            raise AttributeError(name)
        return _Opaque(f"{self._name}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> "_Opaque":
        return _Opaque(f"{self._name}()")


def _opaque_module(name: str) -> types.ModuleType:
    m = types.ModuleType(name)
    def attribute(attr: str) -> _Opaque:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Opaque(f"{name}.{attr}")

    m.__getattr__ = attribute  # type: ignore[attr-defined]
    m.__path__ = []  # so that submodules (pidng.core) can be imported from it
    return m


OPAQUE = ("videodev2", "prctl", "piexif", "simplejpeg", "pidng", "pidng.camdefs", "pidng.core", "kms")
libcamera = _libcamera_module()


def _import_picamera2() -> types.ModuleType:
    """Import the installed picamera2 on the stand-in libcamera, then take every module this
    added back out of ``sys.modules`` (picamera2 keeps its references): elsewhere in the test
    run, ``import picamera2`` fails as it does on a machine without libcamera."""
    before = set(sys.modules)
    saved = {n: sys.modules.get(n) for n in ("libcamera", *OPAQUE)}
    sys.modules["libcamera"] = libcamera
    sys.modules["libcamera.controls"] = libcamera.controls
    for n in OPAQUE:
        sys.modules[n] = _opaque_module(n)
    try:
        return importlib.import_module("picamera2")
    finally:
        for n in set(sys.modules) - before:
            if n == "picamera2" or n.startswith(("picamera2.", "libcamera")) or n in OPAQUE:
                del sys.modules[n]
        for n, m in saved.items():
            if m is not None:
                sys.modules[n] = m


picamera2 = _import_picamera2()  # ImportError here: picamera2 is not installed
Picamera2 = picamera2.Picamera2
CompletedRequest = picamera2.CompletedRequest
Helpers = picamera2.request.Helpers
Allocator = picamera2.allocators.allocator.Allocator
Sync = picamera2.allocators.allocator.Sync
Platform = picamera2.platform.Platform


# --- the camera and its buffers --------------------------------------------------------------


class _MemorySync(Sync):
    """Like picamera2's DmaSync, without the dma-buf ioctl: the mapping is the buffer."""

    def __init__(self, allocator: "MemoryAllocator", fb: Any, write: bool):
        self.allocator, self.fb = allocator, fb

    def __enter__(self) -> mmap.mmap:
        return self.allocator.mapped_buffers[self.fb]

    def __exit__(self, *exc: Any) -> None:
        pass


class _FrameBuffer:
    def __init__(self, length: int):
        self.planes = [types.SimpleNamespace(fd=-1, offset=0, length=length)]
        self.metadata = types.SimpleNamespace(status=libcamera.FrameMetadata.Status.Success,
                                              planes=[types.SimpleNamespace(bytes_used=length)])


class MemoryAllocator(Allocator):
    """picamera2's DmaAllocator with anonymous mmaps: ``buffer_count`` buffers of ``frame_size``
    bytes per stream."""

    def __init__(self) -> None:
        super().__init__()
        self.sync = _MemorySync
        self.mapped_buffers: dict[Any, mmap.mmap] = {}
        self.frame_buffers: dict[Any, list[_FrameBuffer]] = {}

    def allocate(self, libcamera_config: Any, use_case: Any) -> None:
        self.mapped_buffers, self.frame_buffers = {}, {}
        for sc in libcamera_config:
            fbs = [_FrameBuffer(sc.frame_size) for _ in range(sc.buffer_count)]
            for fb in fbs:
                self.mapped_buffers[fb] = mmap.mmap(-1, sc.frame_size)
            self.frame_buffers[sc.stream] = fbs

    def buffers(self, stream: Any) -> list[_FrameBuffer]:
        return self.frame_buffers[stream]


class _Request:
    """libcamera.Request: a buffer per stream, metadata, reuse."""

    def __init__(self) -> None:
        self.buffers: dict[Any, _FrameBuffer] = {}
        self.metadata: dict[ControlId, Any] = {}

    def add_buffer(self, stream: Any, fb: _FrameBuffer) -> None:
        self.buffers[stream] = fb

    def reuse(self) -> None:
        self.metadata = {}

    def set_control(self, id: Any, value: Any) -> None:
        pass


class _Stream:
    """libcamera.Stream: an identity, a key of Request.buffers."""

    def __init__(self, role: Any):
        self.role = role


class _StreamConfiguration:
    def __init__(self, role: Any):
        self.role = role
        self.stream = _Stream(role)
        self.size = Size(0, 0)
        self.pixel_format = PixelFormat("")
        self.buffer_count = 0
        self.stride = 0
        self.frame_size = 0
        self.color_space: ColorSpace | None = None


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


BYTES_PER_PIXEL = {"RGB888": 3, "BGR888": 3, "XRGB8888": 4, "XBGR8888": 4, "YUV420": 1}


class _CameraConfiguration:
    """libcamera.CameraConfiguration as the Raspberry Pi pipeline handler validates it: each
    output's stride is its row size aligned to the ISP's 64 bytes (YUV420: so that the chroma
    planes, at half the stride, are aligned too), plus ``extra_stride`` bytes."""

    def __init__(self, roles: list[Any], extra_stride: int):
        self.configs = [_StreamConfiguration(r) for r in roles]
        self.orientation = None
        self.sensor_config: Any = None
        self.extra_stride = extra_stride

    def at(self, i: int) -> _StreamConfiguration:
        return self.configs[i]

    def __iter__(self) -> Any:
        return iter(self.configs)

    def validate(self) -> Any:
        for sc in self.configs:
            fmt = str(sc.pixel_format)
            if fmt not in BYTES_PER_PIXEL:  # the raw stream
                sc.stride = _align(sc.size.width * 2, 64)
                sc.frame_size = sc.stride * sc.size.height
                continue
            sc.stride = _align(sc.size.width * BYTES_PER_PIXEL[fmt], 64) + self.extra_stride
            rows = sc.size.height * 3 // 2 if fmt == "YUV420" else sc.size.height
            sc.frame_size = sc.stride * rows
        return libcamera.CameraConfiguration.Status.Valid


class _Camera:
    """libcamera.Camera: configurations, the queue of requests waiting for a frame."""

    def __init__(self, extra_stride: int):
        self.extra_stride = extra_stride
        self.controls: dict[Any, Any] = {}
        self.properties = {ControlId("Model"): "imx708", ControlId("ColorFilterArrangement"): 0}
        self.queued: list[_Request] = []
        self.lock = threading.Lock()
        self.configured: _CameraConfiguration | None = None

    def generate_configuration(self, roles: list[Any]) -> _CameraConfiguration:
        return _CameraConfiguration(roles, self.extra_stride)

    def configure(self, config: _CameraConfiguration) -> int:
        self.configured = config
        return 0

    def start(self, controls: Any = None) -> None:
        self.queued = []

    def stop(self) -> None:
        pass

    def create_request(self, idx: int = 0) -> _Request:
        return _Request()

    def queue_request(self, request: _Request) -> None:
        with self.lock:
            self.queued.append(request)

    def release(self) -> None:
        pass


# --- pictures in each memory layout ---------------------------------------------------------

LUMA = {"Rec601": (0.299, 0.114), "Rec709": (0.2126, 0.0722), "Rec2020": (0.2627, 0.0593)}


def rgb_to_yuv_planes(rgb: np.ndarray, encoding: str, full_range: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y (h x w), U, V (h/2 x w/2, the mean of each 2 x 2 block) of an RGB picture."""
    kr, kb = LUMA[encoding]
    f = rgb.astype(np.float64)
    y = kr * f[..., 0] + (1 - kr - kb) * f[..., 1] + kb * f[..., 2]
    cb = (f[..., 2] - y) / (2 * (1 - kb))
    cr = (f[..., 0] - y) / (2 * (1 - kr))
    h, w = y.shape
    sub = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
    if full_range:
        planes = (y, sub(cb) + 128, sub(cr) + 128)
    else:
        planes = (16 + y * 219 / 255, 128 + sub(cb) * 224 / 255, 128 + sub(cr) * 224 / 255)
    return tuple(np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in planes)  # type: ignore[return-value]


def pack(fmt: str, width: int, height: int, stride: int, rng: np.random.Generator, *, rgb: np.ndarray | None = None,
         planes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> bytes:
    """A camera buffer: ``rgb`` (or YUV ``planes``) in ``fmt``'s memory layout, ``stride`` bytes a
    row, every padding byte (and X byte) random junk."""
    junk = lambda n: rng.integers(0, 256, n, dtype=np.uint8)  # noqa: E731
    if fmt == "YUV420":
        assert planes is not None
        buf = junk(stride * height * 3 // 2)
        y, u, v = planes
        buf[: stride * height].reshape(height, stride)[:, :width] = y
        q = (height // 2) * (stride // 2)
        base = stride * height
        buf[base: base + q].reshape(height // 2, stride // 2)[:, : width // 2] = u
        buf[base + q: base + 2 * q].reshape(height // 2, stride // 2)[:, : width // 2] = v
        return buf.tobytes()
    assert rgb is not None
    bpp = BYTES_PER_PIXEL[fmt]
    buf = junk(stride * height)
    rows = buf.reshape(height, stride)[:, : width * bpp].reshape(height, width, bpp)
    order = [2, 1, 0] if fmt in ("RGB888", "XRGB8888") else [0, 1, 2]  # RGB888: B, G, R in memory
    rows[..., :3] = rgb[..., order]
    return buf.tobytes()


class _NullDisplay:
    def render_request(self, request: Any) -> None:
        pass


class StandInPicamera2(Picamera2):  # type: ignore[misc,valid-type]
    """``picamera2.Picamera2`` with a stand-in libcamera camera behind it.

    ``scenes``: RGB pictures the sensor sees in turn, one per frame (frame k shows scene
    k % len(scenes)); each stream gets the scene resized to its size (Pillow bilinear, the
    "ISP") in its layout and colour space. ``noise=True`` fills each stream with random
    pixels (YUV420: random Y, U and V bytes) instead, three different frames in turn. ``fps``: frames the sensor completes a
    second. ``platform``: "vc4" (Pi 4: lores must be YUV) or "pisp" (Pi 5).

    Counters: ``delivered`` (frames completed), ``consumed`` (completed requests the application
    took), ``handed`` (those requests, to check they were released). ``truth[(stream, k)]`` is
    what frame k holds: ("rgb", pixels) or ("yuv", (Y, U, V)).
    """

    def __init__(self, scenes: list[np.ndarray] | None = None, fps: float = 30.0, platform: str = "pisp",
                 extra_stride: int = 0, noise: bool = False, seed: int = 0, frames: int | None = None):
        Picamera2.platform = Platform.VC4 if platform == "vc4" else Platform.PISP
        # What Picamera2.__init__ and _initialize_camera set up, without libcamera's camera manager.
        self._preview = None
        self.request_lock = threading.Lock()
        self._requestslock = threading.Lock()
        self._requests: list[Any] = []
        self.verbose_console = 0
        self._reset_flags()
        self.helpers = Helpers(self)
        self.camera = _Camera(extra_stride)
        self.camera_idx = 0
        self.is_open = True
        self.camera_properties_ = {"Model": "imx708", "ColorFilterArrangement": 0}
        self._raw_modes = [{"format": "SBGGR10_CSI2P", "size": s} for s in ((1536, 864), (2304, 1296), (4608, 2592))]
        self.sensor_resolution = (4608, 2592)
        self.sensor_format = "SBGGR10_CSI2P"
        self.allocator = MemoryAllocator()
        self.scenes = scenes or []
        self.noise = noise
        self.fps = fps
        self.rng = np.random.default_rng(seed)
        self.delivered = self.consumed = 0
        self.handed: list[Any] = []
        self.truth: dict[tuple[str, int], tuple[str, Any]] = {}
        self._packed: dict[tuple[str, int], bytes] = {}
        self._wake = threading.Event()
        self._running = False
        self._thread: threading.Thread | None = None
        self.closed = False
        self.stop_after = frames  # the sensor stops after this many (a camera that drops off the bus)

    # -- the event loop's part ------------------------------------------------------------

    def _run_process_requests(self) -> None:
        self._wake.set()  # picamera2 writes to a pipe that wakes its event loop

    def start(self, config: Any = None, show_preview: bool = False) -> None:
        if config is not None:
            self.configure(config)
        self.start_()
        self._running = True
        self._thread = threading.Thread(target=self._sensor, daemon=True, name="standin-sensor")
        self._thread.start()

    def _frame_bytes(self, name: str, k: int) -> bytes:
        conf = self.camera_config[name]
        n = k % (3 if self.noise else len(self.scenes))  # noise: three different frames in turn
        key = (name, n)
        if key not in self._packed:
            fmt, (w, h), stride = conf["format"], conf["size"], conf["stride"]
            if self.noise:
                rgb = self.rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            else:
                rgb = np.asarray(Image.fromarray(self.scenes[n]).resize((w, h), Image.BILINEAR))
            if fmt == "YUV420":
                cs = self.camera_config["colour_space"]
                if self.noise:
                    planes = tuple(self.rng.integers(0, 256, s, dtype=np.uint8)
                                   for s in ((h, w), (h // 2, w // 2), (h // 2, w // 2)))
                else:
                    planes = rgb_to_yuv_planes(rgb, cs.ycbcrEncoding.name, cs.range.name == "Full")
                self.truth[key] = ("yuv", planes)
                self._packed[key] = pack(fmt, w, h, stride, self.rng, planes=planes)  # type: ignore[arg-type]
            else:
                self.truth[key] = ("rgb", rgb)
                self._packed[key] = pack(fmt, w, h, stride, self.rng, rgb=rgb)
        return self._packed[key]

    def _sensor(self) -> None:
        """Complete one queued request every 1/fps s (none queued: the frame is lost, as when an
        application holds every buffer), then run picamera2's process_requests."""
        period = 1.0 / self.fps
        next_t = time.monotonic()
        display = _NullDisplay()
        k = 0
        while self._running:
            if self._wake.wait(max(0.0, next_t - time.monotonic())):
                self._wake.clear()
                if time.monotonic() < next_t:
                    self.process_requests(display)  # a job arrived and a request is held
                    continue
            if not self._running:
                break
            next_t += period
            if self.stop_after is not None and k >= self.stop_after:
                continue
            with self.camera.lock:
                req = self.camera.queued.pop(0) if self.camera.queued else None
            if req is None:
                k += 1
                continue
            for stream, fb in req.buffers.items():
                name = next(n for n, s in self.stream_map.items() if s is stream)
                data = self._frame_bytes(name, k) if name != "raw" else b""
                if data:
                    self.allocator.mapped_buffers[fb][: len(data)] = data
            req.metadata = {libcamera.controls.SensorTimestamp: time.monotonic_ns(),
                            libcamera.controls.ExposureTime: 10000, ControlId("FrameSequence"): k}
            with self._requestslock:
                self._requests.append(CompletedRequest(req, self))
            self.delivered += 1
            k += 1
            self.process_requests(display)

    # -- counting what the application takes ----------------------------------------------

    def capture_request_(self) -> Any:
        done, req = super().capture_request_()
        if done:
            self.consumed += 1
            self.handed.append(req)
        return done, req

    def capture_array_(self, name: str) -> Any:
        had = len(self.completed_requests)
        done, result = super().capture_array_(name)
        if done and had:
            self.consumed += 1
        return done, result

    def capture_arrays_and_metadata_(self, names: list[str]) -> Any:
        done, result = super().capture_arrays_and_metadata_(names)
        if done:
            self.consumed += 1
        return done, result

    def close(self) -> None:
        self._running = False
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.started = False
        self.stop_count += 1
        with self.lock:
            for r in self.completed_requests:
                r.release()
            self.completed_requests = []
        self.camera = None
        self.is_open = False
        self.closed = True

    def unreleased(self) -> int:
        """Requests the application took and has not released."""
        return sum(1 for r in self.handed if r.ref_count > 0)
