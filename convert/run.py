"""``edgecls convert``: a training run (or a Keras model with labels and photos) in, a verified
bundle out: int8 + float TFLite, evaluated against the Keras model, golden photos recorded,
optionally compiled for the Edge TPU, written atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_runtime import __version__, golden
from edge_runtime.bundle import head
from edge_runtime.bundle.classifier import Classifier
from edge_runtime.bundle.reference import Reference
from edge_runtime.errors import EdgeclsError
from edge_runtime.model import interpreter as interp
from edge_runtime.model.contract import InputContract, OutputContract, TensorQuant
from edge_runtime.model.labels import read_labels
from edge_runtime.model.pipeline import prefetch
from edge_runtime.model.preprocess import Normalization
from train import data as dataset
from train.run import Clock, log

from . import destination, embedding, metadata
from .ladder import DEFAULT_TARGETS

GOLDEN_MAX = 10


class ConvertError(EdgeclsError):
    """A conversion that cannot start, or whose result fails a check."""


@dataclass
class Options:
    io: str = "uint8"
    calibration: int = 300
    max_drop: float = 1.0  # percentage points of top-1, int8 below float
    per_channel_dense: bool = False
    edgetpu: bool = False
    tar: bool = False
    labels: str | None = None  # for a bare Keras model
    calibration_data: str | None = None  # folder per class, for a bare Keras model (or a moved dataset)
    name: str | None = None
    compiler_timeout: int = 180
    imx500: bool = False  # also quantize and convert for the Raspberry Pi AI Camera (convert/imx500.py)
    alpha: float = 0.05  # level of the gate's exact McNemar test (convert/gate.py)
    min_agreement: float = 0.95  # int8/float top-1 agreement floor
    targets: tuple[str, ...] = DEFAULT_TARGETS  # runtimes the bundle must run on (convert/ladder.py)
    repair: bool = True  # climb convert/ladder.py when the damage is real
    metadata: bool = True  # TFLite Model Metadata in every model (False: --no-metadata)
    author: str | None = None  # the metadata's author (default: edgecls VERSION)
    license: str | None = None  # the metadata's license
    features: bool = True  # a second output, the embedding, and per-class prototypes (edgecls teach)
    whiten: bool = True  # the embedding whitened against within-class variation (convert/embedding.py)


@dataclass
class Source:
    model_path: Path
    labels: list[str]
    train: list[dataset.Sample]
    test: list[dataset.Sample]
    contract: InputContract
    provenance: dict


@dataclass
class Result:
    bundle: Path
    metrics: dict
    edgetpu: dict = field(default_factory=dict)
    table: str = ""
    seconds: dict = field(default_factory=dict)  # wall and CPU seconds per stage (train.run.Clock)


# --- inputs --------------------------------------------------------------------------------


def _samples(root: Path, rels: list[str], classes: list[str], where: Path) -> list[dataset.Sample]:
    out = []
    for rel in rels:
        cls = rel.split("/", 1)[0]
        if cls not in classes:
            raise ConvertError(f"{where}: lists {rel}, whose class '{cls}' is not in labels.txt")
        out.append(dataset.Sample(root / rel, rel, classes.index(cls), ""))
    missing = [s for s in out if not s.path.exists()]
    if missing:
        raise ConvertError(f"{missing[0].path}: photo of the training run not found ({len(missing)} missing); if the "
                           "dataset moved, pass its new location with --calibration-data DIR")
    return out


def from_run(run: Path, opts: Options) -> Source:
    for f in ("model.keras", "labels.txt", "preprocessing.json", "config.json", "splits/train.txt"):
        if not (run / f).exists():
            raise ConvertError(f"{run}: not a finished training run ({f} missing); finish it with edgecls train "
                               f"... --out {run} --resume, or pass a Keras model with --labels and --calibration-data")
    labels = read_labels(run / "labels.txt")
    cfg = json.loads((run / "config.json").read_text())
    root = Path(opts.calibration_data or cfg["data"])
    lists = {s: (run / "splits" / f"{s}.txt").read_text().split("\n") for s in ("train", "test")}
    train = _samples(root, [r for r in lists["train"] if r], labels, run / "splits" / "train.txt")
    test = _samples(root, [r for r in lists["test"] if r], labels, run / "splits" / "test.txt")
    ds = json.loads((run / "dataset.json").read_text()) if (run / "dataset.json").exists() else {}
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    prov = {"run": str(run.resolve()), "arch": cfg.get("arch"), "alpha": cfg.get("alpha"), "weights": cfg.get("weights"),
            "dataset": str(root.resolve()), "dataset_fingerprint": ds.get("fingerprint"),
            "training_test_top1": metrics.get("test", {}).get("top1")}
    contract = InputContract.from_json(_read_json(run / "preprocessing.json"), str(run / "preprocessing.json"))
    return Source(run / "model.keras", labels, train, test, contract, prov)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConvertError(f"{path}: unreadable ({e}); rerun edgecls train with --resume") from None


def from_model(model: Path, opts: Options, height: int, width: int) -> Source:
    if not opts.labels or not opts.calibration_data:
        raise ConvertError(f"{model}: a bare Keras model needs --labels FILE and --calibration-data DIR "
                           "(a folder with one sub-folder of photos per class)")
    labels = read_labels(opts.labels)
    ds = dataset.scan(opts.calibration_data)
    unknown = [c for c in ds.classes if c not in labels]
    if unknown:
        raise ConvertError(f"{opts.calibration_data}: class folder(s) {', '.join(unknown)} are not in {opts.labels}; "
                           "folder names must be labels of the model")
    remap = [labels.index(c) for c in ds.classes]
    samples = [dataset.Sample(s.path, s.rel, remap[s.label], s.split) for s in ds.samples]
    contract = InputContract(height, width)
    prov = {"model": str(model.resolve()), "dataset": str(ds.root), "dataset_fingerprint": ds.fingerprint}
    return Source(model, labels, [s for s in samples if s.split != "test"], [s for s in samples if s.split == "test"],
                  contract, prov)


# --- evaluation ----------------------------------------------------------------------------


def _tflite_predict(path: Path, labels: list[str], x: np.ndarray) -> tuple[np.ndarray, interp.TensorSpec, interp.TensorSpec]:
    """Scores of a converted model on raw-pixel images, and its input and output tensors."""
    with Classifier(path, labels=labels, backend="cpu", normalization=Normalization(0.0, 1.0),
                    output="probabilities") as clf:
        scores = np.stack([clf.scores(clf.infer(t)) for _, t in prefetch(x, clf.prepare, skip=())])  # type: ignore[arg-type]
        return scores, clf.input_spec, clf.output_spec


def _per_class(pred: np.ndarray, y: np.ndarray, labels: list[str]) -> dict[str, float | None]:
    return {c: (round(float(np.mean(pred[y == i] == i)), 4) if np.any(y == i) else None) for i, c in enumerate(labels)}


def evaluate(keras_pred: np.ndarray, float_pred: np.ndarray, int8_pred: np.ndarray, y: np.ndarray,
             labels: list[str]) -> dict:
    preds = {"keras": keras_pred, "float": float_pred, "int8": int8_pred}
    m: dict[str, Any] = {"test_images": int(len(y))}
    for k, p in preds.items():
        m[f"{k}_top1"] = round(float(np.mean(p == y)), 4)
    m["int8_float_agreement"] = round(float(np.mean(int8_pred == float_pred)), 4)
    m["int8_keras_agreement"] = round(float(np.mean(int8_pred == keras_pred)), 4)
    per = {k: _per_class(p, y, labels) for k, p in preds.items()}
    m["per_class"] = {c: {k: per[k][c] for k in preds} for c in labels}
    return m


def format_table(m: dict, sizes: dict[str, int]) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    lines = [f"{'':<18} {'keras':>8} {'float':>8} {'int8':>8}",
             f"{'top-1':<18} {pct(m['keras_top1']):>8} {pct(m['float_top1']):>8} {pct(m['int8_top1']):>8}"]
    for c, row in m["per_class"].items():
        lines.append(f"  {c[:16]:<16} {pct(row['keras']):>8} {pct(row['float']):>8} {pct(row['int8']):>8}")
    lines.append(f"{'size':<18} {'':>8} {sizes['float'] / 1024:>7.0f}K {sizes['int8'] / 1024:>7.0f}K"
                 f"  (int8 = {sizes['int8'] / sizes['float']:.0%} of float)")
    lines.append(f"int8 agrees with float on {m['int8_float_agreement']:.1%} and with Keras on "
                 f"{m['int8_keras_agreement']:.1%} of {m['test_images']} test images")
    return "\n".join(lines)


def gate(model: Any, src: Source, data: _Data, opts: Options, work: Path, progress: Callable[[str], None],
         clock: Clock | None = None, transform: np.ndarray | None = None
         ) -> tuple[list[interp.OpInfo], _Converted, Options, int]:
    """Quantize, evaluate and judge int8 against float (convert/gate.py); when the damage is
    real, climb the repair ladder (convert/ladder.py). Returns the int8 graph's ops, the passing
    evaluation, the options that made it and its number of calibration photos. ``transform``:
    the feature output's map (``quantize.with_features``)."""
    from . import gate as judge
    from . import ladder

    decoded = {opts.calibration: data}
    clock = clock or Clock()

    def attempt(o: Options) -> tuple[tuple[list[interp.OpInfo], _Converted, int], judge.Evidence]:
        if o.calibration not in decoded:
            with clock("decode photos"):
                decoded[o.calibration] = replace(data, **_calibration(src, o))
        d = decoded[o.calibration]
        with clock("quantize"):
            ops, seconds = quantize_models(model, d, o, work, progress, transform)
        with clock("evaluate"):
            conv = evaluate_models(model, src, d, work, progress)
        conv.metrics["convert_seconds"] = round(seconds, 1)
        return (ops, conv, len(d.calib)), judge.compare(conv.preds["float"], conv.preds["int8"], d.y_test, src.labels)

    try:
        (ops, conv, n_calib), used, verdict, record = ladder.climb(attempt, opts, len(src.train), opts.targets,
                                                                   progress, opts.repair)
    except ladder.Damaged as e:
        raise ConvertError(f"{e}; other fixes: another architecture, or --max-drop/--min-agreement if this loss "
                           "is acceptable; no bundle written") from None
    conv.metrics["gate"] = record
    conv.table += "\n" + judge.format_verdict(verdict)
    return ops, conv, used, n_calib


