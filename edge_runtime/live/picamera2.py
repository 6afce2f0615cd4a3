"""The Raspberry Pi camera through picamera2 (``--source picamera2``): one camera request per
frame, a main stream for display and a lores stream for inference sized to the model's input by
the ISP (then the CPU does no resize), or with ``isp_resize=False`` the main stream resized in
software by the bundle's method, for parity with training. picamera2 is imported only in ``open``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from edge_runtime.live.frames import Frame, Source, SourceError
from edge_runtime.model.preprocess import CROP_MODES, DEFAULT_RESIZE, RESIZE_METHODS, check_choice, resize
from edge_runtime.system.machine import is_pi4_or_older

# What picamera2 hands over (its picamera2/request.py, Helpers._make_array_shared, and
# picamera2.py), which this adapter must follow:
# - RGB888/BGR888 arrays are (h, w, 3) and XRGB8888/XBGR8888 (h, w, 4): the row padding is
#   sliced off. "RGB888" is B, G, R in memory and "XRGB8888" is B, G, R, X.
# - A YUV420 array is (h * 3 // 2, stride) with the padding left in: h rows of Y, each `stride`
#   bytes, then the U plane and the V plane, each h/2 rows of stride/2 bytes.
# - create_video_configuration() picks limited-range SMPTE 170M (BT.601) below 1280x720 and
#   limited-range Rec.709 at or above, from the main stream's size; preview and still
#   configurations default to full-range sYCC. configure() works on a copy of the dict it is
#   given and writes the colour space it settled on into that copy: read it back with
#   camera_configuration().
# - capture_array(name) takes one camera request per call, so two calls are two frames;
#   capture_request() gives one request whose make_array() for every stream is the same frame,
#   and which must be released to go back to the camera.

# The index list picks R, G, B out of each layout.
PICAMERA2_ORDER: dict[str, list[int]] = {
    "RGB888": [2, 1, 0],
    "BGR888": [0, 1, 2],
    "XRGB8888": [2, 1, 0],
    "XBGR8888": [0, 1, 2],
}
PICAMERA2_FORMATS: tuple[str, ...] = (*PICAMERA2_ORDER, "YUV420")

# Luma weights (Kr, Kb) of libcamera's YcbcrEncoding values (ITU-R BT.601, BT.709, BT.2020).
_LUMA_WEIGHTS: dict[str, tuple[float, float]] = {"Rec601": (0.299, 0.114), "Rec709": (0.2126, 0.0722),
                                                  "Rec2020": (0.2627, 0.0593)}


def _enum_name(value: Any) -> str:
    """``ColorSpace.Range.Limited`` -> ``"Limited"`` (libcamera's enums carry ``.name``)."""
    name = getattr(value, "name", None)
    return str(name) if name is not None else str(value).rsplit(".", 1)[-1]


@dataclass(frozen=True)
class YCbCr:
    """How a YUV stream's numbers become RGB: the matrix (libcamera's ``ycbcrEncoding``) and the
    range (``Full``: 0..255; ``Limited``: Y 16..235, Cb/Cr 16..240)."""

    encoding: str  # "Rec601", "Rec709" or "Rec2020"
    full_range: bool
    name: str = ""  # the colour space as libcamera prints it, for reports

    @staticmethod
    def of(colour_space: Any) -> "YCbCr":
        """From libcamera's ``ColorSpace`` (``config["colour_space"]`` after ``configure()``)."""
        if colour_space is None:
            raise SourceError("the camera reports no colour space for its YUV420 stream; "
                              "use an RGB lores format (lores_format='RGB888')")
        encoding = _enum_name(colour_space.ycbcrEncoding)
        rng = _enum_name(colour_space.range)
        if encoding not in _LUMA_WEIGHTS or rng not in ("Full", "Limited"):
            raise SourceError(f"the camera's colour space {colour_space} (YCbCr {encoding}, range {rng}) is not one "
                              f"this adapter decodes; use an RGB lores format (lores_format='RGB888')")
        return YCbCr(encoding, rng == "Full", str(colour_space))

    def describe(self) -> str:
        return (f"{self.name + ': ' if self.name else ''}{'full' if self.full_range else 'limited'}-range "
                f"{self.encoding.replace('Rec601', 'BT.601').replace('Rec709', 'BT.709').replace('Rec2020', 'BT.2020')}")


def yuv420_planes(yuv: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y (height x width), U and V (height/2 x width/2) views of picamera2's YUV420 array, an
    ``(height * 3 // 2, stride)`` array whose rows keep the stride's padding."""
    rows, stride = yuv.shape
    if rows != height * 3 // 2 or stride < width or stride % 2 or width % 2 or height % 2:
        raise SourceError(f"a YUV420 frame of shape {yuv.shape} does not fit {width}x{height}: picamera2 gives "
                          "(height * 3 // 2, stride) with even sizes")
    flat = np.ascontiguousarray(yuv).reshape(-1)
    half = stride // 2
    plane = (height // 2) * half
    u = flat[height * stride: height * stride + plane].reshape(height // 2, half)
    v = flat[height * stride + plane: height * stride + 2 * plane].reshape(height // 2, half)
    return yuv[:height, :width], u[:, : width // 2], v[:, : width // 2]


def yuv420_to_rgb(yuv: np.ndarray, width: int, height: int, ycbcr: YCbCr) -> np.ndarray:
    """picamera2's YUV420 array -> height x width x 3 RGB uint8, by the matrix and range of the
    stream's colour space; each chroma sample covers its 2 x 2 block of pixels."""
    y, u, v = yuv420_planes(yuv, width, height)
    kr, kb = _LUMA_WEIGHTS[ycbcr.encoding]
    kg = 1.0 - kr - kb
    if ycbcr.full_range:
        y_scale, y_offset, c_scale = 1.0, 0.0, 1.0
    else:
        y_scale, y_offset, c_scale = 255.0 / 219.0, 16.0, 255.0 / 224.0
    cb = (u.astype(np.float32) - np.float32(128.0)) * np.float32(c_scale)
    cr = (v.astype(np.float32) - np.float32(128.0)) * np.float32(c_scale)
    # The chroma terms at half resolution, then broadcast over each 2 x 2 block.
    chroma = np.stack([np.float32(2 * (1 - kr)) * cr,
                       np.float32(-2 * kb * (1 - kb) / kg) * cb - np.float32(2 * kr * (1 - kr) / kg) * cr,
                       np.float32(2 * (1 - kb)) * cb], axis=-1)
    luma = (y.astype(np.float32) - np.float32(y_offset)) * np.float32(y_scale)
    rgb = luma.reshape(height // 2, 2, width // 2, 2, 1) + chroma[:, None, :, None, :]
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(height, width, 3)


def picamera2_to_rgb(array: np.ndarray, fmt: str, width: int, height: int, ycbcr: YCbCr | None = None) -> np.ndarray:
    """A picamera2 ``make_array`` result in ``fmt`` -> height x width x 3 RGB (a copy). YUV420
    needs the stream's ``ycbcr``."""
    if fmt == "YUV420":
        if ycbcr is None:
            raise SourceError("a YUV420 frame needs its colour space to be decoded")
        return yuv420_to_rgb(array, width, height, ycbcr)
    if fmt not in PICAMERA2_ORDER:
        raise SourceError(f"picamera2 format {fmt!r} is not supported; use one of {', '.join(PICAMERA2_FORMATS)}")
    return np.ascontiguousarray(array[:height, :width, PICAMERA2_ORDER[fmt]])


def _even(n: int) -> int:
    return n + n % 2


@dataclass(frozen=True)
class _Stream:
    """One configured picamera2 stream, as ``configure()`` left it."""

    name: str
    format: str
    width: int
    height: int
    stride: int
    ycbcr: YCbCr | None

    def to_rgb(self, array: np.ndarray) -> np.ndarray:
        return picamera2_to_rgb(array, self.format, self.width, self.height, self.ycbcr)

    def describe(self) -> str:
        cs = f", {self.ycbcr.describe()}" if self.ycbcr else ""
        return f"{self.name} {self.format} {self.width}x{self.height} (stride {self.stride}{cs})"


class Picamera2Source(Source):
    """The Pi camera through picamera2: one ``capture_request()`` per frame, both streams made
    from that one request and the request released at once.

    With ``isp_resize`` (the default) a lores stream at the model's input size feeds the model
    and the main stream (``display``) the web view: the CPU does no resize, but the ISP's
    filter is not TensorFlow's bilinear. With ``isp_resize=False`` only the main stream is
    taken, at least the model's size, and resized in software by ``resize`` and ``crop`` (the
    bundle's), as in training. ``colour_space="sycc"`` asks for full-range sYCC instead of the
    video default (limited range) and checks that the camera took it. ``factory`` builds the
    camera object (``picamera2.Picamera2``; tests pass a stand-in). ``path`` says, after
    ``open()``, which path runs.
    """

    name = "picamera2"
    live = True

    def __init__(self, size: tuple[int, int], display: tuple[int, int] = (640, 480), lores_format: str | None = None,
                 main_format: str = "RGB888", factory: Callable[[], Any] | None = None, isp_resize: bool = True,
                 resize: str = DEFAULT_RESIZE, crop: str = "none", colour_space: str | None = None,
                 timeout: float = 5.0):
        self.width, self.height = size
        self.display_size = display
        self.lores_format = lores_format or ("YUV420" if is_pi4_or_older() else "RGB888")
        self.main_format = main_format
        self.factory = factory
        self.isp_resize = isp_resize
        self.resize_method = check_choice(resize, RESIZE_METHODS, "resize method")
        self.crop = check_choice(crop, CROP_MODES, "crop")
        if colour_space not in (None, "sycc"):
            raise ValueError(f"unknown colour space {colour_space!r}; valid: sycc (or None for the video default)")
        self.colour_space = colour_space
        self.timeout = timeout
        self.cam: Any = None
        self.n = 0
        self.path = ""  # which path runs, after open()
        self.software_resize = not isp_resize
        self.lores: _Stream | None = None
        self.main: _Stream | None = None

    def _check_format(self, fmt: str, what: str) -> None:
        if fmt not in PICAMERA2_FORMATS:
            raise SourceError(f"picamera2 {what} format {fmt!r} is not supported; use one of "
                              f"{', '.join(PICAMERA2_FORMATS)}")

    def open(self) -> None:
        self._check_format(self.main_format, "main")
        if self.isp_resize:
            self._check_format(self.lores_format, "lores")
        factory = self.factory
        if factory is None:
            try:
                from picamera2 import Picamera2  # type: ignore[import-not-found]
            except ImportError as e:
                raise SourceError("picamera2 is not importable; on Raspberry Pi OS: sudo apt install python3-picamera2 "
                                  "and a venv with --system-site-packages") from e
            factory = Picamera2
        try:
            self.cam = factory()
            self._configure()
            self.cam.start()
        except SourceError:
            self.close()
            raise
        except Exception as e:  # IndexError/RuntimeError from libcamera when no camera is attached
            self.close()
            raise SourceError(f"the Pi camera cannot start ({type(e).__name__}: {e}); is a camera connected "
                              "and enabled?") from None

    def _configure(self) -> None:
        model_w, model_h = _even(self.width), _even(self.height)
        dw, dh = self.display_size
        # The main stream is the display, and must be at least as large as what the model needs.
        main = {"size": (_even(max(dw, model_w)), _even(max(dh, model_h))), "format": self.main_format}
        lores = {"size": (model_w, model_h), "format": self.lores_format} if self.isp_resize else None
        kwargs: dict[str, Any] = {}
        if self.colour_space == "sycc":
            import libcamera  # type: ignore[import-not-found]  # present wherever picamera2 runs

            kwargs["colour_space"] = libcamera.ColorSpace.Sycc()
        # create_video_configuration aligns the sizes (align_stream, optimal=False: even numbers).
        self.cam.configure(self.cam.create_video_configuration(main=main, lores=lores, **kwargs))
        conf = self.cam.camera_configuration()  # what configure() settled on, colour space included
        ycbcr = None
        if "YUV420" in (conf["main"]["format"], (conf.get("lores") or {}).get("format")):
            ycbcr = YCbCr.of(conf.get("colour_space"))
            if self.colour_space == "sycc" and not (ycbcr.full_range and ycbcr.encoding == "Rec601"):
                raise SourceError(f"asked the camera for sYCC (full-range BT.601) but it configured {ycbcr.describe()}")

        def stream(name: str) -> _Stream:
            s = conf[name]
            w, h = s["size"]
            return _Stream(name, s["format"], w, h, int(s.get("stride") or 0), ycbcr if s["format"] == "YUV420" else None)

        self.main = stream("main")
        self.lores = stream("lores") if self.isp_resize else None
        if self.lores is not None:
            exact = (self.lores.width, self.lores.height) == (self.width, self.height)
            self.software_resize = not exact
            self.path = f"ISP resize: {self.lores.describe()} -> the model"
            if not exact:  # an odd model size, or a size the ISP adjusted: finish in software, say so once
                self.path += (f", then {self.resize_method} in software to {self.width}x{self.height} (the ISP "
                              "gives only even sizes here)")
        else:
            self.path = (f"software resize: {self.main.describe()} -> {self.resize_method}"
                         f"{', centre crop' if self.crop == 'center' else ''} to {self.width}x{self.height} "
                         "(--isp-resize off)")

    def read(self) -> Frame | None:
        if self.main is None:
            raise SourceError("the Pi camera is not open; call open() first")
        names = ["lores", "main"] if self.lores is not None else ["main"]
        request = self._next_request()
        try:  # make_array copies, so the request goes back to the camera before any conversion
            arrays = [request.make_array(n) for n in names]
            metadata = request.get_metadata()
        except Exception as e:
            raise SourceError(f"the Pi camera delivered an unreadable frame ({type(e).__name__}: {e})") from None
        finally:
            request.release()
        t = capture_time(metadata.get("SensorTimestamp"))
        display = self.main.to_rgb(arrays[-1])
        if self.lores is not None:
            rgb = self.lores.to_rgb(arrays[0])
            if self.software_resize:
                rgb = resize(rgb, self.height, self.width, self.resize_method)  # type: ignore[arg-type]
        else:
            rgb = resize(display, self.height, self.width, self.resize_method, self.crop)  # type: ignore[arg-type]
        f = Frame(np.ascontiguousarray(rgb), t, self.n, display)
        self.n += 1
        return f

    def _next_request(self) -> Any:
        """The next completed request, waiting at most ``timeout`` seconds. picamera2 keeps a job
        whose wait timed out in its queue: it would take the next frame that comes and hold that
        request (a buffer) with nobody to release it, and close() would queue its stop behind it
        and wait for a frame forever (picamera2's cancel_all_and_flush exists for this). So a
        timed-out job is cancelled, and a frame it got in the meantime is used (it came late, not
        never)."""
        job = self.cam.capture_request(wait=False)
        try:
            return self.cam.wait(job, timeout=self.timeout)
        except Exception as e:
            first = e
        cancel = getattr(self.cam, "cancel_all_and_flush", None)  # picamera2 0.3.13 and later
        if cancel is not None:
            try:
                cancel()
            except Exception:  # noqa: BLE001 - the camera is failing: what counts is the error below
                pass
        try:  # cancelled: raises at once; finished just before the cancel: its request
            return job.get_result(timeout=self.timeout)
        except Exception:
            raise SourceError(f"the Pi camera stopped delivering frames ({type(first).__name__}: {first})") from None

    def close(self) -> None:
        if self.cam is not None:
            try:
                self.cam.close()
            finally:
                self.cam = None


def capture_time(sensor_ns: Any) -> float:
    """``time.time()`` of the frame's ``SensorTimestamp`` (nanoseconds on the monotonic clock,
    which picamera2 compares with ``time.monotonic_ns()``); now when the request has none."""
    now = time.time()
    if not isinstance(sensor_ns, int):
        return now
    age = (time.monotonic_ns() - sensor_ns) / 1e9
    return now - age if 0.0 <= age < 60.0 else now
