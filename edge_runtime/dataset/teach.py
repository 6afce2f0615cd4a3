"""``edgecls teach``: new classes from a few photos, on the device, without TensorFlow.

What it does, in order, and nothing is written until every step passed:

1. read the parent bundle (verified as any bundle) and its ``features`` section: a bundle made
   without features cannot be taught, and says so;
2. read ``DATASET/<class>/`` (every class folder a safe name, at least ``MIN_PHOTOS`` readable
   photos each);
3. embed each photo with the bundle's own int8 model (its ``features`` output, one invoke a
   photo), and merge the class means into the parent's prototypes (``bundle/head.py``): a new
   label is added, a known label refined, and with ``only`` the taught classes replace all;
4. stage the new bundle (the parent's model files, unchanged; new labels, prototypes and a
   ``head`` section), record one golden photo per class through the staged bundle's own path
   (the parent's golden photo for a kept class, a taught photo for a taught one), and write it
   with ``format.write_bundle`` (atomic; an earlier bundle at ``out`` is replaced whole or not at
   all). The ``taught`` section records the parent (name and sha256 of its ``edgecls.json``) and
   every taught photo (class, name, sha256).

``teach_into`` does the same into a deployed bundle folder (``bundle/deployed.py``): the taught
bundle becomes a new version beside the others and goes live as a deploy's would (a rollback
returns to the version live before); a camera running on DIR/current follows it (``live/swap.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_runtime import __version__
from edge_runtime.bundle import golden
from edge_runtime.bundle.classifier import Classifier
from edge_runtime.bundle.deployed import KEEP, Deployed, DeployedError, version_id
from edge_runtime.bundle.format import LABELS, MODEL_FILES, Bundle, load_bundle, sha256_file, write_bundle
from edge_runtime.bundle.head import (DEFAULT_SCALE, FEATURES_SECTION, HEAD_SECTION, KIND, OUT_SCALE, PROTOTYPES,
                                      Prototypes, class_means, features_section, fit_scale, loo_probabilities)
from edge_runtime.bundle.meta import METADATA
from edge_runtime.bundle.reference import Reference
from edge_runtime.bundle.verify import verify
from edge_runtime.dataset.files import IMAGE_SUFFIXES, check_class
from edge_runtime.errors import EdgeclsError, ImageError
from edge_runtime.model.contract import OutputContract, TensorQuant

MIN_PHOTOS = 3
TAUGHT_SECTION = "taught"
REFERENCE = "reference"  # the drift reference (bundle/reference.py): the parent's is of other classes, so made anew
# Sections of the parent's edgecls.json that describe the parent's classes or files, not the taught bundle's.
DROPPED = ("files", "format_version", "created", "golden", "metrics", "imx500", "tflite_metadata", "output", REFERENCE,
           "name", FEATURES_SECTION, HEAD_SECTION, TAUGHT_SECTION)


class TeachError(EdgeclsError):
    """A bundle that cannot be taught, or photos it cannot be taught with; nothing was written."""


@dataclass
class Taught:
    """What ``teach`` wrote."""

    bundle: Path
    labels: list[str]
    added: list[str]
    refined: list[str]
    kept: list[str]
    photos: int
    seconds: float
    embed_ms: float  # per photo
    meta: dict[str, Any] = field(default_factory=dict)
    version: str | None = None  # teach_into: the new live version's id
    was: str | None = None  # teach_into: the version live before it


def scan(dataset: Path) -> dict[str, list[Path]]:
    """``{class: [photo, ...]}`` of a folder per class; TeachError on a bad class name, a class
    with fewer than ``MIN_PHOTOS`` photos, or no class at all."""
    if not dataset.is_dir():
        raise TeachError(f"{dataset}: not a folder; pass a folder with one sub-folder of photos per class")
    classes: dict[str, list[Path]] = {}
    # DATASET/_review, _discarded and hidden folders are not classes (as for edgecls train).
    for d in sorted(p for p in dataset.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        try:
            name = check_class(d.name)
        except ValueError as e:
            raise TeachError(f"{d}: {e}; rename the folder") from None
        if name != d.name:
            raise TeachError(f"{d}: class folder {d.name!r} has spaces around its name; rename it to {name!r}")
        photos = sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")
                        and p.suffix.lower() in IMAGE_SUFFIXES)
        if len(photos) < MIN_PHOTOS:
            raise TeachError(f"{d}: {len(photos)} photo(s); teach needs at least {MIN_PHOTOS} per class "
                             "(10 is better) - add photos or remove the folder")
        classes[name] = photos
    if not classes:
        raise TeachError(f"{dataset}: no class folders; put the photos of each class in DATASET/<class>/")
    return classes


def parent_prototypes(bundle: Bundle) -> Prototypes:
    """The prototypes a bundle carries; TeachError (one line) when it was made without features."""
    section = features_section(bundle.meta)
    name = section.get("prototypes") if section else None
    if not isinstance(name, str) or name not in bundle.meta["files"]:
        raise TeachError(f"{bundle.path}: this bundle carries no features (made by an older edgecls convert, or "
                         "adopted), so it cannot be taught; reconvert it with this edgecls's `edgecls convert`")
    return Prototypes.from_file(bundle.path / name)


def embed_photos(clf: Classifier, classes: dict[str, list[Path]], progress: Callable[[str], None]) -> np.ndarray:
    """One feature vector per photo (classes in order), through the bundle's own preprocessing."""
    out = []
    for label, photos in classes.items():
        for p in photos:
            try:
                out.append(clf.embed(clf.prepare(str(p))))
            except ImageError as e:
                raise TeachError(f"{e}; remove or replace the photo") from None
        progress(f"embedded {len(photos)} photos of {label!r}")
    return np.stack(out)