def _calibration(src: Source, opts: Options) -> dict[str, Any]:
    calib = dataset.stratified(src.train, opts.calibration)
    c = src.contract
    return {"calib": calib, "x_cal": dataset.decode(calib, c.height, c.width, c.resize)}


# --- golden photos -------------------------------------------------------------------------


def pick_golden(test: list[dataset.Sample], scores: np.ndarray, limit: int = GOLDEN_MAX) -> list[dataset.Sample]:
    """One or two held-out photos per class (at most ``limit``): those the int8 model classifies
    correctly with the least confidence, whose outputs move most when anything changes."""
    n_classes = scores.shape[1]
    per = 2 if 2 * n_classes <= limit else 1
    picked: list[dataset.Sample] = []
    for label in range(n_classes):
        idx = [i for i, s in enumerate(test) if s.label == label]
        right = [i for i in idx if scores[i].argmax() == label] or idx
        right.sort(key=lambda i: (float(scores[i].max()), test[i].rel))
        picked.extend(test[i] for i in right[:per])
    return picked[:limit]


def record_golden(model: Path, labels: list[str], contract: InputContract,
                  photos: list[dataset.Sample]) -> tuple[dict, dict]:
    """The golden section and files for ``photos``, through the runtime's own path."""
    with Classifier(model, labels=labels, backend="cpu", resize=contract.resize, crop=contract.crop,  # type: ignore[arg-type]
                    normalization=contract.normalization, output="probabilities", decode=contract.decode) as clf:  # type: ignore[arg-type]
        return golden.record(clf, [golden.Photo(s.path, labels[s.label], s.rel) for s in photos])


