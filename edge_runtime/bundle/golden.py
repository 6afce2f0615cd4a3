"""Golden photos: a few held-out photos with what the int8 model made of them, recorded where a
bundle is made (``record``) and rerun wherever it is run (``check``).

Each entry in ``edgecls.json``'s ``golden.photos`` holds the photo's file in the bundle, its true
label, the sha256 of the input tensor the runtime built from it, the raw output tensor and the
top-k as ``[index, score]``. Whenever the int8 model runs, the input tensor must be bit-identical
to the recorded one (a wrong resize or colour order shows there first); the raw output must be
bit-identical too where the interpreter package is the one that recorded it (ai-edge-litert's
XNNPACK computes the same int8 results on x86 and arm64). Any other path (tflite-runtime's
kernels, the Edge TPU, the float model on a GPU) must give the same top-1 with scores within
``SCORE_TOLERANCE``. On a mismatch the input is rebuilt with one usual suspect changed at a time
(R and B swapped, another resize method, a crop) to name the likely cause.

Plain numpy over a ``Classifier``; nothing here needs TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from edge_runtime.model.preprocess import CROP_MODES, RESIZE_METHODS, load_image_for, resize

if TYPE_CHECKING:
    from edge_runtime.bundle.classifier import Classifier

TOP_K = 5
MAX_PHOTOS = 10
# Absolute, on every recorded top-k score, where bit equality is not expected. tflite-runtime 2.14's
# own int8 kernels on arm64 were measured 0.156 away from XNNPACK's on a golden photo (the golden
# photos are the least confident correct ones, where scores move most); the top-1 still agreed.
SCORE_TOLERANCE = 0.2
Transform = Callable[[np.ndarray], np.ndarray]  # applied to the decoded RGB photo before resizing


def input_hash(x: np.ndarray) -> str:
    """What golden photos record of the model input: the sha256 of its bytes."""
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


@dataclass(frozen=True)
class Photo:
    """A photo to record: its file, its true label and a short name for the bundle."""

    path: str | os.PathLike[str]
    label: str
    name: str


def record(clf: "Classifier", photos: Sequence[Photo], top: int = TOP_K) -> tuple[dict[str, Any], dict[str, str]]:
    """Run each photo through ``clf``'s own path (file decode, resize, input conversion, invoke).
    Returns (the ``golden`` section of ``edgecls.json``, {bundle file name: source path})."""
    if len(photos) > MAX_PHOTOS:
        raise ValueError(f"at most {MAX_PHOTOS} golden photos, got {len(photos)}")
    entries, files = [], {}
    for i, p in enumerate(photos):
        name = f"golden/{i:02d}-{p.name.replace('/', '-')}"
        x = clf.prepare(os.fspath(p.path))
        raw = np.asarray(clf.infer(x)).reshape(-1)
        result = clf.rank(raw, top)
        entries.append({"file": name, "label": p.label, "input_sha256": input_hash(x), "raw": raw.tolist(),
                        "top_k": [[c.index, round(c.score, 6)] for c in result.classes]})
        files[name] = os.fspath(p.path)
    meta = {"backend": clf.backend, "interpreter": f"{clf.interpreter} {clf.package.version}",
            "machine": platform.machine(), "threads": clf.threads, "photos": entries}
    return meta, files


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
        return asdict(self)


def prepare(clf: "Classifier", root: Path, entry: dict[str, Any],
            transform: Transform | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One golden photo decoded (and altered by ``transform``) and its input tensor: what
    ``check`` runs, made apart so that the next photo can decode while this one runs."""
    path = str(root / entry["file"])
    rgb = load_image_for(path, clf.height, clf.width, clf.decode)  # type: ignore[arg-type]  # as record's prepare did
    if transform is not None:
        rgb = transform(rgb)
    return rgb, clf.prepare(rgb)


def check(clf: "Classifier", root: Path, entry: dict[str, Any], exact: bool, int8_cpu: bool,
          transform: Transform | None = None, prepared: tuple[np.ndarray, np.ndarray] | None = None,
          one_step: bool = False) -> PhotoCheck:
    """Rerun one golden photo. The input tensor is compared whenever the int8 model runs (it does
    not depend on the interpreter); the raw output bit for bit where ``exact`` (or, with
    ``one_step``, each value within one quantization step and the same top-1: outputs recorded on
    another CPU architecture), else by top-1 and score tolerance. ``transform`` alters the decoded
    photo (tests that prove a fault is caught); ``prepared`` is ``prepare``'s result when it was
    made ahead."""
    rgb, x = prepared if prepared is not None else prepare(clf, root, entry, transform)
    raw = np.asarray(clf.infer(x)).reshape(-1)
    scores = clf.scores(raw)
    exp_top = [(int(i), float(v)) for i, v in entry["top_k"]]
    diff = max(abs(float(scores[i]) - v) for i, v in exp_top)
    top1 = int(np.argmax(scores))
    input_differs = int8_cpu and "input_sha256" in entry and input_hash(x) != entry["input_sha256"]
    expected = np.asarray(entry["raw"], np.int64)
    # the most steps any raw value is off (None: another output shape)
    steps = int(np.max(np.abs(raw.astype(np.int64) - expected), initial=0)) if raw.shape == expected.shape else None
    same_raw = steps == 0
    close = top1 == exp_top[0][0] and diff <= SCORE_TOLERANCE
    # XNNPACK requantizes some int8 results with another rounding on ARM than on x86: one step, rarely
    near = one_step and steps is not None and steps <= 1 and top1 == exp_top[0][0]
    ok = not input_differs and ((same_raw or near) if exact else close)
    result = PhotoCheck(entry["file"], entry["label"], exp_top[0][0], top1, same_raw, round(diff, 4), ok)
    if ok:
        return result
    if input_differs:
        result.cause = diagnose(clf, rgb, entry["input_sha256"])
    elif exact:
        result.cause = (f"same input tensor, different int8 outputs{' by more than one step' if one_step else ''}: "
                        f"the interpreter computes differently here "
                        f"({clf.interpreter} {clf.package.version} on {platform.machine()}); reinstall ai-edge-litert "
                        "or reconvert the bundle")
    else:
        result.cause = (f"top-1 {clf.labels[top1]!r} instead of {clf.labels[exp_top[0][0]]!r} or scores off by "
                        f"{diff:.3f} on the {clf.backend} backend ({clf.interpreter}); `edgecls verify --backend cpu` "
                        "with ai-edge-litert separates the model from the backend")
    return result


def diagnose(clf: "Classifier", rgb: np.ndarray, expected_hash: str) -> str:
    """The input tensor differs from the recorded one: redo the preprocessing with one step
    changed at a time and name the change that reproduces the recorded tensor."""
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
        if input_hash(clf.to_input(resize(img, clf.height, clf.width, method, crop))) == expected_hash:  # type: ignore[arg-type]
            return "likely cause: " + why
    return ("the input tensor differs from the workstation's and no single preprocessing change (colour order, "
            "resize method, crop) explains it: the photo decodes differently here (Pillow/libjpeg version?)")