def teach(parent: str | os.PathLike[str], dataset: str | os.PathLike[str], out: str | os.PathLike[str],
          only: bool = False, name: str | None = None, progress: Callable[[str], None] = lambda s: None,
          *, parent_name: bool = False) -> Taught:
    """Teach ``parent`` the classes of ``dataset`` and write the result to ``out`` (see the module's
    docstring). ``name``: the new bundle's, default the parent's with ``parent_name``, else ``out``'s
    folder name. Raises TeachError (nothing written) on a bundle or photos it cannot use."""
    t0 = time.perf_counter()
    check_out(Path(parent), Path(out))
    bundle = load_bundle(parent)
    base = parent_prototypes(bundle)
    classes = scan(Path(dataset))
    with Classifier(bundle.path, backend="cpu") as clf:
        if not clf.has_features:
            raise TeachError(f"{clf.model_path}: the model has no feature output, so this bundle cannot be taught; "
                             "reconvert it with this edgecls's `edgecls convert`")
        t1 = time.perf_counter()
        feats = embed_photos(clf, classes, progress)
        embed_s = time.perf_counter() - t1
    if feats.shape[1] != base.dim:
        raise TeachError(f"{bundle.path}/{PROTOTYPES}: prototypes of {base.dim} features, the model gives "
                         f"{feats.shape[1]}; reconvert the bundle")
    labels = list(classes)
    new = class_means(feats, labels, [c for c, ps in classes.items() for _ in ps])
    protos = base.merged(new, only)
    if len(protos.labels) < 2:
        raise TeachError(f"{dataset}: --only with one class leaves nothing to tell it from; a classifier needs at "
                         "least 2 classes - add a folder of another class")
    per_photo = [c for c, ps in classes.items() for _ in ps]
    scale = fit_scale(protos, feats, per_photo)
    meta = taught_meta(bundle, classes, protos, only, name or (bundle.name if parent_name else Path(out).name), scale)
    meta[REFERENCE] = Reference.from_scores(loo_probabilities(protos, feats, per_photo, scale),
                                            f"leave-one-out scores of the {len(per_photo)} taught photos").to_json()
    files = bundle_files(bundle, protos)
    result = write_taught(bundle, classes, files, meta, Path(out), progress)
    n = sum(len(p) for p in classes.values())
    taught = meta[TAUGHT_SECTION]
    return Taught(result, protos.labels, taught["added"], taught["refined"], taught["kept"], n,
                  time.perf_counter() - t0, embed_s / n * 1e3, meta)


def teach_into(folder: str | os.PathLike[str], dataset: str | os.PathLike[str],
               parent: str | os.PathLike[str] | None = None, only: bool = False, name: str | None = None,
               keep: int = KEEP, progress: Callable[[str], None] = lambda s: None) -> Taught:
    """Teach the live version of the deployed ``folder`` (or ``parent``: a bundle, or a deployed
    folder meaning its live version) and make the result the live version, as ``edgecls deploy``
    would: built in versions/.incoming-*, its golden photos rerun as a deploy's verify does, renamed
    to versions/<id>, ``current`` switched in one rename, the id appended to the history, versions
    beyond the newest ``keep`` removed; all under DIR/.lock. A folder that is not a deployed one,
    a lock another operation holds, or anything ``teach`` refuses: TeachError, and the folder is
    as it was (no version, no switch)."""
    try:
        d = Deployed.open(folder)
    except DeployedError as e:
        raise TeachError(str(e)) from None
    try:
        with d.locked():
            was = d.live()
            src = _live_bundle(parent) if parent is not None else d.version(was or "")
            incoming = d.incoming()
            try:
                r = teach(src, dataset, incoming / "bundle", only, name, progress, parent_name=True)
                _verify(r.bundle)
                vid = version_id(json.loads((r.bundle / METADATA).read_text(encoding="utf-8")))
                d.add(r.bundle, vid, keep)
            finally:
                shutil.rmtree(incoming, ignore_errors=True)
    except DeployedError as e:
        raise TeachError(str(e)) from None
    r.bundle, r.version, r.was = d.version(vid), vid, was
    return r