# --- features for edgecls teach ----------------------------------------------------------


def record_features(model: Path, src: Source, x_train: np.ndarray, files: dict[str, Any],
                    progress: Callable[[str], None], whitened: bool = False) -> dict[str, Any] | None:
    """Embed every training photo (``x_train``, decoded by the contract) with the int8 model's
    feature output and add the per-class prototypes (edge_runtime/bundle/head.py) to ``files``;
    returns the bundle's ``features`` section (``whitened``: the output is the pooled features
    through convert/embedding.py's map), or None (said) when the model has no feature output."""
    with Classifier(model, labels=src.labels, backend="cpu", normalization=Normalization(0.0, 1.0),
                    output="probabilities") as clf:
        if not clf.has_features:
            progress("no feature tensor before the classifier layer: this bundle cannot be taught (edgecls teach)")
            return None
        spec = clf.features_spec
        progress(f"embedding {len(src.train)} training photos for the prototypes edgecls teach starts from")
        feats = np.stack([clf.embed(clf.prepare(img)) for img in x_train])
    protos = head.class_means(feats, src.labels, [src.labels[s.label] for s in src.train])
    files[head.PROTOTYPES] = protos.to_bytes()
    section = {"output": "features", "dim": protos.dim, "dtype": spec.dtype.name, "scale": spec.scale,
               "zero_point": spec.zero_point, "layer": "embedding" if whitened else "pool",
               "prototypes": head.PROTOTYPES, "photos": int(len(src.train))}
    if whitened:
        section["whitening"] = {"of": "pool", "covariance": "within-class", "shrinkage": embedding.SHRINKAGE}
    return section


