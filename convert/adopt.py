"""``edgecls adopt``: a classifier made elsewhere (Teachable Machine's export, MediaPipe Model
Maker, Coral's models, a Keras model converted by hand) becomes a verified bundle.

What the bundle needs and where it comes from:

- labels: ``--labels FILE``, else the label file packed in the model's TFLite metadata;
- the input's normalization: ``--mean/--std``, else the metadata's; a float model with neither
  is refused (nobody can guess it), and the error lists the usual conventions. A quantized
  input takes the pixels as its bytes (uint8 as is, int8 shifted by 128), as Coral's examples,
  the TFLite Task Library and MediaPipe feed it: its quantization already holds the
  normalization;
- the resize: ``--resize`` (the model cannot say how it was trained);
- golden photos: one or two per class folder of ``--photos DIR`` (or its first photos), recorded
  through the runtime's own path; the drift reference (``bundle/reference.py``): the model's top-1
  scores, margins and labels on every photo of ``--photos``; with one folder per class the report gives top-1 per class
  and warns about folders that name no label of the model.

The model keeps metadata another tool wrote; one without metadata (or whose labels or
normalization were overridden) gets edgecls's. The bundle is written atomically and checked
with ``verify`` before the command returns. Nothing here needs TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_runtime import __version__, golden
from edge_runtime.bundle import head
from edge_runtime.bundle.classifier import Classifier
from edge_runtime.bundle.inspect import inspect_model
from edge_runtime.bundle.reference import Reference
from edge_runtime.cli.args import positive_float
from edge_runtime.errors import EdgeclsError
from edge_runtime.model import interpreter as interp
from edge_runtime.model import metadata as tflite_metadata
from edge_runtime.model.contract import InputContract, OutputContract, TensorQuant
from edge_runtime.model.labels import read_labels
from edge_runtime.model.pipeline import prefetch
from edge_runtime.model.preprocess import DEFAULT_RESIZE, IMAGE_SUFFIXES, RESIZE_METHODS, Normalization

from . import destination

CONVENTIONS = "0/255 for inputs in [0, 1], 127.5/127.5 for inputs in [-1, 1], 0/1 for raw pixels 0..255"


class AdoptError(EdgeclsError):
    """A model that cannot be adopted as it is, with what to pass to adopt it."""


@dataclass
class Options:
    photos: str
    labels: str | None = None
    mean: float | None = None
    std: float | None = None
    resize: str = DEFAULT_RESIZE
    name: str | None = None
    tar: bool = False
    metadata: bool = True  # write edgecls's metadata where the model's own is missing or overridden
    author: str | None = None  # the metadata's author, where edgecls writes it (default: edgecls VERSION)
    license: str | None = None


@dataclass
class Report:
    bundle: Path
    labels_from: str
    normalization_from: str
    metadata: str  # what the bundle's model carries
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    top1: float | None = None
    photos: int = 0
    warnings: list[str] = field(default_factory=list)
    verified: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "labels_from": self.labels_from,
                "normalization_from": self.normalization_from, "metadata": self.metadata, "photos": self.photos,
                "top1": self.top1, "per_class": self.per_class, "warnings": self.warnings, "verified": self.verified}


# --- what the model needs ------------------------------------------------------------------


def _labels(model: str, opts: Options, meta: tflite_metadata.ModelMetadata | None) -> tuple[list[str], str]:
    if opts.labels:
        return read_labels(opts.labels), opts.labels
    if meta is not None and meta.labels:
        return meta.labels, f"the model's TFLite metadata ({meta.labels_file.name})"  # type: ignore[union-attr]
    raise AdoptError(f"{model}: carries no label file in TFLite metadata; pass --labels FILE (one label a line, "
                     "in the order of the model's outputs)")


def _normalization(model: str, opts: Options, spec: dict[str, Any],
                   meta: tflite_metadata.ModelMetadata | None) -> tuple[Normalization, str]:
    if (opts.mean is None) != (opts.std is None):
        raise AdoptError("--mean and --std go together; pass both")
    if opts.mean is not None and opts.std is not None:
        return Normalization(opts.mean, opts.std), "--mean/--std"
    if spec["dtype"] == "float32":
        n = meta.normalization if meta else None
        if n is None:
            raise AdoptError(f"{model}: float input and no normalization in its TFLite metadata; pass the one it "
                             f"was trained with as --mean M --std S (the model gets (pixel - M) / S): {CONVENTIONS}")
        return n, "the model's TFLite metadata"
    # A quantized input: the pixel is the tensor's byte, so (p - mean) / std / scale + zp == p (uint8).
    shift = 128 if spec["dtype"] == "int8" else 0
    return (Normalization(float(spec["zero_point"] + shift), 1.0 / spec["scale"]),
            "the input's quantization (pixels enter as its bytes)")


# --- photos --------------------------------------------------------------------------------


def scan_photos(root: str) -> tuple[dict[str, list[Path]], list[Path]]:
    """({class folder: its photos}, loose photos at the top), sorted."""
    base = Path(root)
    if not base.is_dir():
        raise AdoptError(f"{root}: --photos must be a folder of photos (one sub-folder per class for a report)")
    folders: dict[str, list[Path]] = {}
    loose: list[Path] = []
    for entry in sorted(base.iterdir()):
        if entry.is_dir():
            found = sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if found:
                folders[entry.name] = found
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            loose.append(entry)
    if not folders and not loose:
        raise AdoptError(f"{root}: no photos found ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return folders, loose


def match_label(folder: str, labels: list[str]) -> int | None:
    """The label a class folder names: the same text, ignoring case, or a label's first name
    (Coral's 'tabby, tabby cat' is 'tabby')."""
    key = folder.strip().lower()
    for i, label in enumerate(labels):
        if label.strip().lower() == key or label.split(",")[0].strip().lower() == key:
            return i
    return None


def evaluate(clf: Classifier, folders: dict[str, list[Path]], labels: list[str], warnings: list[str],
             score: Callable[[Path], np.ndarray] | None = None) -> tuple[dict[str, dict[str, Any]], float | None]:
    """Top-1 per class folder that names a label; a warning for every folder that names none.
    ``score``: a photo's class scores (default: run it through ``clf``)."""
    per: dict[str, dict[str, Any]] = {}
    right = total = 0
    for name, photos in folders.items():
        index = match_label(name, labels)
        if index is None:
            warnings.append(f"folder '{name}' ({len(photos)} photos) names no label of the model; "
                            "its photos count for no class (rename it to the model's label)")
            per[name] = {"label": None, "photos": len(photos), "top1": None}
            continue
        if score is None:  # the next photos decode while this one runs (in order; an unreadable one raises)
            hits = sum(int(np.argmax(clf.scores(clf.infer(x)))) == index
                       for _, x in prefetch([str(p) for p in photos], clf.prepare, skip=()))
        else:
            hits = sum(int(np.argmax(score(p))) == index for p in photos)
        right, total = right + hits, total + len(photos)
        per[name] = {"label": labels[index], "index": index, "photos": len(photos),
                     "top1": round(hits / len(photos), 4)}
    return per, (round(right / total, 4) if total else None)


def pick_golden(folders: dict[str, list[Path]], loose: list[Path], limit: int = golden.MAX_PHOTOS) -> list[golden.Photo]:
    """One or two photos per class folder (two when that stays within ``limit``), else the first loose ones."""
    photos: list[golden.Photo] = []
    per = 2 if 2 * len(folders) <= limit else 1
    for name, paths in folders.items():
        photos += [golden.Photo(p, name, f"{name}/{p.name}") for p in paths[:per]]
    photos += [golden.Photo(p, "?", p.name) for p in loose]
    return photos[:limit]


# --- the whole adoption --------------------------------------------------------------------


def adopt(model: str | os.PathLike[str], out: str | os.PathLike[str], opts: Options,
          progress: Callable[[str], None] = lambda m: print(f"edgecls: {m}", file=sys.stderr)) -> Report:
    """Check, evaluate, record golden photos, write the bundle atomically, verify it. Nothing but
    an earlier bundle is ever replaced at ``out`` (convert/destination.py)."""
    destination.check_out(out)
    path = os.fspath(model)
    data, info = _check_model(path, opts)
    meta = tflite_metadata.read(data, path)
    spec = info["inputs"][0]
    labels, labels_from = _labels(path, opts, meta)
    norm, norm_from = _normalization(path, opts, spec, meta)
    if opts.metadata and not _keeps_metadata(meta, opts):
        from .metadata import metadata_schema

        metadata_schema()  # fail now, not after the photos, where it cannot be written
    folders, loose = scan_photos(opts.photos)
    rep = Report(Path(out), labels_from, norm_from, "")
    with Classifier(path, labels=labels, backend="cpu", resize=opts.resize,  # type: ignore[arg-type]
                    normalization=norm) as clf:
        progress(f"{path}: {info['kind']}, input {clf.height}x{clf.width} {spec['dtype']}, {clf.output_kind}; "
                 f"labels from {labels_from}; normalization (pixel - {norm.mean:g}) / {norm.std:g} from {norm_from}")
        if meta and meta.labels and opts.labels and meta.labels != labels:
            rep.warnings.append(f"--labels {opts.labels} differs from the labels in the model's metadata; "
                                "the bundle uses --labels (and its model gets metadata that says so)")
        scored: dict[Path, np.ndarray] = {}  # every photo once: for the report and for the drift reference
        for p in [p for paths in folders.values() for p in paths] + loose:
            scored[p] = clf.scores(clf.infer(clf.prepare(str(p))))
        rep.per_class, rep.top1 = evaluate(clf, folders, labels, rep.warnings, scored.__getitem__)
        rep.photos = sum(len(p) for p in folders.values()) + len(loose)
        golden_meta, golden_files = golden.record(clf, pick_golden(folders, loose))
        features = adopt_features(clf, folders, labels, progress)
        qin, qout = clf.input_spec, clf.output_spec
        output_kind = clf.output_kind
    description = metadata_description(opts, out, labels, norm, output_kind)
    if features:  # the metadata describes both outputs, as readers such as MediaPipe check
        description = replace(description, features=features["dim"])
    model_bytes, rep.metadata = _with_metadata(data, meta, opts, description)
    contract = InputContract(clf.height, clf.width, resize=opts.resize, normalization=norm,
                             tensor=TensorQuant(qin.dtype.name, qin.scale, qin.zero_point))
    files: dict[str, Any] = {"model.tflite": model_bytes, **golden_files,
                             "labels.txt": "".join(label + "\n" for label in labels).encode("utf-8")}
    if features:
        files[head.PROTOTYPES] = features.pop("data")
    sibling = Path(path).with_name(Path(path).stem + "_edgetpu.tflite")
    if sibling.is_file():
        files["model_edgetpu.tflite"] = sibling
        progress(f"adding {sibling} as model_edgetpu.tflite")
    bundle_meta = {
        "name": opts.name or Path(out).name,
        "input": contract.to_json(),
        "output": OutputContract(len(labels), output_kind, TensorQuant(qout.dtype.name, qout.scale,
                                                                       qout.zero_point)).to_json(),
        "source": {"adopted": str(Path(path).resolve()), "sha256": info["sha256"], "labels_from": labels_from,
                   "normalization_from": norm_from, "metadata": rep.metadata, "edgecls": __version__},
        "metrics": {"photos": rep.photos, "top1": rep.top1, "per_class": rep.per_class},
        "golden": golden_meta,
        "reference": Reference.from_scores(np.stack(list(scored.values())), f"adopt --photos ({rep.photos} photos)")
                              .to_json(),
    }
    if features:
        bundle_meta[head.FEATURES_SECTION] = features
    rep.bundle = destination.write(out, files, bundle_meta, tar=opts.tar, progress=progress)
    rep.verified = _verify(rep.bundle)
    return rep


def adopt_features(clf: Classifier, folders: dict[str, list[Path]], labels: list[str],
                   progress: Callable[[str], None]) -> dict[str, Any] | None:
    """A model with a feature output (two outputs named ``scores`` and ``features``, as edgecls
    convert exports them) and photos of every class: the prototypes edgecls teach starts from
    (``data``: the file's bytes) and the rest of the ``features`` section. Otherwise None, said."""
    if not clf.has_features:
        progress("note: the model has no feature output (outputs named 'scores' and 'features'), so edgecls teach "
                 "cannot teach this bundle")
        return None
    missing = [c for c in labels if c not in folders]
    if missing:
        progress(f"note: no photos of {', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}: without photos "
                 "of every class there are no prototypes, so edgecls teach cannot teach this bundle")
        return None
    feats = np.stack([clf.embed(clf.prepare(str(p))) for c in labels for p in folders[c]])
    protos = head.class_means(feats, labels, [c for c in labels for _ in folders[c]])
    spec = clf.features_spec
    return {"data": protos.to_bytes(), "output": "features", "dim": protos.dim, "dtype": spec.dtype.name,
            "scale": spec.scale, "zero_point": spec.zero_point, "prototypes": head.PROTOTYPES,
            "photos": int(len(feats))}


def _check_model(path: str, opts: Options) -> tuple[bytes, dict[str, Any]]:
    """The model's bytes and what inspect says of it, once it is a .tflite edgecls can run on the CPU."""
    if Path(path).is_dir() or Path(path).suffix in (".keras", ".h5"):
        raise AdoptError(f"{path}: adopt takes a .tflite; a Keras model or SavedModel goes through edgecls convert "
                         "(with --labels and --calibration-data)")
    data = interp.read_model_file(path)
    if interp.is_edgetpu_model(data):
        raise AdoptError(f"{path}: compiled for the Edge TPU; adopt the CPU model it was compiled from (its "
                         "*_edgetpu.tflite sibling then joins the bundle)")
    if opts.resize not in RESIZE_METHODS:
        raise ValueError(f"unknown resize method {opts.resize!r}; valid: {', '.join(RESIZE_METHODS)}")
    info = inspect_model(path)
    if not info["runs"]:
        raise AdoptError(f"{path}: edgecls cannot run this model: {info['reason']}")
    return data, info


def metadata_description(opts: Options, out: str | os.PathLike[str], labels: list[str], norm: Any,
                         output_kind: str) -> Any:
    from . import metadata

    return metadata.describe(opts.name or Path(out).name, labels, author=opts.author, license=opts.license,
                             normalization=norm, output=output_kind)


def _with_metadata(data: bytes, meta: Any, opts: Options, description: Any) -> tuple[bytes, str]:
    """The model's bytes for the bundle and what happened to its metadata: kept when another tool
    wrote it and nothing was overridden, else written by edgecls (none with --no-metadata)."""
    from . import metadata

    if _keeps_metadata(meta, opts):
        return data, f"kept as written by its maker ('{meta.name}')"
    if meta is not None and not opts.metadata:
        return data, f"kept as written by its maker ('{meta.name}'), not rewritten for --labels/--mean (--no-metadata)"
    files = {"model.tflite": data}
    record = metadata.attach(files, description, opts.metadata)
    return files["model.tflite"], "written by edgecls" if record["written"] else f"none ({record['reason']})"


def _keeps_metadata(meta: Any, opts: Options) -> bool:
    """The model's own metadata stays when nothing it says was overridden."""
    return meta is not None and not opts.labels and opts.mean is None


def _verify(bundle: Path) -> str:
    from edge_runtime.bundle.verify import verify

    checked = verify(bundle, backend="cpu")
    if not checked.ok:
        raise AdoptError(f"{bundle}: written, but edgecls verify fails on it here: {'; '.join(checked.causes())}")
    return f"{sum(p.ok for p in checked.photos)}/{len(checked.photos)} golden photos match ({checked.mode})"


def format_report(rep: Report) -> str:
    lines = [f"labels: {rep.labels_from}; normalization: {rep.normalization_from}; metadata: {rep.metadata}"]
    if rep.per_class:
        lines.append(f"{'class folder':<24} {'label':<24} {'photos':>6} {'top-1':>7}")
        for name, row in rep.per_class.items():
            acc = "-" if row["top1"] is None else f"{row['top1']:.1%}"
            lines.append(f"{name[:24]:<24} {str(row['label'] or '(no such label)')[:24]:<24} {row['photos']:>6} {acc:>7}")
        if rep.top1 is not None:
            n = sum(row["photos"] for row in rep.per_class.values() if row["label"] is not None)
            lines.append(f"{'all classes named by a label':<49} {n:>6} {rep.top1:>7.1%}")
    lines.append(f"verify: {rep.verified}")
    return "\n".join(lines)


# --- the command ---------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("adopt", help="turn a classifier made elsewhere (.tflite) into a verified bundle",
                       description="Make a bundle of a .tflite image classifier made elsewhere (Teachable Machine, "
                       "MediaPipe Model Maker, Coral, a Keras model converted by hand). Labels and normalization come "
                       "from the model's TFLite metadata when present; a float model without metadata needs --mean "
                       f"and --std ({CONVENTIONS}). With one folder per class in --photos, top-1 per class is "
                       "reported and folders that name no label are warned about. Golden photos come from --photos; "
                       "the bundle is written atomically and verified. Keras models go through edgecls convert.")
    p.add_argument("model", metavar="MODEL.tflite", help="the classifier (a CPU model; its *_edgetpu.tflite "
                   "sibling joins the bundle)")
    p.add_argument("--photos", required=True, metavar="DIR", help="photos, ideally one sub-folder per class named "
                   "by its label")
    p.add_argument("--out", required=True, metavar="BUNDLE_DIR", help="bundle directory to write: a new or empty "
                   "folder, or an earlier bundle (replaced atomically); anything else is refused")
    p.add_argument("--labels", metavar="FILE", help="label file (default: the one in the model's metadata)")
    p.add_argument("--mean", type=float, default=None, metavar="M", help="the model takes (pixel - M) / S")
    p.add_argument("--std", type=positive_float, default=None, metavar="S", help="see --mean")
    p.add_argument("--resize", choices=RESIZE_METHODS, default=DEFAULT_RESIZE,
                   help=f"resize method the model was trained with (default {DEFAULT_RESIZE})")
    p.add_argument("--name", help="bundle name (default: the directory name)")
    p.add_argument("--tar", action="store_true", help="also write BUNDLE_DIR.tar.gz")
    p.add_argument("--author", metavar="TEXT", help="author in the metadata edgecls writes (default: edgecls VERSION)")
    p.add_argument("--license", metavar="TEXT", help="license in the metadata edgecls writes (e.g. an SPDX id)")
    p.add_argument("--no-metadata", action="store_true",
                   help="where the model has no metadata (or --labels/--mean override it), write it without "
                        "edgecls's; without this, adopt fails where the metadata cannot be written")
    p.add_argument("--json", action="store_true", help="the report as one JSON line")
    p.set_defaults(func=cmd_adopt)


def cmd_adopt(a: argparse.Namespace) -> int:
    opts = Options(photos=a.photos, labels=a.labels, mean=a.mean, std=a.std, resize=a.resize, name=a.name, tar=a.tar,
                   metadata=not a.no_metadata, author=a.author, license=a.license)
    rep = adopt(a.model, a.out, opts)
    print(json.dumps(rep.to_dict()) if a.json else format_report(rep), flush=True)
    for w in rep.warnings:
        print(f"edgecls: warning: {w}", file=sys.stderr)
    print(f"edgecls: wrote {rep.bundle}" + (f" and {rep.bundle}.tar.gz" if a.tar else ""), file=sys.stderr)
    return 0
