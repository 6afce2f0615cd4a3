"""``edgecls verify``: rerun a bundle's golden photos through the whole device path (decode,
resize, input conversion, invoke, postprocess) here, and report. What is compared, and how
strictly, is ``golden``'s to say.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.bundle import golden
from edge_runtime.bundle.classifier import Classifier
from edge_runtime.bundle.format import load_bundle
from edge_runtime.bundle.golden import SCORE_TOLERANCE, PhotoCheck, Transform
from edge_runtime.errors import BundleError
from edge_runtime.model.pipeline import prefetch

FAULTS: dict[str, Transform] = {
    "swap-rb": lambda rgb: np.ascontiguousarray(rgb[:, :, ::-1]),  # what a BGR camera buffer does
}


@dataclass
class Report:
    bundle: str
    backend: str
    interpreter: str
    mode: str  # "bit-exact" or "top-1 + tolerance"
    photos: list[PhotoCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.photos) and all(p.ok for p in self.photos)

    def causes(self) -> list[str]:
        return list(dict.fromkeys(p.cause for p in self.photos if p.cause))

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "backend": self.backend, "interpreter": self.interpreter, "mode": self.mode,
                "ok": self.ok, "photos": [p.to_dict() for p in self.photos], "causes": self.causes()}


def verify(bundle_path: str | os.PathLike[str], backend: str = "auto", interpreter: str | None = None,
           threads: int | None = None, fault: str | None = None) -> Report:
    """Check the bundle's golden photos on this machine. ``fault`` ('swap-rb') feeds the photos
    altered, for tests that prove a fault is caught."""
    bundle = load_bundle(bundle_path)
    named = os.fspath(bundle_path)  # what the user named: a .tar.gz is unpacked into a directory that goes away
    _photos(bundle.meta, named)  # said before a model is loaded
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; valid: {', '.join(FAULTS)}")
    with Classifier(bundle.path, backend=backend, interpreter=interpreter, threads=threads) as clf:
        return check(clf, named, fault)


def check(clf: Classifier, named: str | None = None, fault: str | None = None) -> Report:
    """Rerun the golden photos of the bundle ``clf`` runs, through ``clf`` itself (a camera checks
    the model it is about to run, not another copy of it). ``named``: the bundle as the report
    names it (default its directory)."""
    bundle = clf.bundle
    if bundle is None:
        raise BundleError(f"{clf.model_path}: a bare model has no golden photos; verify checks a bundle")
    photos = _photos(bundle.meta, named or str(bundle.path))
    int8_cpu = clf.backend == "cpu" and Path(clf.model_path).name == "model.tflite"
    recorded_by = str(bundle.meta["golden"].get("interpreter", "")).split(" ")[0]
    exact = int8_cpu and recorded_by == clf.interpreter
    # Outputs recorded on another CPU architecture (or by an edgecls that did not say which): the
    # same XNNPACK kernels round a rare int8 result one step apart on ARM and x86.
    recorded_on = bundle.meta["golden"].get("machine")
    one_step = exact and recorded_on != platform.machine()
    if one_step:
        mode = f"bit-exact, or within one int8 step (outputs recorded on {recorded_on or 'another machine'})"
    elif exact:
        mode = "bit-exact"
    elif int8_cpu:
        mode = (f"same input tensor; top-1 + scores within {SCORE_TOLERANCE} (outputs recorded with "
                f"{recorded_by or 'another interpreter'})")
    else:
        mode = f"top-1 + scores within {SCORE_TOLERANCE}"
    rep = Report(named or str(bundle.path), clf.backend, f"{clf.interpreter} {clf.package.version}", mode)
    transform = FAULTS[fault] if fault else None
    def prepare(entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        return golden.prepare(clf, bundle.path, entry, transform)

    # The next photo decodes while this one runs; any error is raised in order, as before.
    rep.photos = [golden.check(clf, bundle.path, g, exact, int8_cpu, transform, prepared,  # type: ignore[arg-type]
                               one_step) for g, prepared in prefetch(photos, prepare, skip=())]
    return rep


def _photos(meta: dict[str, Any], named: str) -> list[dict[str, Any]]:
    photos = (meta.get("golden") or {}).get("photos") or []
    if not photos:
        raise BundleError(f"{named}: has no golden photos to verify; reconvert it with edgecls convert")
    return photos


def format_report(rep: Report) -> str:
    lines = [f"{rep.bundle}: {rep.backend} ({rep.interpreter}), {rep.mode}",
             f"{'photo':<40} {'label':<12} {'expected':>8} {'got':>5} {'raw equal':>9} {'max diff':>8}  result"]
    for p in rep.photos:
        lines.append(f"{p.file[-40:]:<40} {p.label[:12]:<12} {p.expected_top1:>8} {p.got_top1:>5} "
                     f"{'yes' if p.exact else 'no':>9} {p.max_score_diff:>8.4f}  {'ok' if p.ok else 'MISMATCH'}")
    bad = [p for p in rep.photos if not p.ok]
    lines.append(f"{len(rep.photos) - len(bad)}/{len(rep.photos)} golden photos match" +
                 ("" if not bad else "; " + " | ".join(rep.causes())))
    return "\n".join(lines)