# --- the whole conversion ------------------------------------------------------------------


@dataclass
class _Data:
    """The photos of one conversion, decoded and resized once by the runtime's own code."""

    calib: list[dataset.Sample]
    x_cal: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass
class _Converted:
    """What evaluation found about the converted models."""

    metrics: dict[str, Any]
    table: str
    q_scores: np.ndarray
    tensors: tuple[interp.TensorSpec, interp.TensorSpec]  # the int8 model's input and output
    preds: dict[str, np.ndarray] = field(default_factory=dict)  # top-1 of "float" and "int8" per test image


def convert(source: str | os.PathLike[str], out: str | os.PathLike[str], opts: Options,
            progress: Callable[[str], None] = log) -> Result:
    """Convert, evaluate, gate, record golden photos, optionally compile for the Edge TPU, and
    write the bundle atomically. Nothing is written at ``out`` unless every step passed, and
    nothing but an earlier bundle is ever replaced there (convert/destination.py)."""
    destination.check_out(out)
    if opts.metadata:
        metadata.metadata_schema()  # fail before the long work, not after, when it cannot be written
    clock = Clock()
    with clock("load model"):
        src, model = load_source(Path(source), opts)
    with clock("decode photos"):
        data = decode_photos(src, opts, progress)
    transform, x_train = None, None
    if opts.features:  # the training photos, for the whitening and the prototypes: decoded once
        with clock("decode photos"):
            c = src.contract
            x_train = dataset.decode(src.train, c.height, c.width, c.resize, decode_mode=c.decode)
    if x_train is not None and opts.whiten:
        with clock("fit embedding"):
            transform = embedding.fit(model, x_train, np.array([s.label for s in src.train]), progress)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.convert-", dir=out.parent))
    try:
        ops, conv, opts, n_calib = gate(model, src, data, opts, work, progress, clock, transform)
        with clock("golden photos"):
            golden_meta, golden_files = record_golden(work / "model.tflite", src.labels, src.contract,
                                                      pick_golden(src.test, conv.q_scores))
        files: dict[str, Any] = {"model.tflite": work / "model.tflite", "model_float.tflite": work / "model_float.tflite",
                                 "labels.txt": "".join(l + "\n" for l in src.labels).encode("utf-8"), **golden_files}
        features = (record_features(work / "model.tflite", src, x_train, files, progress, transform is not None)
                    if x_train is not None else None)
        with clock("edge tpu"):
            edgetpu_info = compile_edgetpu(work, ops, opts, files, progress) if opts.edgetpu else {}
        meta = bundle_meta(src, opts, out, conv, n_calib, len(ops), golden_meta, edgetpu_info)
        if features:
            meta[head.FEATURES_SECTION] = features
        if opts.imx500:
            with clock("imx500"):
                meta["imx500"] = convert_imx500(model, src, data, conv, work, golden_meta, files, opts, progress)
        with clock("metadata and write"):
            meta["tflite_metadata"] = metadata.attach(files, metadata.describe(
                meta["name"], src.labels, author=opts.author, license=opts.license,
                features=features["dim"] if features else 0), opts.metadata)
            bundle = destination.write(out, files, meta, tar=opts.tar, progress=progress)
        return Result(bundle, conv.metrics, edgetpu_info, conv.table,
                      {k: v for k, v in clock.to_json().items() if v["wall"] >= 0.005})
    finally:
        shutil.rmtree(work, ignore_errors=True)


