"""``edgecls verify``: rerun a bundle's golden photos through the whole device path (decode,
resize, input conversion, invoke, postprocess) and compare with what the workstation recorded.

Whenever the int8 model runs, the input tensor must be bit-identical to the workstation's (a
wrong resize or colour order shows there first). Its raw output must be bit-identical too when
the interpreter package is the one that recorded it: ai-edge-litert's XNNPACK computes the same
int8 results on x86 and arm64. Any other path (tflite-runtime's kernels, the Edge TPU, the float
model on a GPU) must give the same top-1 with scores within ``SCORE_TOLERANCE``. On a mismatch the
photo's input tensor is rebuilt with the usual suspects changed (R and B swapped, another resize method,
a centre crop) to name the likely cause.
"""

from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .bundle import load_bundle
from .classifier import Classifier
from .errors import BundleError
from .preprocess import CROP_MODES, RESIZE_METHODS, load_image, resize

SCORE_TOLERANCE = 0.1  # absolute, on every recorded top-k score, where bit equality is not expected
FAULTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "swap-rb": lambda rgb: np.ascontiguousarray(rgb[:, :, ::-1]),  # what a BGR camera buffer does
}


@dataclass
class PhotoCheck:
    file: str
    label: str
    expected_top1: int
    got_top1: int
    exact: bool  # raw outputs bit-identical
    max_score_diff: float
    ok: bool
    cause: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


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


def input_hash(x: np.ndarray) -> str:
    """What golden photos record of the model input: the sha256 of its bytes."""
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def _diagnose(clf: Classifier, path: str, expected_hash: str, fault: Callable | None) -> str:
    """The input tensor differs from the workstation's: redo the preprocessing with one step
    changed at a time and name the change that reproduces the recorded tensor."""
    rgb = load_image(path)
    if fault:
        rgb = fault(rgb)
    tries: list[tuple[str, np.ndarray, str, str]] = [
        ("the colour order: the input matches after swapping R and B, so this device feeds BGR pixels "
         "(picamera2's RGB888 is B,G,R in memory); convert frames to RGB before classifying",
         np.ascontiguousarray(rgb[:, :, ::-1]), clf.resize_method, clf.crop)]
    tries += [(f"the resize: the input matches with resize '{m}', but this device resizes with "
               f"'{clf.resize_method}'; edgecls.json's input.resize must name the method the model was trained "
               "and calibrated with", rgb, m, clf.crop) for m in RESIZE_METHODS if m != clf.resize_method]
    tries += [(f"the crop: the input matches with crop '{c}', but this device uses '{clf.crop}'", rgb,
               clf.resize_method, c) for c in CROP_MODES if c != clf.crop]
    for why, img, method, crop in tries:
        if input_hash(clf.to_input(resize(img, clf.height, clf.width, method, crop))) == expected_hash:
            return "likely cause: " + why
    return ("the input tensor differs from the workstation's and no single preprocessing change (colour order, "
            "resize method, crop) explains it: the photo decodes differently here (Pillow/libjpeg version?)")


def verify(bundle_path: str | os.PathLike[str], backend: str = "auto", interpreter: str | None = None,
           threads: int | None = None, fault: str | None = None) -> Report:
    """Check the bundle's golden photos on this machine. ``fault`` ('swap-rb') feeds the photos
    altered, for tests that prove a fault is caught."""
    bundle = load_bundle(bundle_path)
    photos = (bundle.meta.get("golden") or {}).get("photos") or []
    if not photos:
        raise BundleError(f"{bundle.path}: has no golden photos to verify; reconvert it with edgecls convert")
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; valid: {', '.join(FAULTS)}")
    with Classifier(bundle.path, backend=backend, interpreter=interpreter, threads=threads) as clf:
        int8_cpu = clf.backend == "cpu" and Path(clf.model_path).name == "model.tflite"
        recorded_by = str(bundle.meta["golden"].get("interpreter", "")).split(" ")[0]
        exact = int8_cpu and recorded_by == clf.interpreter
        rep = Report(str(bundle.path), clf.backend, f"{clf.interpreter} {clf.package.version}",
                     "bit-exact" if exact else
                     (f"same input tensor; top-1 + scores within {SCORE_TOLERANCE} (outputs recorded with "
                      f"{recorded_by or 'another interpreter'})" if int8_cpu
                      else f"top-1 + scores within {SCORE_TOLERANCE}"))
        clf._fault = FAULTS[fault] if fault else None
        try:
            for g in photos:
                rep.photos.append(_check(clf, bundle.path, g, exact, int8_cpu))
        finally:
            clf._fault = None
    return rep


def _check(clf: Classifier, root: Path, g: dict[str, Any], exact: bool, int8_cpu: bool) -> PhotoCheck:
    """One golden photo. The input tensor is compared whenever the int8 model runs (it does not
    depend on the interpreter); the raw output bit for bit where the interpreter is the one
    that recorded it, else by top-1 and score tolerance."""
    path = str(root / g["file"])
    x = clf.preprocess(path)  # the device path: decode, resize, input conversion
    raw = np.asarray(clf.engine.run(x)).reshape(-1)
    scores = clf.scores(raw)
    exp_top = [(int(i), float(v)) for i, v in g["top_k"]]
    diff = max(abs(float(scores[i]) - v) for i, v in exp_top)
    top1 = int(np.argmax(scores))
    input_differs = int8_cpu and "input_sha256" in g and input_hash(x) != g["input_sha256"]
    expected = np.asarray(g["raw"], np.int64)
    same_raw = raw.shape == expected.shape and np.array_equal(raw.astype(np.int64), expected)
    close = top1 == exp_top[0][0] and diff <= SCORE_TOLERANCE
    ok = not input_differs and (same_raw if exact else close)
    check = PhotoCheck(g["file"], g["label"], exp_top[0][0], top1, same_raw, round(diff, 4), ok)
    if ok:
        return check
    if input_differs:
        check.cause = _diagnose(clf, path, g["input_sha256"], clf._fault)
    elif exact:
        check.cause = (f"same input tensor, different int8 outputs: the interpreter computes differently here "
                       f"({clf.interpreter} {clf.package.version} on {platform.machine()}); reinstall ai-edge-litert "
                       "or reconvert the bundle")
    else:
        check.cause = (f"top-1 {clf.labels[top1]!r} instead of {clf.labels[exp_top[0][0]]!r} or scores off by "
                       f"{diff:.3f} on the {clf.backend} backend ({clf.interpreter}); `edgecls verify --backend cpu` "
                       "with ai-edge-litert separates the model from the backend")
    return check


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