def _live_bundle(path: str | os.PathLike[str]) -> Path:
    """A bundle as given, or a deployed folder's live version."""
    d = Deployed.find(path)
    return d.version(d.live() or "") if d is not None else Path(path)


def _verify(bundle: Path) -> None:
    """What a deploy runs on the device before it switches: the golden photos, through the bundle
    where it will be live."""
    rep = verify(bundle, backend="cpu")
    if not rep.ok:
        raise TeachError(f"{bundle}: the taught bundle fails its golden photos ({'; '.join(rep.causes()) or 'mismatch'}); "
                         "nothing went live - run edgecls verify on the parent")


def check_out(parent: Path, out: Path) -> None:
    """``out`` may be new or an earlier bundle, never the parent (teaching is reversible because
    the parent stays) nor anything else (write_bundle replaces what is there)."""
    if out.exists() and out.resolve() == parent.resolve():
        raise TeachError(f"{out}: is the bundle being taught; write the taught bundle elsewhere (--out NEW_BUNDLE), "
                         "so the parent stays to go back to")
    if os.path.lexists(out) and not (out.is_dir() and os.path.lexists(out / METADATA)):
        raise TeachError(f"{out}: exists and is not a bundle; pick a new --out (teach replaces only a bundle)")


def bundle_files(bundle: Bundle, protos: Prototypes) -> dict[str, Any]:
    """The parent's model files (unchanged) with the new labels and prototypes."""
    files: dict[str, Any] = {f: bundle.path / f for f in MODEL_FILES.values() if f in bundle.meta["files"]}
    files[LABELS] = "".join(l + "\n" for l in protos.labels).encode("utf-8")
    files[PROTOTYPES] = protos.to_bytes()
    return files


def taught_meta(bundle: Bundle, classes: dict[str, list[Path]], protos: Prototypes, only: bool,
                name: str, scale: float = DEFAULT_SCALE) -> dict[str, Any]:
    """The new edgecls.json's sections (write_bundle adds the version, the time and the files)."""
    meta = {k: v for k, v in bundle.meta.items() if k not in DROPPED}
    meta["name"] = name
    meta["output"] = OutputContract(len(protos.labels), "probabilities", TensorQuant("uint8", OUT_SCALE, 0)).to_json()
    meta[FEATURES_SECTION] = {**bundle.meta[FEATURES_SECTION], "prototypes": PROTOTYPES}
    meta[HEAD_SECTION] = {"kind": KIND, "file": PROTOTYPES, "scale": scale, "classes": len(protos.labels)}
    old = [] if only else list(bundle.labels)
    meta[TAUGHT_SECTION] = {
        "parent": {"name": bundle.name, "edgecls_json_sha256": sha256_file(bundle.path / METADATA)},
        "only": only,
        "added": [c for c in classes if c not in old],
        "refined": [c for c in classes if c in old],
        "kept": [c for c in old if c not in classes],
        "photos": [{"class": c, "file": p.name, "sha256": sha256_file(p)} for c, ps in classes.items() for p in ps],
        "edgecls": __version__,
    }
    return meta


def golden_photos(bundle: Bundle, classes: dict[str, list[Path]], labels: list[str]) -> list[golden.Photo]:
    """One photo per class (at most golden.MAX_PHOTOS, taught classes first): the middle taught
    photo of a taught class, the parent's golden photo of a kept one."""
    parent = {p["label"]: bundle.path / p["file"] for p in (bundle.meta.get("golden") or {}).get("photos", [])}
    picked = [golden.Photo(ps[len(ps) // 2], c, f"{c}-{ps[len(ps) // 2].name}") for c, ps in classes.items()]
    picked += [golden.Photo(parent[c], c, f"{c}-{parent[c].name.split('-', 2)[-1]}") for c in labels
               if c not in classes and c in parent]
    return picked[:golden.MAX_PHOTOS]


def write_taught(bundle: Bundle, classes: dict[str, list[Path]], files: dict[str, Any], meta: dict[str, Any],
                 out: Path, progress: Callable[[str], None]) -> Path:
    """Stage the bundle beside ``out``, record its golden photos through it, then write it atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stage_root = Path(tempfile.mkdtemp(prefix=f".{out.name}.teach-", dir=out.parent))
    try:
        staged = write_bundle(stage_root / "bundle", files, meta)
        labels = [l for l in files[LABELS].decode("utf-8").splitlines()]
        with Classifier(staged, backend="cpu") as clf:
            golden_meta, golden_files = golden.record(clf, golden_photos(bundle, classes, labels))
        bad = [p for p in golden_meta["photos"] if labels[p["top_k"][0][0]] != p["label"]]
        if bad:
            progress(f"note: {len(bad)} golden photo(s) are classified as another class by the taught head: "
                     + ", ".join(f"{p['file']} -> {labels[p['top_k'][0][0]]}" for p in bad))
        return write_bundle(out, {**files, **golden_files}, {**meta, "golden": golden_meta})
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)
