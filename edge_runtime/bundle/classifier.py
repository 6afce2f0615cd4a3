"""Classifier: load a bundle or a bare .tflite once, classify many images or frames."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence, get_args

import numpy as np

from edge_runtime.bundle.format import Bundle, is_bundle, load_bundle
from edge_runtime.bundle.head import OUT_SCALE, Head, features_section, load_head
from edge_runtime.errors import BackendUnavailable, EdgeclsError, LabelError, ModelError
from edge_runtime.model import interpreter as interp
from edge_runtime.model.labels import read_labels
from edge_runtime.model.pipeline import DEPTH, prefetch
from edge_runtime.model.postprocess import Class, OutputKind, dequantize, softmax, top_k
from edge_runtime.model.preprocess import (
    CROP_MODES,
    DEFAULT_RESIZE,
    RESIZE_METHODS,
    CropMode,
    DecodeMode,
    ImageLike,
    InputConverter,
    Normalization,
    Preprocessor,
    ResizeMethod,
    check_choice,
)
from edge_runtime.system.machine import is_raspberry_pi

Backend = Literal["auto", "edgetpu", "gpu", "cpu"]
BACKENDS: tuple[str, ...] = get_args(Backend)
AUTO_ORDER = ("edgetpu", "gpu", "cpu")


@dataclass
class Result:
    """One classified image: ranked classes, the raw output tensor and per-stage latency."""

    classes: list[Class]
    raw: np.ndarray
    latency_ms: dict[str, float]
    image: str | None = None

    def to_dict(self, classifier: "Classifier") -> dict[str, Any]:
        return {"image": self.image,
                "classes": [{"index": c.index, "label": c.label, "score": round(c.score, 6)} for c in self.classes],
                "backend": classifier.backend, "interpreter": classifier.interpreter, "resize": classifier.resize_method,
                "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()}}


@dataclass
class _Models:
    """The model files a backend can pick from."""

    cpu: str | None = None
    edgetpu: str | None = None
    float: str | None = None
    graph: interp.GraphInfo | None = None  # what a bare model's graph says, read once


class Classifier:
    """Load once, classify many.

    ``model`` is a bundle directory / ``.tar.gz`` (verified before loading) or a bare
    ``.tflite`` (with ``labels``: one label a line, or Coral's ``N label`` lines). ``backend``
    is ``auto`` (edgetpu, gpu, cpu: the first that starts; ``notes`` says why others were
    passed over) or one of them, which must start or raise. ``interpreter`` forces an
    interpreter package (else ``$EDGECLS_INTERPRETER``, else the first found).

    Preprocessing follows the bundle's input contract; for a bare model it is the default
    resize (TensorFlow's bilinear), no crop, and raw pixels as the quantized input (Coral's
    convention) or ``(p - 127.5) / 127.5`` for float inputs, unless ``normalization`` says
    otherwise.
    """

    def __init__(self, model: str | os.PathLike[str], labels: str | os.PathLike[str] | Sequence[str] | None = None,
                 backend: Backend = "auto", threads: int | None = None, interpreter: str | None = None,
                 resize: ResizeMethod | None = None, crop: CropMode | None = None,
                 normalization: Normalization | None = None, output: OutputKind | None = None,
                 decode: DecodeMode | None = None):
        check_choice(backend, BACKENDS, "backend")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.threads = threads or interp.default_threads()
        self.bundle: Bundle | None = None
        self.package = interp.resolve_package(interpreter)
        self.interpreter = self.package.name
        path = os.fspath(model)
        if is_bundle(path):
            if labels is not None:
                raise LabelError(f"{path}: a bundle carries its own labels.txt; drop --labels")
            self.bundle = load_bundle(path)
            models = self._bundle_models(self.bundle)
            self.labels = self.bundle.labels
            contract = self.bundle.input
            resize = resize or contract.resize  # type: ignore[assignment]
            crop = crop or contract.crop  # type: ignore[assignment]
            normalization = normalization or contract.normalization
            decode = decode or contract.decode  # type: ignore[assignment]
            output = output or self.bundle.output.kind  # type: ignore[assignment]
        else:
            models = self._bare_models(path, self.package)
            self.labels = None  # read once the model says how many classes it has
        self.resize_method: str = check_choice(resize or DEFAULT_RESIZE, RESIZE_METHODS, "resize method")
        self.crop: str = check_choice(crop or "none", CROP_MODES, "crop")
        self.notes: list[str] = []
        self._feature_dim = self._bundle_feature_dim()
        self._engine = self._start(backend, models)
        self._engine.check_classifier()  # an embedder, a detector, a dynamic input size: said here, by kind
        self.backend: str = self._engine.backend
        self.model_path: str = self._engine.path
        self.input_spec: interp.TensorSpec = self._engine.input
        self.output_spec: interp.TensorSpec = self._engine.output
        self.features_spec: interp.TensorSpec | None = getattr(self._engine, "features", None)
        self._head: Head | None = load_head(self.bundle.path, self.bundle.meta) if self.bundle else None
        if self._head is not None:
            if self.features_spec is None:
                raise ModelError(f"{self.model_path}: the bundle's taught head needs the model's feature output, "
                                 "which this model file has not; reteach from a bundle made by edgecls convert")
            # The head replaces the model's own classifier output: quantized like TFLite's softmax.
            self.output_spec = interp.TensorSpec((1, self._head.classes), np.dtype(np.uint8), OUT_SCALE, 0)

        spec = self.input_spec
        if len(spec.shape) != 4 or spec.shape[0] != 1 or spec.shape[3] != 3:
            raise ModelError(f"{self.model_path}: input shape {list(spec.shape)} is not [1, height, width, 3]; "
                             "edgecls runs RGB image classifiers")
        self.height, self.width = spec.shape[1], spec.shape[2]
        if self.bundle and (self.bundle.input.height, self.bundle.input.width) != (self.height, self.width):
            raise ModelError(f"{self.bundle.path}/edgecls.json: input is {self.bundle.input.height}x"
                             f"{self.bundle.input.width}, but {self.model_path} takes {self.height}x{self.width}; "
                             "reconvert the bundle")
        self.to_input = InputConverter(spec.dtype, spec.scale, spec.zero_point,
                                       normalization if spec.quantized or spec.dtype == np.float32 else None)
        out = self.output_spec
        self.num_classes = int(np.prod(out.shape))
        # Where the labels came from, for the user: the bundle's file, --labels, the model's metadata.
        self.labels_from: str | None = str(self.bundle.path / "labels.txt") if self.bundle else None
        if self.bundle is None:
            self.labels = self._read_labels(labels, self.num_classes)
            if labels is not None:
                self.labels_from = os.fspath(labels) if isinstance(labels, (str, os.PathLike)) else "given"
            else:
                self.labels, self.labels_from = self._metadata_labels(self.model_path, self.num_classes)
        if self.labels is None:
            self.labels = [str(i) for i in range(self.num_classes)]
        elif len(self.labels) != self.num_classes:
            where = self.bundle.path / "labels.txt" if self.bundle else labels
            raise LabelError(f"{where}: {len(self.labels)} labels, but {self.model_path} outputs "
                             f"{self.num_classes} classes; use the label file that belongs to this model")
        self.preprocessor = Preprocessor(self.height, self.width, self.to_input, self.resize_method,  # type: ignore[arg-type]
                                         self.crop, decode or "full")  # type: ignore[arg-type]
        self.decode: str = self.preprocessor.decode
        self.output_kind: str = output or self._detect_output_kind(models)
        check_choice(self.output_kind, get_args(OutputKind), "output kind")

    # --- model selection -------------------------------------------------------------------

    @staticmethod
    def _bundle_models(bundle: Bundle) -> _Models:
        def s(p: Path | None) -> str | None:
            return str(p) if p else None
        return _Models(cpu=s(bundle.model("cpu")), edgetpu=s(bundle.model("edgetpu")), float=s(bundle.model("float")))

    def _bundle_feature_dim(self) -> int | None:
        section = features_section(self.bundle.meta) if self.bundle else None
        dim = section.get("dim") if section else None
        return dim if isinstance(dim, int) and not isinstance(dim, bool) else None

    @staticmethod
    def _bare_models(path: str, package: interp.InterpreterPackage) -> _Models:
        data = interp.read_model_file(path)
        if interp.is_edgetpu_model(data):
            return _Models(edgetpu=path)
        # A bare model with float input is also the float model the GPU can take.
        graph = interp.inspect_graph(path, package)
        return _Models(cpu=path, float=path if graph.input_dtype == np.float32 else None, graph=graph)

    def _read_labels(self, labels: str | os.PathLike[str] | Sequence[str] | None, classes: int) -> list[str] | None:
        if labels is None:
            return None
        if isinstance(labels, (str, os.PathLike)):
            return read_labels(labels, classes)
        return [str(x) for x in labels]

    def _metadata_labels(self, path: str, classes: int) -> tuple[list[str] | None, str | None]:
        """A bare model's labels from its TFLite metadata (as ``inspect`` and ``adopt`` read them);
        a model whose metadata says it is an embedder, with no labels, is not run as a classifier."""
        from edge_runtime.model import metadata as tflite_metadata  # flatbuffers' generated code: only for bare models

        try:
            meta = tflite_metadata.read_file(path)
        except EdgeclsError as e:  # unreadable metadata, or no flatbuffers: numbered classes, and why
            self.notes.append(f"labels: not read from the model's metadata ({e})")
            return None, None
        if meta is None:
            return None, None
        if meta.is_embedder:
            raise ModelError(f"{path}: an image embedder (its metadata: '{meta.name}', a {classes}-value feature "
                             "vector, no labels), not a classifier: its outputs are not class scores; "
                             "edgecls runs image classifiers (pass --labels only if it really is one)")
        if not meta.labels or meta.labels_file is None:
            return None, None
        if len(meta.labels) != classes:
            self.notes.append(f"labels: the model's metadata holds {len(meta.labels)} ({meta.labels_file.name}) "
                              f"for {classes} classes; not used")
            return None, None
        return list(meta.labels), f"the model's metadata ({meta.labels_file.name})"

    def _start(self, backend: str, models: _Models) -> Any:
        if backend != "auto":
            return self._start_one(backend, models, explicit=True)
        for candidate in AUTO_ORDER:
            try:
                engine = self._start_one(candidate, models, explicit=False)
            except BackendUnavailable as e:
                self.notes.append(f"{candidate}: {e}")
                continue
            self.notes.append(f"auto chose {candidate}")
            return engine
        raise BackendUnavailable("no backend could start: " + "; ".join(self.notes))

    def _start_one(self, backend: str, models: _Models, explicit: bool) -> Any:
        if backend == "edgetpu":
            if explicit and models.edgetpu is None:
                try:  # the library first: without it no model would run, and installing it is the first step
                    interp.check_edgetpu_library()
                except BackendUnavailable as e:
                    raise BackendUnavailable(f"{e}; this model has no Edge TPU version either (a bundle's "
                                             "model_edgetpu.tflite, from edgecls convert --edgetpu, or a .tflite "
                                             "compiled by edgetpu_compiler)") from None
            if models.edgetpu is None:
                raise BackendUnavailable("no Edge TPU model (model_edgetpu.tflite, or a .tflite compiled by edgetpu_compiler)")
            try:
                delegate = interp.load_edgetpu_delegate(self.package)
            except BackendUnavailable as e:
                if models.cpu is None:
                    # A bare *_edgetpu.tflite: no other backend can run it, so say which file can.
                    raise ModelError(f"{models.edgetpu}: compiled for the Edge TPU, and {e}; "
                                     f"run the CPU model instead: {_cpu_sibling(models.edgetpu)}") from None
                raise
            return interp.InterpreterEngine(models.edgetpu, self.package, "edgetpu", self.threads, [delegate],
                                            self._feature_dim)
        if backend == "gpu":
            target = models.float or (models.cpu if explicit else None)
            if target is None:
                raise BackendUnavailable("no float model for the GPU (model_float.tflite)")
            if not explicit:
                if is_raspberry_pi():
                    raise BackendUnavailable("skipped on a Raspberry Pi: the int8 model on the CPU is faster")
                ok = not interp.gpu_nodes_absent() and interp.vulkan_status()[0]
                if not ok:  # the drivers' own words are edgecls doctor's to show, not every classify's
                    raise BackendUnavailable(f"{interp.NO_VULKAN_DEVICE} (edgecls doctor says more)")
                try:
                    return interp.GpuEngine(target, self.threads)
                except BackendUnavailable:
                    raise BackendUnavailable("the GPU accelerator did not start (edgecls doctor, or --backend gpu, "
                                             "says why)") from None
            return interp.GpuEngine(target, self.threads)
        if models.cpu is None:
            raise ModelError(f"{models.edgetpu}: compiled for the Edge TPU (edgetpu-custom-op), which the CPU cannot run; "
                             f"run the CPU model instead: {_cpu_sibling(models.edgetpu or '')}")
        interp.check_known_crashes(models.cpu, self.package)
        return interp.InterpreterEngine(models.cpu, self.package, "cpu", self.threads, feature_dim=self._feature_dim)

    def _detect_output_kind(self, models: _Models) -> str:
        if self._head is not None:
            return "probabilities"
        graph = models.graph if models.graph and self.model_path == models.cpu else None
        from_graph = (graph or interp.inspect_graph(self.model_path, self.package)).softmax_output
        if from_graph is not None:
            return "probabilities" if from_graph else "logits"
        out = self.output_spec
        # TFLite's quantized SOFTMAX always writes scale 1/256 with zero point 0 (uint8) or -128 (int8).
        softmax_zp = {np.dtype(np.uint8): 0, np.dtype(np.int8): -128}.get(out.dtype)
        if out.quantized and abs(out.scale - 1 / 256) < 1e-9 and out.zero_point == softmax_zp:
            return "probabilities"
        return "logits"

    # --- the tensor API: prepare -> infer -> rank; classify() is the three in a row -----------

    def prepare(self, image: ImageLike) -> np.ndarray:
        """Decode (a path or Pillow image; an RGB uint8 array is taken as it is), resize by the
        contract's method and crop, and convert to the model's input tensor."""
        return self.preprocessor(image)

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Run the model on one input tensor (as ``prepare`` makes it); returns the raw output
        tensor (quantized where the model is), a copy the caller may keep. Where the bundle has a
        taught head, the head's output (over the model's feature output) replaces the model's own."""
        return self._headed(self._engine.run(tensor))

    def _headed(self, raw: np.ndarray) -> np.ndarray:
        if self._head is None:
            return raw
        return self._head.raw(self.last_features())

    @property
    def has_features(self) -> bool:
        """Whether the model has a feature output (``embed``), as ``edgecls convert`` exports it."""
        return self.features_spec is not None

    def last_features(self) -> np.ndarray:
        """The feature vector of the last run, dequantized: float32, one dimension."""
        spec = self.features_spec
        if spec is None:
            raise ModelError(f"{self.model_path}: has no feature output; reconvert the model with this edgecls")
        return dequantize(np.asarray(self._engine.last_features()).reshape(-1), spec.scale, spec.zero_point)

    def embed(self, tensor: np.ndarray) -> np.ndarray:
        """Run the model on one input tensor (as ``prepare`` makes it) and return its feature
        vector, dequantized (float32, one dimension)."""
        self._engine.run(tensor)
        return self.last_features()

    def invoke(self) -> None:
        """Run the model again on the input the last ``infer`` set: bare ``invoke()``, for
        benchmarks that compare the whole path against it."""
        self._engine.invoke()

    def scores(self, raw: np.ndarray) -> np.ndarray:
        """Raw output -> per-class scores (probabilities; logits go through a softmax)."""
        out = self.output_spec
        s = dequantize(raw.reshape(-1), out.scale, out.zero_point)
        return softmax(s) if self.output_kind == "logits" else s

    def rank(self, raw: np.ndarray, top: int = 5, threshold: float = 0.0) -> Result:
        """Raw output -> a Result with the ``top`` classes scoring at least ``threshold``."""
        return Result(top_k(self.scores(raw), self.labels, top, threshold), raw, {})

    def classify(self, image: ImageLike, top: int = 5, threshold: float = 0.0) -> Result:
        """Classify one image (a path, a Pillow image or an RGB uint8 frame): ``prepare``,
        ``infer`` and ``rank``, each timed. Where the engine allows, the preprocessed pixels go
        straight into the interpreter's input tensor (same values, no copy): ``preprocess``
        then counts the whole path up to invoke."""
        t0 = time.perf_counter()
        run_filled = getattr(self._engine, "run_filled", None)
        if run_filled is not None:
            t1 = 0.0

            def fill(buf: np.ndarray) -> None:
                nonlocal t1
                self.preprocessor.into(image, buf)
                t1 = time.perf_counter()

            raw = self._headed(run_filled(fill))
        else:
            x = self.prepare(image)
            t1 = time.perf_counter()
            raw = self.infer(x)
        t2 = time.perf_counter()
        result = self.rank(raw, top, threshold)
        t3 = time.perf_counter()
        result.latency_ms = {"preprocess": (t1 - t0) * 1e3, "invoke": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        result.image = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
        return result

    def classify_each(self, images: Iterable[ImageLike], top: int = 5, threshold: float = 0.0,
                      depth: int = DEPTH, workers: int | None = None) -> Iterator[tuple[ImageLike, Result | EdgeclsError]]:
        """Classify many images in order, preparing up to ``depth`` ahead in ``workers`` threads
        while the model runs (``pipeline.prefetch``); yields ``(image, Result)``, or ``(image,
        error)`` for one that cannot be read. The results equal ``classify``'s, image by image;
        ``depth=0`` is the sequential path. ``preprocess`` latency is the preparing thread's."""
        def timed_prepare(image: ImageLike) -> tuple[np.ndarray, float]:
            t0 = time.perf_counter()
            x = self.prepare(image)
            return x, (time.perf_counter() - t0) * 1e3

        for image, prepared in prefetch(images, timed_prepare, depth, workers):
            if isinstance(prepared, BaseException):
                yield image, prepared  # type: ignore[misc]  # prefetch skips EdgeclsError only
                continue
            x, prep_ms = prepared
            t1 = time.perf_counter()
            raw = self.infer(x)
            t2 = time.perf_counter()
            result = self.rank(raw, top, threshold)
            result.latency_ms = {"preprocess": prep_ms, "invoke": (t2 - t1) * 1e3,
                                 "postprocess": (time.perf_counter() - t2) * 1e3}
            result.image = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
            yield image, result

    def describe(self) -> dict[str, Any]:
        """What was loaded and how it runs, for reports."""
        return {"model": self.model_path, "bundle": str(self.bundle.path) if self.bundle else None,
                "backend": self.backend, "interpreter": self.interpreter,
                "interpreter_version": self.package.version, "threads": self.threads,
                "input": {"shape": list(self.input_spec.shape), "dtype": self.input_spec.dtype.name,
                          "scale": self.input_spec.scale, "zero_point": self.input_spec.zero_point,
                          "conversion": self.to_input.kind},
                "output": {"classes": self.num_classes, "kind": self.output_kind,
                           "dtype": self.output_spec.dtype.name},
                "features": list(self.features_spec.shape) if self.features_spec else None,
                "head": f"taught ({self._head.classes} classes)" if self._head else None,
                "fully_accelerated": getattr(self._engine, "fully_accelerated", None),
                "labels_from": self.labels_from,
                "resize": self.resize_method, "crop": self.crop, "decode": self.decode, "notes": self.notes,
                "machine": platform.machine()}

    def close(self) -> None:
        self._engine.close()

    def __enter__(self) -> "Classifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cpu_sibling(edgetpu_path: str) -> str:
    p = Path(edgetpu_path)
    name = p.name.replace("_edgetpu.tflite", ".tflite")
    sibling = p.with_name(name)
    if name != p.name and sibling.exists():
        return str(sibling)
    return f"the model this one was compiled from ({name})"
