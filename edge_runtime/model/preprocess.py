"""The preprocessing contract: any image becomes RGB uint8, is resized once by a named method,
and enters the model as its input type with no float arithmetic where the quantization allows.

Plain numpy and Pillow; nothing here touches an interpreter.
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence, Union, get_args

import numpy as np
from PIL import Image, UnidentifiedImageError

from edge_runtime.errors import ImageError
from edge_runtime.system.limits import MAX_PIXELS, open_regular

ResizeMethod = Literal["bilinear", "bilinear-legacy", "nearest", "pil-bilinear"]
RESIZE_METHODS: tuple[str, ...] = get_args(ResizeMethod)
DEFAULT_RESIZE: ResizeMethod = "bilinear"

CropMode = Literal["none", "center"]
CROP_MODES: tuple[str, ...] = get_args(CropMode)

# "full": every pixel of the file, then the resize. "draft": a JPEG at least twice the model's
# size in both directions is decoded at 1/2, 1/4 or 1/8 scale inside libjpeg's inverse DCT
# (Pillow's ``Image.draft``; the largest scale that keeps it at least the model's size), then
# resized. Part of the contract: training, calibration and the device decode the same way.
DecodeMode = Literal["full", "draft"]
DECODE_MODES: tuple[str, ...] = get_args(DecodeMode)
DEFAULT_DECODE: DecodeMode = "full"  # what bundles without a ``decode`` key were made with

ImageLike = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})


def iter_images(paths: Sequence[str]) -> Iterator[str]:
    """Files as given; directories walked (sorted) for image files."""
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if Path(f).suffix.lower() in IMAGE_SUFFIXES:
                        yield os.path.join(root, f)
        else:
            yield p


def check_choice(value: str, valid: tuple[str, ...], what: str) -> str:
    """Return ``value`` if it is one of ``valid``, else raise ValueError listing them."""
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


# --- decoding ------------------------------------------------------------------------------


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    """Pillow image in any mode -> HxWx3 uint8 RGB (EXIF orientation already applied)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit (or 32-bit) single channel: scale to 8 bits, never clip.
        # in the array's own type (uint16 for I;16: no clip needed), not int64: a 16 M-pixel picture
        # took two 128 MB temporaries
        a = np.asarray(im)
        if im.mode == "F":
            with np.errstate(invalid="ignore"):  # NaN pixels become 0, without numpy's warning
                a8 = np.clip(np.nan_to_num(a, nan=0.0), 0, 255).astype(np.uint8)
        elif a.dtype.kind == "u":
            a8 = (a >> 8).astype(np.uint8) if a.max() > 255 else a.astype(np.uint8)
        else:
            a = np.clip(a, 0, 65535)
            a8 = (a >> 8).astype(np.uint8) if a.max() > 255 else a.astype(np.uint8)
        return np.repeat(a8[:, :, None], 3, axis=2)
    if im.mode == "P":
        im = im.convert("RGBA")  # keeps palette transparency without Pillow's warning
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im)


class _Pixels:
    """An array interface over Pillow's own memory for an RGB image (``_rgbx_view``); holds the
    Arrow capsule, whose release (when this is collected) frees Pillow's hold on the memory."""

    def __init__(self, capsule: object, address: int, height: int, width: int):
        self.capsule = capsule
        self.__array_interface__ = {"version": 3, "shape": (height, width, 4), "typestr": "|u1",
                                    "data": (address, True)}


