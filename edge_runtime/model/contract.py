"""The input and output contract of a model, as one type each (DESIGN.md, "The preprocessing
contract").

Training writes an ``InputContract`` to ``preprocessing.json``; convert and adopt write it, with
the quantization of the model's input tensor, as the ``input`` section of ``edgecls.json``, and
an ``OutputContract`` as its ``output`` section; the runtime reads both back with ``from_json``,
which validates every key and names the one that is wrong. The JSON keys:

``input``: ``height``, ``width`` (pixels, > 0), ``channels`` (3), ``color_order`` ("RGB"),
``resize`` (a method of ``preprocess.RESIZE_METHODS``), ``crop`` ("none" | "center"),
``decode`` ("full" | "draft": JPEG decoding at full size or DCT-scaled towards the model's size,
optional, "full" when absent), ``range`` ([0, 255]: what the model takes are raw pixels), ``normalization`` (``{"mean", "std"}``:
what the float model computes first; (0, 1) when it lives inside the graph),
``normalization_in_graph`` (a note, optional), and after conversion ``dtype``, ``scale`` and
``zero_point`` of the input tensor.

``output``: ``kind`` ("probabilities" | "logits"), ``classes`` (> 0), and after conversion
``dtype``, ``scale`` and ``zero_point`` of the output tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, get_args

from edge_runtime.errors import BundleError
from edge_runtime.model.postprocess import OutputKind
from edge_runtime.model.preprocess import (
    CROP_MODES,
    DECODE_MODES,
    DEFAULT_DECODE,
    DEFAULT_RESIZE,
    RESIZE_METHODS,
    Normalization,
)

MAX_SIDE = 4096  # no image classifier takes a larger input; a bigger number is a corrupt file
TENSOR_DTYPES = ("uint8", "int8", "float32")
IN_GRAPH = Normalization(0.0, 1.0)  # the bundle contract: raw pixels in, normalization inside the model


class ContractError(BundleError):
    """A contract (``preprocessing.json`` or an ``edgecls.json`` section) with a missing or bad key."""


class _Reader:
    """Typed reads from one JSON object, each error naming the file and the key."""

    def __init__(self, data: Any, where: str, section: str):
        if not isinstance(data, Mapping):
            raise ContractError(f"{where}: '{section}' is not a JSON object; reconvert the model")
        self.data, self.where, self.section = data, where, section

    def fail(self, key: str, want: str) -> ContractError:
        got = self.data.get(key, "nothing")
        shown = repr(got)[:60]
        return ContractError(f"{self.where}: {self.section}.{key} must be {want}, got {shown}; "
                             "fix the file or reconvert the model")

    def int(self, key: str, lo: int, hi: int, default: int | None = None) -> int:
        v = self.data.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(key, f"an integer from {lo} to {hi}")
        return v

    def number(self, key: str, positive: bool = False, default: float | None = None) -> float:
        v = self.data.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
            raise self.fail(key, "a number above 0" if positive else "a finite number")
        return float(v)

    def choice(self, key: str, valid: tuple[str, ...], default: str | None = None) -> str:
        v = self.data.get(key, default)
        if v not in valid:
            raise self.fail(key, "one of " + ", ".join(valid))
        return str(v)

    def optional(self, key: str) -> bool:
        return self.data.get(key) is not None

    def sub(self, key: str, default: Mapping[str, Any] | None = None) -> "_Reader":
        return _Reader(self.data.get(key, default), self.where, f"{self.section}.{key}")


@dataclass(frozen=True)
class TensorQuant:
    """A tensor's element type and quantization (``scale`` 0 for float tensors)."""

    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @staticmethod
    def read(r: _Reader) -> "TensorQuant | None":
        if not r.optional("dtype"):
            return None
        dtype = r.choice("dtype", TENSOR_DTYPES)
        return TensorQuant(dtype, r.number("scale", default=0.0), r.int("zero_point", -(1 << 31), 1 << 31, default=0))

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point}


