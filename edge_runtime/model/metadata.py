"""Reading TFLite Model Metadata: what other tools (MediaPipe Tasks, the TFLite Task Library,
Android Studio) look for in a model, and what ``edgecls convert`` and ``adopt`` write.

The format, as TFLite's ``MetadataPopulator`` writes it:

1. a ``ModelMetadata`` flatbuffer (file identifier ``M001``, schema ``metadata_schema.fbs``)
   is stored as one buffer of the model (``Model.buffers``), and a ``Model.metadata`` entry
   named ``TFLITE_METADATA`` points at that buffer;
2. the files the metadata names (a label file, ``TENSOR_AXIS_LABELS``) are appended to the
   model file as a zip archive (stored, not compressed): the ``.tflite`` is then both a
   flatbuffer (read from the start) and a zip (read from the end).

This is a minimal reader over the ``flatbuffers`` runtime package (a dependency of
ai-edge-litert, imported when a model is read): only the tables and fields edgecls shows.
Field slots are those of ``metadata_schema.fbs`` and TFLite's ``schema.fbs``; the tests read
the same models with the schema's generated code and compare. The device never needs any of
it to run a model.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from typing import Any

from edge_runtime.errors import MissingExtra, ModelError
from edge_runtime.model.preprocess import Normalization

METADATA_NAME = "TFLITE_METADATA"  # Model.metadata entry MetadataPopulator writes
METADATA_IDENTIFIER = b"M001"  # ModelMetadata's file_identifier
FILE_TYPES = ("UNKNOWN", "DESCRIPTIONS", "TENSOR_AXIS_LABELS", "TENSOR_VALUE_LABELS",
              "TENSOR_AXIS_SCORE_CALIBRATION", "VOCABULARY", "SCANN_INDEX_FILE")
COLOR_SPACES = ("UNKNOWN", "RGB", "GRAYSCALE")
CONTENT_KINDS = ("none", "feature", "image", "bounding_box", "audio")  # ContentProperties union
NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions.NormalizationOptions


def _flatbuffers() -> Any:
    try:
        import flatbuffers  # noqa: F401
        from flatbuffers import encode, number_types, packer, table
    except ImportError:
        raise MissingExtra("reading TFLite metadata", "metadata", "flatbuffers") from None
    return encode, number_types, packer, table


class _Table:
    """One flatbuffer table: fields by slot number (slot i sits at vtable offset 4 + 2i)."""

    def __init__(self, buf: bytes | bytearray, pos: int):
        _, self.n, _, table = _flatbuffers()
        self.new = table.Table
        self.t = table.Table(buf, pos)

    def _at(self, slot: int) -> int:
        return int(self.t.Offset(4 + 2 * slot))

    def string(self, slot: int) -> str | None:
        o = self._at(slot)
        return self.t.String(o + self.t.Pos).decode("utf-8", "replace") if o else None

    def scalar(self, slot: int, flags: Any, default: int = 0) -> int:
        o = self._at(slot)
        return int(self.t.Get(flags, o + self.t.Pos)) if o else default

    def table(self, slot: int) -> "_Table | None":
        o = self._at(slot)
        return _Table(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, slot: int) -> list["_Table"]:
        o = self._at(slot)
        if not o:
            return []
        start = self.t.Vector(o)
        return [_Table(self.t.Bytes, self.t.Indirect(start + 4 * i)) for i in range(self.t.VectorLen(o))]

    def union(self, slot: int) -> "_Table | None":
        o = self._at(slot)
        if not o:
            return None
        u = self.new(bytearray(), 0)  # Union() points it at the member table
        self.t.Union(u, o)
        return _Table(u.Bytes, u.Pos)

    def numbers(self, slot: int, flags: Any) -> list[float]:
        o = self._at(slot)
        return [float(v) for v in self.t.GetVectorAsNumpy(flags, o)] if o else []

    def raw(self, slot: int) -> bytes:
        o = self._at(slot)
        return bytes(self.t.GetVectorAsNumpy(self.n.Uint8Flags, o)) if o else b""


def _root(buf: bytes) -> _Table:
    encode, _, packer, _ = _flatbuffers()
    return _Table(buf, int(encode.Get(packer.uoffset, buf, 0)))


# --- what the metadata says ----------------------------------------------------------------


@dataclass(frozen=True)
class AssociatedFile:
    name: str
    type: str  # one of FILE_TYPES
    description: str | None = None
    packed: bool = False  # present in the zip appended to the model


@dataclass(frozen=True)
class TensorMetadata:
    name: str | None
    description: str | None
    content: str  # one of CONTENT_KINDS
    color_space: str | None  # images only
    mean: tuple[float, ...]  # NormalizationOptions: the model takes (value - mean) / std
    std: tuple[float, ...]
    stats_min: tuple[float, ...]
    stats_max: tuple[float, ...]
    files: tuple[AssociatedFile, ...]


@dataclass(frozen=True)
class ModelMetadata:
    name: str | None
    description: str | None
    version: str | None
    author: str | None
    license: str | None
    min_parser_version: str | None
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]
    files: tuple[AssociatedFile, ...]  # model-level associated files
    packed_files: tuple[str, ...]  # names in the appended zip
    labels: list[str] | None = field(default=None, compare=False, repr=False)  # output 0's TENSOR_AXIS_LABELS file

    @property
    def normalization(self) -> Normalization | None:
        """Input 0's normalization when it is one mean and one std (or the same for every channel)."""
        if not self.inputs or not self.inputs[0].mean or not self.inputs[0].std:
            return None
        mean, std = set(self.inputs[0].mean), set(self.inputs[0].std)
        if len(mean) != 1 or len(std) != 1 or not next(iter(std)) > 0:
            return None
        return Normalization(next(iter(mean)), next(iter(std)))

    @property
    def labels_file(self) -> AssociatedFile | None:
        files = self.outputs[0].files if self.outputs else ()
        return next((f for f in files if f.type == "TENSOR_AXIS_LABELS"), None)

    @property
    def is_embedder(self) -> bool:
        """Says it makes feature vectors (MediaPipe's ImageEmbedder: "embed", "feature vector")
        and carries no labels: its output values are not class scores."""
        what = f"{self.name or ''} {self.description or ''}".lower()
        return self.labels_file is None and any(w in what for w in ("embed", "feature vector"))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = None if self.labels is None else {"count": len(self.labels), "first": self.labels[:5]}
        n = self.normalization
        d["normalization"] = None if n is None else {"mean": n.mean, "std": n.std}
        return d