def load_source(src_path: Path, opts: Options) -> tuple[Source, Any]:
    """A training run directory or a bare .keras/.h5 model, checked against its contract."""
    from train._tf import keras  # names the missing extra on a runtime-only install

    if src_path.is_dir():
        src = from_run(src_path, opts)
        model = keras.models.load_model(src.model_path, compile=False)
    elif src_path.suffix in (".keras", ".h5") and src_path.is_file():
        try:
            model = keras.models.load_model(src_path, compile=False)
        except Exception as e:
            raise ConvertError(f"{src_path}: cannot load this Keras model ({str(e).splitlines()[0][:200]})") from None
        _, h, w, _ = model.input_shape
        src = from_model(src_path, opts, h, w)
    else:
        raise ConvertError(f"{src_path}: not a training run directory nor a .keras/.h5 model file")
    if model.output_shape[-1] != len(src.labels):
        raise ConvertError(f"{src.model_path}: outputs {model.output_shape[-1]} classes but there are "
                           f"{len(src.labels)} labels; use the label file that belongs to this model")
    h, w = src.contract.height, src.contract.width
    if tuple(model.input_shape[1:3]) != (h, w):
        raise ConvertError(f"{src.model_path}: input {model.input_shape[1:3]} does not match the "
                           f"preprocessing spec {h}x{w}")
    if not src.test:
        raise ConvertError("no held-out test photos to evaluate on; the dataset needs more photos per class")
    return src, model


def decode_photos(src: Source, opts: Options, progress: Callable[[str], None]) -> _Data:
    c = src.contract
    calib = dataset.stratified(src.train, opts.calibration)
    progress(f"decoding {len(calib)} calibration and {len(src.test)} test photos ({c.resize} resize to "
             f"{c.height}x{c.width})")
    return _Data(calib, dataset.decode(calib, c.height, c.width, c.resize, decode_mode=c.decode),
                 dataset.decode(src.test, c.height, c.width, c.resize, decode_mode=c.decode),
                 np.array([s.label for s in src.test]))


def quantize_models(model: Any, data: _Data, opts: Options, work: Path, progress: Callable[[str], None],
                    transform: np.ndarray | None = None) -> tuple[list[interp.OpInfo], float]:
    """model_float.tflite and the full-int8 model.tflite in ``work`` (with the feature output, mapped
    by ``transform`` when given, if ``opts.features``); returns the int8 graph's ops and the
    seconds it took."""
    from . import quantize

    t = time.perf_counter()
    model = (quantize.with_features(model, transform) if opts.features else None) or model
    (work / "model_float.tflite").write_bytes(quantize.to_float(model))
    progress(f"quantizing to full int8 ({opts.io} I/O, {len(data.calib)} calibration photos, dense layers "
             f"{'per channel' if opts.per_channel_dense else 'per tensor'})")
    (work / "model.tflite").write_bytes(quantize.to_int8(model, data.x_cal, opts.io, opts.per_channel_dense))
    seconds = time.perf_counter() - t
    ops = interp.read_ops(str(work / "model.tflite"))
    floats = quantize.float_ops(ops)
    if floats:
        raise ConvertError(f"the int8 model still computes in float: {'; '.join(floats[:3])}")
    return ops, seconds


def evaluate_models(model: Any, src: Source, data: _Data, work: Path, progress: Callable[[str], None]) -> _Converted:
    """Top-1 of Keras, the float and the int8 model on the test split, per class, and sizes."""
    progress(f"evaluating Keras, float and int8 on {len(src.test)} test photos")
    keras_pred = np.argmax(model.predict(data.x_test.astype(np.float32), batch_size=32, verbose=0), axis=1)
    f_scores, _, _ = _tflite_predict(work / "model_float.tflite", src.labels, data.x_test)
    q_scores, qin, qout = _tflite_predict(work / "model.tflite", src.labels, data.x_test)
    preds = {"float": f_scores.argmax(1), "int8": q_scores.argmax(1)}
    metrics = evaluate(keras_pred, preds["float"], preds["int8"], data.y_test, src.labels)
    sizes = {"float": (work / "model_float.tflite").stat().st_size, "int8": (work / "model.tflite").stat().st_size}
    metrics["size_bytes"] = sizes
    metrics["int8_size_ratio"] = round(sizes["int8"] / sizes["float"], 4)
    table = format_table(metrics, sizes)
    progress(table)
    return _Converted(metrics, table, q_scores, (qin, qout), preds)