def _rgbx_view(im: Image.Image) -> np.ndarray | None:
    """The pixels of a loaded RGB image as an HxWx4 read-only view of Pillow's own memory (RGB
    and a pad byte a pixel, as Pillow keeps them), through the Arrow C data interface (Pillow >=
    11.2), or None (older Pillow, another mode, memory in more than one block).

    ``np.asarray(im)`` copies the pixels with ``tobytes``, which packs them to 3 bytes a pixel
    holding Python's GIL: a quarter of the time that images prepared in two threads waited on
    each other (pipeline.py). The view costs no copy; the bilinear resize reads 4-channel rows."""
    # Rows padded to an alignment (PILLOW_ALIGNMENT) are exported by Pillow 11.2-12 as if they were
    # not (13 refuses them): only unpadded memory is read.
    if im.mode != "RGB" or not hasattr(im, "__arrow_c_array__") or getattr(Image.core, "get_alignment", lambda: 1)() != 1:
        return None
    try:
        _, capsule = im.__arrow_c_array__()
    except (ValueError, OSError, MemoryError):
        return None
    address_of, arrow_array = _arrow()
    array = arrow_array.from_address(address_of(capsule, b"arrow_array"))
    width, height = im.size
    # Pillow's RGB: a fixed-size list of 4 bytes a pixel, one child array whose buffer 1 holds them.
    if array.length != width * height or array.n_children != 1:
        return None
    child = array.children[0].contents
    if child.length != width * height * 4 or child.offset != 0 or child.n_buffers != 2 or not child.buffers[1]:
        return None
    view = np.asarray(_Pixels(capsule, child.buffers[1], height, width))
    # the first and last pixels where Pillow has them, or the copy instead
    if tuple(view[0, 0, :3]) != im.getpixel((0, 0)) or tuple(view[-1, -1, :3]) != im.getpixel((width - 1, height - 1)):
        return None
    return view