def metadata_buffer(data: bytes) -> bytes | None:
    """The ``TFLITE_METADATA`` buffer of a model file's bytes, None when it has none."""
    _, n, _, _ = _flatbuffers()
    model = _root(data)
    buffers = model.tables(4)  # Model.buffers
    for entry in model.tables(6):  # Model.metadata
        if entry.string(0) != METADATA_NAME:
            continue
        index = entry.scalar(1, n.Uint32Flags)
        if index >= len(buffers):
            return None
        buf = buffers[index]
        offset, size = buf.scalar(1, n.Uint64Flags), buf.scalar(2, n.Uint64Flags)
        if offset > 1:  # models over 2 GB keep buffers after the flatbuffer
            return data[offset:offset + size]
        return buf.raw(0) or None
    return None


def packed_files(data: bytes) -> dict[str, bytes]:
    """The files appended to a model as a zip archive (empty when there are none)."""
    import zipfile  # here, not at the top: a camera never reads a model's packed files (0.6 MB on a Pi)

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return {name: zf.read(name) for name in zf.namelist()}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return {}


def _file(t: _Table, packed: set[str], n: Any) -> AssociatedFile:
    kind = t.scalar(2, n.Int8Flags)
    name = t.string(0) or ""
    return AssociatedFile(name, FILE_TYPES[kind] if 0 <= kind < len(FILE_TYPES) else str(kind), t.string(1),
                          name in packed)


def _tensor(t: _Table, packed: set[str], n: Any) -> TensorMetadata:
    content = t.table(3)
    kind, color, mean, std = "none", None, (), ()
    if content is not None:
        k = content.scalar(0, n.Uint8Flags)
        kind = CONTENT_KINDS[k] if 0 <= k < len(CONTENT_KINDS) else str(k)
        props = content.union(1)
        if kind == "image" and props is not None:
            c = props.scalar(0, n.Int8Flags)
            color = COLOR_SPACES[c] if 0 <= c < len(COLOR_SPACES) else str(c)
    for unit in t.tables(4):  # process_units
        options = unit.union(1)
        if unit.scalar(0, n.Uint8Flags) == NORMALIZATION_OPTIONS and options is not None:
            mean, std = tuple(options.numbers(0, n.Float32Flags)), tuple(options.numbers(1, n.Float32Flags))
    stats = t.table(5)
    lo = tuple(stats.numbers(1, n.Float32Flags)) if stats else ()
    hi = tuple(stats.numbers(0, n.Float32Flags)) if stats else ()
    return TensorMetadata(t.string(0), t.string(1), kind, color, mean, std, lo, hi,
                          tuple(_file(f, packed, n) for f in t.tables(6)))


def parse(buffer: bytes, packed: dict[str, bytes] | None = None) -> ModelMetadata:
    """A ``ModelMetadata`` flatbuffer; ``packed`` are the files appended to the model."""
    _, n, _, _ = _flatbuffers()
    if buffer[4:8] != METADATA_IDENTIFIER:
        raise ValueError(f"no {METADATA_IDENTIFIER.decode()} identifier")
    packed = packed or {}
    names = set(packed)
    root = _root(buffer)
    subgraphs = root.tables(3)
    sg = subgraphs[0] if subgraphs else None
    inputs = tuple(_tensor(t, names, n) for t in sg.tables(2)) if sg else ()
    outputs = tuple(_tensor(t, names, n) for t in sg.tables(3)) if sg else ()
    meta = ModelMetadata(root.string(0), root.string(1), root.string(2), root.string(4), root.string(5),
                         root.string(7), inputs, outputs, tuple(_file(f, names, n) for f in root.tables(6)),
                         tuple(sorted(names)))
    f = meta.labels_file
    if f is not None and f.name in packed:
        from edge_runtime.model.labels import parse_labels

        text = packed[f.name].decode("utf-8-sig", "replace")
        object.__setattr__(meta, "labels", parse_labels(text))
    return meta


def read(data: bytes, where: str = "model") -> ModelMetadata | None:
    """The metadata of a model file's bytes, None when it carries none. Raises ModelError when
    the metadata is there but cannot be read."""
    try:
        buffer = metadata_buffer(data)
        if buffer is None:
            return None
        return parse(buffer, packed_files(data))
    except MissingExtra:
        raise
    except Exception as e:  # a truncated or foreign flatbuffer: struct.error, IndexError, ...
        raise ModelError(f"{where}: its TFLite metadata is unreadable ({type(e).__name__}: {e}); "
                         "rewrite it with the tool that made the model") from None


def read_file(path: str) -> ModelMetadata | None:
    from edge_runtime.model.interpreter import read_model_file

    return read(read_model_file(path), path)