def compile_edgetpu(work: Path, ops: list[interp.OpInfo], opts: Options, files: dict[str, Any],
                    progress: Callable[[str], None]) -> dict[str, Any]:
    """Preflight, and compile where the compiler is installed (adding model_edgetpu.tflite to ``files``)."""
    from . import edgetpu

    pf = edgetpu.preflight(work / "model.tflite", ops)
    progress("Edge TPU preflight (Coral's documented ops and constraints):\n" + pf.table())
    info: dict[str, Any] = {"preflight": pf.to_dict()}
    if edgetpu.compiler_path() is None:
        info.update(compiled=False, reason=edgetpu.INSTALL_HINT)
        return info
    compiled, clog = edgetpu.compile_model(work / "model.tflite", work / "edgetpu", opts.compiler_timeout)
    files["model_edgetpu.tflite"] = compiled
    info.update(compiled=True, compiler=clog.to_dict())
    return info


def convert_imx500(model: Any, src: Source, data: _Data, conv: _Converted, work: Path, golden_meta: dict[str, Any],
                   files: dict[str, Any], opts: Options, progress: Callable[[str], None]) -> dict[str, Any]:
    """Quantize and convert for the Raspberry Pi AI Camera (convert/imx500.py), adding imx500/ to
    ``files``; on failure the CPU bundle is still written and the section says why."""
    from . import gate as judge
    from . import imx500

    c = src.contract
    golden_photos = pick_golden(src.test, conv.q_scores)
    try:
        r = imx500.build_imx500(model, data.x_cal, data.x_test, data.y_test,
                                dataset.decode(golden_photos, c.height, c.width, c.resize), src.labels,
                                work / "imx500", progress, name=opts.name or Path(src.model_path).parent.name,
                                golden_files=[p["file"] for p in golden_meta["photos"]])
        progress(r.table)
        verdict = imx500.judge(r.preds["float"], r.preds["imx500"], data.y_test, src.labels, opts.max_drop,
                               opts.alpha, opts.min_agreement)
    except imx500.Imx500Error as e:
        return {"converted": False, "error": str(e)}
    progress(judge.format_verdict(verdict, "IMX500 gate"))
    files.update(r.files)
    return {**r.meta, "metrics": {**r.meta["metrics"], "gate": verdict.to_json()}}


def bundle_meta(src: Source, opts: Options, out: Path, conv: _Converted, n_calib: int, n_ops: int,
                golden_meta: dict[str, Any], edgetpu_info: dict[str, Any]) -> dict[str, Any]:
    """The edgecls.json fields (write_bundle adds the format version, the time and the files)."""
    qin, qout = conv.tensors
    meta = {
        "name": opts.name or out.name,
        "input": replace(src.contract, tensor=TensorQuant(qin.dtype.name, qin.scale, qin.zero_point)).to_json(),
        "output": OutputContract(len(src.labels), "probabilities",
                                 TensorQuant(qout.dtype.name, qout.scale, qout.zero_point)).to_json(),
        "quantization": {"io": opts.io, "calibration_images": n_calib, "per_channel_dense": opts.per_channel_dense,
                         "float_ops": 0, "ops": n_ops, "repair_step": conv.metrics["gate"]["passed_step"],
                         "target_runtimes": list(opts.targets)},
        "source": {**src.provenance, "edgecls": __version__},
        "metrics": conv.metrics,
        "golden": golden_meta,
        # what a camera compares its live frames with (edge_runtime/live/drift.py): the int8 model on the held-out photos
        "reference": Reference.from_scores(conv.q_scores, f"held-out test split ({len(conv.q_scores)} photos)").to_json(),
    }
    if edgetpu_info:
        meta["edgetpu"] = edgetpu_info
    return meta