@functools.lru_cache(maxsize=1)
def _arrow() -> tuple[Callable[[object, bytes], int], type]:
    """CPython's PyCapsule_GetPointer and the Arrow C data interface's ``struct ArrowArray`` (its
    leading fields), by ctypes, loaded on the first use (a folder's first image)."""
    import ctypes

    get = ctypes.pythonapi["PyCapsule_GetPointer"]  # a function object of our own: its types are set here only
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]

    class ArrowArray(ctypes.Structure):
        pass

    ArrowArray._fields_ = [("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
                           ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
                           ("buffers", ctypes.POINTER(ctypes.c_void_p)),
                           ("children", ctypes.POINTER(ctypes.POINTER(ArrowArray)))]
    return get, ArrowArray


_TURNED = (5, 6, 7, 8)  # EXIF orientations with a 90 degree turn


def _upright(im: Image.Image) -> Image.Image:
    """EXIF orientation applied; ``im`` itself when it has none (``exif_transpose`` would copy it)."""
    if im.getexif().get(0x0112, 1) == 1:
        return im
    from PIL import ImageOps  # only for a turned photo: it loads Pillow's palette modules (0.6 MB on a Pi)

    return ImageOps.exif_transpose(im)


def load_image(source: ImageLike) -> np.ndarray:
    """Decode ``source`` to an HxWx3 uint8 RGB array.

    Accepts a path, a Pillow image or a numpy array (HxW gray, HxWx3 RGB, HxWx4 RGBA/RGBX,
    uint8). Pillow images and files of any mode (grayscale, palette, RGBA, CMYK, 16-bit) are
    converted; EXIF orientation is applied. A file that is not a regular file is refused unopened,
    one above the pixel limit before it is decoded. Raises ImageError naming the file.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        return _pil_to_rgb(_upright(source))
    return _decode_file(os.fspath(source), None)


def load_image_for(source: ImageLike, height: int, width: int, decode: DecodeMode = DEFAULT_DECODE) -> np.ndarray:
    """``load_image``, for a model of ``height`` x ``width``: with ``decode="draft"`` a JPEG file
    is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps it at least that size in
    both directions (after its EXIF rotation), so that a 640x480 photo for a 224 model decodes
    as 320x240, about three times faster. Arrays, Pillow images and other formats decode fully."""
    check_choice(decode, DECODE_MODES, "decode mode")
    return _load_for(source, height, width, decode)


def _load_for(source: ImageLike, height: int, width: int, decode: DecodeMode, rgbx: bool = False) -> np.ndarray:
    """``load_image_for`` (``decode`` checked); ``rgbx``: a file's RGB picture may come as HxWx4,
    Pillow's own pixels (``_rgbx_view``)."""
    if isinstance(source, (np.ndarray, Image.Image)):
        return load_image(source)
    return _decode_file(os.fspath(source), (width, height) if decode == "draft" else None, rgbx)


def _decode_file(path: str, draft_to: tuple[int, int] | None, rgbx: bool = False) -> np.ndarray:
    """Decode one image file (at a DCT scale for ``draft_to`` = (width, height), JPEG only).
    ``rgbx``: an RGB picture may come as HxWx4, a view of Pillow's own pixels (``_rgbx_view``)."""
    limit = MAX_PIXELS.get()
    fd = open_regular(path, "image", ImageError)  # a FIFO or a device is refused unopened
    try:
        # No warning filters are set here: they belong to the process, and threads decoding side by
        # side (a folder, pipeline.py) each restoring the ones it found left them changed for good.
        # Our own pixel limit decides (``_within_pixels``); Pillow's warning above its
        # Image.MAX_IMAGE_PIXELS follows the application's filters (the command line ignores
        # Pillow's warnings), and where they make it an error it is this image's error.
        with os.fdopen(fd, "rb") as f:
            with Image.open(f) as im:
                w, h = im.size  # the file's own size: a scaled JPEG decode still reads every coefficient
                _below_pillows_limit(w * h, path, limit)
                if draft_to is not None and im.format == "JPEG":
                    dw, dh = draft_to
                    im.draft(None, (dh, dw) if im.getexif().get(0x0112, 1) in _TURNED else (dw, dh))
                _within_pixels(im, path, limit)
                with _BIG_DECODE if w * h > BIG_DECODE_PIXELS else contextlib.nullcontext():
                    im.load()
                    im = _upright(im)
                    view = _rgbx_view(im) if rgbx else None
                    return _pil_to_rgb(im) if view is None else view
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: refused as a likely decompression bomb ({e}); that is Pillow's own ceiling "
                         "(twice PIL.Image.MAX_IMAGE_PIXELS), which EDGECLS_MAX_PIXELS does not raise") from None
    except Image.DecompressionBombWarning as e:  # this process makes warnings errors
        raise ImageError(f"{path}: refused as a likely decompression bomb ({e}); Pillow warned, and this "
                         "process makes warnings errors") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read (jpg, png, bmp, gif, webp, ...)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, MemoryError) as e:
        raise ImageError(f"{path}: cannot decode image ({e}); the file may be truncated or corrupt") from None
    except Warning as e:  # corrupt EXIF, a truncated TIFF strip, ... where this process makes warnings errors
        raise ImageError(f"{path}: cannot decode image ({type(e).__name__}: {e}); the file may be corrupt") from None


# Threads decoding a folder side by side (pipeline.py) decode one large picture at a time: two at
# the pixel limit at once would double the peak memory (a 4000x4000 16-bit PNG: ~200 MB alone).
BIG_DECODE_PIXELS = 4_000_000
_BIG_DECODE = threading.Lock()


def _below_pillows_limit(pixels: int, path: str, limit: int) -> None:
    """Refuse what Pillow only warns about (above Image.MAX_IMAGE_PIXELS, 89 M pixels), unless the
    user raised our limit above Pillow's on purpose: a JPEG that large, even decoded at 1/8 scale,
    holds every coefficient of the whole picture (a 3 MB progressive file: 660 MB)."""
    pillow = Image.MAX_IMAGE_PIXELS
    if pillow and pixels > pillow and limit <= pillow:
        raise ImageError(f"{path}: {pixels:,} pixels, above Pillow's decompression-bomb limit of {pillow:,}: "
                         f"refused as a likely decompression bomb; {MAX_PIXELS.hint()}")