@dataclass(frozen=True)
class InputContract:
    """What the model takes: raw RGB pixels of ``height`` x ``width``, resized by ``resize``."""

    height: int
    width: int
    resize: str = DEFAULT_RESIZE
    crop: str = "none"
    normalization: Normalization = IN_GRAPH
    channels: int = 3
    color_order: str = "RGB"
    range: tuple[int, int] = (0, 255)
    normalization_in_graph: str | None = None
    tensor: TensorQuant | None = None  # the input tensor, once a model is converted
    decode: str = DEFAULT_DECODE

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            raise ValueError(f"unknown decode mode {self.decode!r}; valid: {', '.join(DECODE_MODES)}")
        for key, v in (("height", self.height), ("width", self.width)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= MAX_SIDE:
                raise ValueError(f"{key} must be an integer from 1 to {MAX_SIDE}, got {v!r}")
        if self.resize not in RESIZE_METHODS:
            raise ValueError(f"unknown resize method {self.resize!r}; valid: {', '.join(RESIZE_METHODS)}")
        if self.crop not in CROP_MODES:
            raise ValueError(f"unknown crop {self.crop!r}; valid: {', '.join(CROP_MODES)}")
        if not self.normalization.std > 0:
            raise ValueError(f"normalization std must be above 0, got {self.normalization.std}")

    @staticmethod
    def from_json(data: Any, where: str = "input contract", section: str = "input") -> "InputContract":
        r = _Reader(data, where, section)
        n = r.sub("normalization", {"mean": 0.0, "std": 1.0})
        lo_hi = r.data.get("range", [0, 255])
        if lo_hi != [0, 255] and lo_hi != (0, 255):
            raise r.fail("range", "[0, 255] (edgecls models take raw pixels)")
        note = r.data.get("normalization_in_graph")
        return InputContract(
            height=r.int("height", 1, MAX_SIDE), width=r.int("width", 1, MAX_SIDE),
            resize=r.choice("resize", RESIZE_METHODS, DEFAULT_RESIZE), crop=r.choice("crop", CROP_MODES, "none"),
            normalization=Normalization(n.number("mean", default=0.0), n.number("std", positive=True, default=1.0)),
            channels=r.int("channels", 3, 3, default=3), color_order=r.choice("color_order", ("RGB",), "RGB"),
            normalization_in_graph=str(note) if note is not None else None, tensor=TensorQuant.read(r),
            decode=r.choice("decode", DECODE_MODES, DEFAULT_DECODE))

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"height": self.height, "width": self.width, "channels": self.channels,
                             "color_order": self.color_order, "resize": self.resize, "crop": self.crop,
                             "range": list(self.range),
                             "normalization": {"mean": self.normalization.mean, "std": self.normalization.std}}
        if self.normalization_in_graph:
            d["normalization_in_graph"] = self.normalization_in_graph
        if self.decode != DEFAULT_DECODE:  # absent means "full": edgecls.json of a full-decode bundle stays as before
            d["decode"] = self.decode
        if self.tensor:
            d.update(self.tensor.to_json())
        return d


@dataclass(frozen=True)
class OutputContract:
    """What the model gives: one score per class, as probabilities or logits."""

    classes: int
    kind: str = "probabilities"
    tensor: TensorQuant | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(OutputKind):
            raise ValueError(f"unknown output kind {self.kind!r}; valid: {', '.join(get_args(OutputKind))}")
        if isinstance(self.classes, bool) or not isinstance(self.classes, int) or self.classes < 1:
            raise ValueError(f"classes must be a positive integer, got {self.classes!r}")

    @staticmethod
    def from_json(data: Any, where: str = "output contract", section: str = "output") -> "OutputContract":
        r = _Reader(data, where, section)
        return OutputContract(classes=r.int("classes", 1, 1 << 20), kind=r.choice("kind", get_args(OutputKind)),
                              tensor=TensorQuant.read(r))

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "classes": self.classes}
        if self.tensor:
            d.update(self.tensor.to_json())
        return d