def _within_pixels(im: Image.Image, path: str, limit: int) -> None:
    """Refuse an image of more than ``limit`` pixels before it is decoded; a JPEG above it is
    decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling) when that brings it within, since
    no classifier input comes near that size."""
    w, h = im.size
    if w * h <= limit:
        return
    if im.format == "JPEG":
        for f in (2, 4, 8):
            if -(-w // f) * -(-h // f) <= limit:
                im.draft(im.mode, (w // f, h // f))
                break
        if im.size[0] * im.size[1] <= limit:
            return
    raise ImageError(f"{path}: {w}x{h} = {w * h:,} pixels, above the limit of {limit:,} (a decompression bomb, "
                     f"or a picture too large to decode here); {MAX_PIXELS.hint()}")


def _array_to_rgb(a: np.ndarray) -> np.ndarray:
    if a.dtype != np.uint8:
        raise ImageError(f"frame has dtype {a.dtype}; pass uint8 RGB pixels (0..255)")
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] == 3:
        return a
    if a.ndim == 3 and a.shape[2] == 4:
        return a[:, :, :3]
    if a.ndim == 3 and a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    raise ImageError(f"frame has shape {a.shape}; pass HxW, HxWx3 (RGB) or HxWx4 (RGBX) uint8")


# --- resize --------------------------------------------------------------------------------


def center_crop(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """The largest centred window of ``img`` with the aspect ratio height:width (a view)."""
    h, w = img.shape[:2]
    if h * width > w * height:  # too tall
        ch = max(1, round(w * height / width))
        top = (h - ch) // 2
        return img[top : top + ch]
    cw = max(1, round(h * width / height))
    left = (w - cw) // 2
    return img[:, left : left + cw]


def _half_pixel(in_size: int, out_size: int) -> np.ndarray:
    """Source coordinates of output pixel centres, in float32 as TensorFlow computes them."""
    scale = np.float32(in_size / out_size)
    return (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale


BAND_BYTES = 1 << 20  # the most bytes of buffers a bilinear resize works in (for a band of output rows)
_SCRATCH = threading.local()  # each thread's working memory for resizes


def _scratch() -> np.ndarray:
    """This thread's working memory for bilinear resizes: one block of BAND_BYTES, kept."""
    mem = getattr(_SCRATCH, "mem", None)
    if mem is None:
        mem = _SCRATCH.mem = np.empty(BAND_BYTES, np.uint8)
    return mem


class _BilinearPlan:
    """Index tables for one (input size -> output size) bilinear resize.

    Reproduces TensorFlow 2's ``tf.image.resize(img, size, "bilinear")`` (half-pixel centres,
    no antialiasing) bit for bit in float32 - same coordinates, same interpolation order (x
    then y: ``top = tl + (tr - tl) * x_lerp``, likewise ``bottom``, then ``top + (bottom - top)
    * y_lerp``) - and truncates to uint8. With ``half_pixel=False`` it is TensorFlow 1's
    ``resize_bilinear`` (and the TFLite op's default), the resize Coral's reference tests use.

    Separable: each source row that some output row needs is interpolated along x once (a
    gather of its left neighbours, one of its right ones), then output rows are whole-row lerps
    of two of those. A row shared by neighbouring output rows (any upscale or mild downscale,
    e.g. a DCT-scaled 320x240 JPEG to 224) is gathered and interpolated once, not twice; where
    a band's source rows are consecutive they are read in place, else gathered first. Pillow's
    own pixels (RGBX, 4 bytes) are gathered a pixel at a time as uint32 and interpolated in all
    four channels, the fourth dropped at the end: a byte gather of three channels took as long
    as all the arithmetic (320x240 RGBX to 128: 220 us against 420 us an image, same bits).

    Few numpy calls, each on many pixels: a call works through the fewest bands of output rows
    whose buffers fit ``BAND_BYTES`` (3 for a 320x240 JPEG to 128 x 128, 7 for 640x480 to 224 x
    224), 11 to 13 numpy calls a band. Every call gives Python's GIL up and takes it back, and a
    thread that wants it back while another holds it waits: preparing images in two threads
    (pipeline.py), 56 calls an image (fixed 32-row bands) kept the second core idle part of the
    time. The buffers are views of one block per thread, made on its first call and kept: made per
    call, each buffer of 128 kB or more was a fresh mapping whose every page faulted in again
    (640x480 -> 224 took twice as long). A plan keeps its per-axis tables (a few kB); calls share
    no state: threads may run one plan at once.
    """

    def __init__(self, in_h: int, in_w: int, out_h: int, out_w: int, channels: int = 3, half_pixel: bool = True):
        def axis(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            if half_pixel:
                x = _half_pixel(in_size, out_size) - np.float32(0.5)
            else:
                x = np.arange(out_size, dtype=np.float32) * np.float32(in_size / out_size)
            f = np.floor(x)
            lo = np.maximum(f, 0).astype(np.intp)
            hi = np.minimum(np.ceil(x), in_size - 1).astype(np.intp)
            return lo, hi, (x - f).astype(np.float32)

        y0, y1, yl = axis(in_h, out_h)
        x0, x1, xl = axis(in_w, out_w)
        used = np.zeros(in_h, bool)
        used[y0] = used[y1] = True
        self._rows = rows = np.flatnonzero(used)  # the source rows any output row reads, in order
        # A source of 4 channels (RGBX: Pillow's own layout; RGBA) is gathered a whole pixel (uint32)
        # at a time - a third of the elements of a byte gather - and interpolated in all four (the
        # fourth is dropped at the end); one of 3 channels a byte at a time.
        self._pixelwise = pixelwise = channels == 4
        c = 4 if pixelwise else 3
        if pixelwise:
            self._x0, self._x1 = x0, x1
        else:
            ch = np.arange(3)
            self._x0, self._x1 = (x0[:, None] * 3 + ch).reshape(-1), (x1[:, None] * 3 + ch).reshape(-1)
        self._x_lerp = np.repeat(xl, c)[None, :]
        width = out_w * c  # values in a row of interpolated pixels
        self._drop = (np.arange(out_w)[:, None] * 4 + np.arange(3)).reshape(-1) if pixelwise else None
        ry0, ry1 = np.searchsorted(rows, y0), np.searchsorted(rows, y1)  # into ``rows``
        self.shape = (out_h, out_w, 3)
        # Bands of equal height, the fewest whose buffers fit BAND_BYTES: the source rows a band
        # reads (uint8), their left and right neighbours (uint8, then float32), its tops and
        # bottoms (float32) and, for RGBX, its four-channel pixels (uint8).
        row_bytes = in_w * channels

        def bands(height: int) -> list[tuple]:
            out = []
            for a in range(0, out_h, height):
                e, first = min(a + height, out_h), int(ry0[a])
                n = int(ry1[e - 1]) + 1 - first
                # -1, or where the band's source rows start when they are consecutive rows of the
                # picture (any upscale, a downscale up to 2x): then they are read in place
                start = int(rows[first]) if rows[first + n - 1] - rows[first] == n - 1 else -1
                out.append((a, e, first, n, start, np.concatenate([ry0[a:e], ry1[a:e]]) - first, yl[a:e, None]))
            return out

        def layout(bs: list[tuple]) -> tuple[tuple, int]:
            """Where each buffer starts in the scratch memory (64-byte aligned), its size, shape and
            type; and the bytes they take."""
            most, tall = max(b[3] for b in bs), max(b[1] - b[0] for b in bs)
            gather = max((b[3] for b in bs if b[4] < 0), default=0)  # rows of the bands not read in place
            shapes = [(gather, row_bytes), (2, most, width), (2, most, width), (2 * tall, width),
                      (tall if pixelwise else 0, width)]
            kinds = (np.uint8, np.uint8, np.float32, np.float32, np.uint8)
            sizes = [int(np.prod(shape)) * np.dtype(k).itemsize for shape, k in zip(shapes, kinds)]
            starts = [sum(-(-z // 64) * 64 for z in sizes[:i]) for i in range(5)]
            return tuple(zip(starts, sizes, shapes, kinds)), starts[-1] + sizes[-1]

        n = 1
        while True:  # one band if it fits, else two, ... (one row a band at the least)
            self._bands = bands(-(-out_h // n))
            self._layout, self._bytes = layout(self._bands)
            if self._bytes <= BAND_BYTES or len(self._bands) == out_h:
                break
            n = max(n + 1, n * self._bytes // BAND_BYTES)
        self._views = threading.local()

    def _buffers(self) -> list[np.ndarray]:
        """Views of this thread's working memory (``_scratch``; a fresh block for the call where
        even one-row bands need more): the source rows a band gathers, their left and right
        neighbours (uint8, then float32), the band's tops and bottoms, its RGBX pixels. Made once
        a thread."""
        views = getattr(self._views, "views", None)
        if views is None:
            if self._bytes > BAND_BYTES:  # a picture some 100,000 pixels wide, in or out: not kept
                mem = np.empty(self._bytes, np.uint8)
                return [mem[a:a + z].view(t).reshape(shape) for a, z, shape, t in self._layout]
            mem = _scratch()
            views = self._views.views = [mem[a:a + z].view(t).reshape(shape) for a, z, shape, t in self._layout]
        return views

    def __call__(self, img: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty(self.shape, np.uint8)
        elif out.dtype != np.uint8 or not out.flags.c_contiguous:  # written through a reshape below
            out[...] = self(img)
            return out
        src, dst = img.reshape(img.shape[0], -1), out.reshape(self.shape[0], -1)
        if self._pixelwise and not src.view(np.uint32).flags.aligned:  # uint32 reads: a copy is aligned
            src = src.copy()
        rows, gathered, lr, y, rgbx = self._buffers()
        for a, e, first, n, start, y01, y_lerp in self._bands:
            # ndarray.take, not np.take (a Python wrapper: its time holds the GIL); mode="wrap": the
            # indices are in range by construction, and "raise" would buffer ``out``
            if start >= 0:
                read = src[start:start + n]
            else:
                read = rows[:n]
                src.take(self._rows[first:first + n], axis=0, out=read, mode="wrap")
            picked = read.view(np.uint32) if self._pixelwise else read
            left, right = gathered[0, :n], gathered[1, :n]
            picked.take(self._x0, axis=1, out=left.view(picked.dtype), mode="wrap")
            picked.take(self._x1, axis=1, out=right.view(picked.dtype), mode="wrap")
            np.copyto(lr[:, :n], gathered[:, :n])
            left, right = lr[0, :n], lr[1, :n]
            np.subtract(right, left, out=right)
            np.multiply(right, self._x_lerp, out=right)
            np.add(left, right, out=left)  # every row the band reads: tl + (tr - tl) * x_lerp
            k = e - a
            left.take(y01, axis=0, out=y[:2 * k], mode="wrap")
            top, bottom = y[:k], y[k:2 * k]
            np.subtract(bottom, top, out=bottom)
            np.multiply(bottom, y_lerp, out=bottom)
            np.add(top, bottom, out=top)  # top + (bottom - top) * y_lerp
            if not self._pixelwise:
                np.copyto(dst[a:e], top, casting="unsafe")  # float -> uint8 truncates
            else:
                np.copyto(rgbx[:k], top, casting="unsafe")
                rgbx[:k].take(self._drop, axis=1, out=dst[a:e], mode="wrap")  # RGBX -> RGB
        return out


class _NearestPlan:
    """TensorFlow 2's ``"nearest"``: half-pixel centres, floor, clamp."""

    def __init__(self, in_h: int, in_w: int, out_h: int, out_w: int):
        self.rows = np.minimum(np.floor(_half_pixel(in_h, out_h)), in_h - 1).astype(np.intp)
        self.cols = np.minimum(np.floor(_half_pixel(in_w, out_w)), in_w - 1).astype(np.intp)

    def __call__(self, img: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return _into(img[self.rows][:, self.cols], out)


class _PillowBilinearPlan:
    """Pillow's ``resize(BILINEAR)``: antialiased when shrinking. Not what TensorFlow does."""

    def __init__(self, in_h: int, in_w: int, out_h: int, out_w: int):
        self.size = (out_w, out_h)

    def __call__(self, img: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return _into(np.asarray(Image.fromarray(img).resize(self.size, Image.Resampling.BILINEAR)), out)


def _into(pixels: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return pixels
    out[...] = pixels
    return out


Plan = Callable[..., np.ndarray]  # plan(img, out=None) -> out, or a new array
_PLANS: dict[str, Callable[[int, int, int, int], Plan]] = {
    "bilinear": _BilinearPlan,
    "bilinear-legacy": functools.partial(_BilinearPlan, half_pixel=False),
    "nearest": _NearestPlan,
    "pil-bilinear": _PillowBilinearPlan,
}


@functools.lru_cache(maxsize=32)
def _plan(method: str, in_h: int, in_w: int, out_h: int, out_w: int, channels: int = 3) -> Plan:
    # RGBX pixels (channels=4) reach the bilinear plans only (``resize``), which drop the fourth
    return _PLANS[method](in_h, in_w, out_h, out_w, *(() if channels == 3 else (channels,)))


def resize(img: np.ndarray, height: int, width: int, method: ResizeMethod = DEFAULT_RESIZE,
           crop: CropMode = "none", out: np.ndarray | None = None) -> np.ndarray:
    """Resize an HxWx3 uint8 RGB image (or HxWx4, RGBX or RGBA: its first three channels) to
    height x width by ``method``.

    ``bilinear`` (the default) equals ``tf.image.resize(img, (height, width), "bilinear")``
    truncated to uint8; ``bilinear-legacy`` equals TensorFlow 1's ``resize_bilinear`` (no
    half-pixel centres), which Coral's published models were tested with; ``nearest`` equals TensorFlow 2's ``"nearest"``; ``pil-bilinear`` is
    Pillow's antialiased bilinear. ``crop="center"`` first takes the largest centred window
    of the target aspect ratio. Index tables are built once per size pair and reused.
    ``out`` (height x width x 3 uint8, e.g. a view of an interpreter's input tensor) receives
    the pixels and is returned; without it the result is a new array (or ``img`` itself when
    it already has the size).
    """
    check_choice(method, RESIZE_METHODS, "resize method")
    check_choice(crop, CROP_MODES, "crop")
    if crop == "center":
        img = center_crop(img, height, width)
    h, w = img.shape[:2]
    channels = img.shape[2] if img.ndim == 3 and img.shape[2] == 4 else 3  # 4: RGBX or RGBA
    if channels == 4 and (method not in ("bilinear", "bilinear-legacy") or (h, w) == (height, width)):
        img, channels = np.ascontiguousarray(img[:, :, :3]), 3
    if (h, w) == (height, width):
        return _into(img, out)
    return _plan(method, h, w, height, width, channels)(np.ascontiguousarray(img), out)


# --- input conversion ----------------------------------------------------------------------


@dataclass(frozen=True)
class Normalization:
    """What the float model expects: ``(pixel - mean) / std``. The bundle contract is (0, 1)."""

    mean: float = 0.0
    std: float = 1.0


class InputConverter:
    """Turns uint8 RGB pixels into the model's input tensor values, decided once per model.

    Quantized inputs: ``q = round((p - mean) / (std * scale) + zero_point)``, clipped. When that
    is the identity (uint8, scale 1/std) the frame goes in as it is; when it is ``p - 128``
    (int8) one XOR flips the sign bit; otherwise one 256-entry lookup table maps every pixel.
    Float inputs go through a float32 lookup table. ``normalization=None`` on a quantized
    model means the quantized value is the pixel itself (offset by -128 for int8), which is
    Coral's convention and the bundle contract's result.
    """

    def __init__(self, dtype: np.dtype, scale: float, zero_point: int, normalization: Normalization | None):
        self.dtype = np.dtype(dtype)
        p = np.arange(256, dtype=np.float64)
        if self.dtype == np.float32:
            n = normalization or Normalization(127.5, 127.5)
            self.table = ((p - n.mean) / n.std).astype(np.float32)
            self.kind = f"float lookup (x - {n.mean:g}) / {n.std:g}"
            return
        if self.dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
            raise ValueError(f"unsupported input type {self.dtype}; models take uint8, int8 or float32")
        info = np.iinfo(self.dtype)
        if normalization is None:
            q = p + (0 if self.dtype == np.uint8 else -128)
        else:
            if scale == 0:
                raise ValueError("quantized input without a scale")
            q = np.round((p - normalization.mean) / (normalization.std * scale) + zero_point)
        q = np.clip(q, info.min, info.max)
        self.table = q.astype(self.dtype)
        if np.array_equal(q, p):
            self.kind = "identity"
        elif np.array_equal(q, p - 128):
            self.kind = "offset -128"
        else:
            self.kind = "lookup table"

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if self.kind == "identity":
            return pixels
        if self.kind == "offset -128":
            return (pixels ^ np.uint8(0x80)).view(np.int8)
        return np.take(self.table, pixels)


# --- the whole path, into a buffer ----------------------------------------------------------


class Preprocessor:
    """Decode, resize and convert to the model's input, by one contract, into a caller's buffer.

    ``into(image, buf)`` writes the input tensor's values into ``buf`` (1 x height x width x 3 of
    the model's input type: the interpreter's own input tensor) with no intermediate copy where
    the conversion allows: the resize writes its uint8 pixels straight into ``buf`` (identity),
    or into ``buf``'s bytes and flips their sign bit in place (int8, offset -128); a lookup
    table reads a resized frame into ``buf``. ``__call__(image)`` returns a new tensor.
    """

    def __init__(self, height: int, width: int, converter: InputConverter, method: ResizeMethod = DEFAULT_RESIZE,
                 crop: CropMode = "none", decode: DecodeMode = DEFAULT_DECODE):
        self.height, self.width, self.to_input = height, width, converter
        self.method: ResizeMethod = check_choice(method, RESIZE_METHODS, "resize method")  # type: ignore[assignment]
        self.crop: CropMode = check_choice(crop, CROP_MODES, "crop")  # type: ignore[assignment]
        self.decode: DecodeMode = check_choice(decode, DECODE_MODES, "decode mode")  # type: ignore[assignment]

    def decode_image(self, image: ImageLike) -> np.ndarray:
        return load_image_for(image, self.height, self.width, self.decode)

    def _pixels(self, image: ImageLike) -> np.ndarray:
        """``decode_image`` for the resize: a file's RGB picture comes as Pillow's own RGBX
        memory (``_rgbx_view``: no copy, which would hold the GIL), the same pixels."""
        return _load_for(image, self.height, self.width, self.decode, rgbx=True)

    def __call__(self, image: ImageLike) -> np.ndarray:
        rgb = self._pixels(image)
        return self.to_input(resize(rgb, self.height, self.width, self.method, self.crop))

    def into(self, image: ImageLike, buf: np.ndarray) -> None:
        rgb = self._pixels(image)
        kind = self.to_input.kind
        pixels = buf.reshape(self.height, self.width, 3)
        if kind == "identity":
            resize(rgb, self.height, self.width, self.method, self.crop, out=pixels)
        elif kind == "offset -128":
            raw = pixels.view(np.uint8)
            resize(rgb, self.height, self.width, self.method, self.crop, out=raw)
            np.bitwise_xor(raw, np.uint8(0x80), out=raw)
        else:
            np.take(self.to_input.table, resize(rgb, self.height, self.width, self.method, self.crop), out=pixels)
