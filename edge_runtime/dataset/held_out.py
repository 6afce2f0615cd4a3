"""Teach with a held-out photo per class, and say how the taught bundle does on them: what the
collect page's Teach button runs (``web/teach.py``), over ``dataset/teach.py``'s ``teach``.

1. ``scan`` the dataset as ``teach`` will (its one-line errors name the real folders);
2. hold out the newest photo (names sort by time) of every class with at least ``HOLD_OUT_FROM``
   photos, so at least ``teach.MIN_PHOTOS`` remain to teach it; a class with fewer is taught
   with all of them and is not tested;
3. teach from a view of the dataset without the held-out photos: a temporary folder of symbolic
   links (copies where links cannot be made), so the dataset itself is never touched, and the
   taught bundle records the photos under their own names;
4. classify each held-out photo with the taught bundle, and read the top-1 of the golden photo
   of each class the bundle kept from its parent (recorded by ``teach`` through the taught head).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from edge_runtime.bundle.classifier import Classifier
from edge_runtime.bundle.format import load_bundle
from edge_runtime.dataset.teach import MIN_PHOTOS, Taught, scan, teach

HOLD_OUT_FROM = MIN_PHOTOS + 1  # a class with this many photos gives its newest one to the test


@dataclass(frozen=True)
class Check:
    """One class's test: a photo the taught bundle never saw (``held_out``) or, for a class kept
    from the parent, the parent's golden photo (``golden``)."""

    label: str
    photo: str  # "class/name.jpg" in the dataset, or the bundle's "golden/..." file
    source: str  # "held_out" or "golden"
    predicted: str
    score: float

    @property
    def right(self) -> bool:
        return self.predicted == self.label

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "score": round(self.score, 4), "right": self.right}


@dataclass
class Tried:
    """What ``teach_and_test`` wrote and found."""

    taught: Taught
    checks: list[Check]
    untested: list[str]  # classes without a test photo (too few photos to spare one, or no golden photo)
    held_out: dict[str, str]  # class -> "class/name" of its held-out photo

    def accuracy(self, source: str = "held_out") -> tuple[int, int]:
        """(right, tested) over the checks of ``source``."""
        checks = [c for c in self.checks if c.source == source]
        return sum(c.right for c in checks), len(checks)


def split(classes: dict[str, list[Path]]) -> tuple[dict[str, list[Path]], dict[str, Path]]:
    """(photos to teach, the held-out photo of each class that can spare one). ``classes`` as
    ``teach.scan`` returns them (each class's photos sorted by name: by time for collected ones)."""
    teach_with: dict[str, list[Path]] = {}
    held: dict[str, Path] = {}
    for label, photos in classes.items():
        if len(photos) >= HOLD_OUT_FROM:
            teach_with[label], held[label] = photos[:-1], photos[-1]
        else:
            teach_with[label] = list(photos)
    return teach_with, held


def _view(classes: dict[str, list[Path]], root: Path) -> None:
    """``root/<class>/<name>`` for every photo: a symbolic link to it, or a copy where the file
    system has none."""
    for label, photos in classes.items():
        (root / label).mkdir()
        for p in photos:
            target = root / label / p.name
            try:
                os.symlink(p.resolve(), target)
            except OSError:
                shutil.copy2(p, target)


def teach_and_test(parent: str | os.PathLike[str], dataset: str | os.PathLike[str], out: str | os.PathLike[str],
                   name: str | None = None, progress: Callable[[str], None] = lambda s: None) -> Tried:
    """Teach ``parent`` every class of ``dataset`` but one held-out photo per class (see the
    module's docstring), write the taught bundle to ``out``, and test it on the held-out photos.
    Raises ``teach.TeachError`` (nothing written) as ``teach`` does; the dataset is only read."""
    dataset = Path(dataset)
    classes = scan(dataset)
    teach_with, held = split(classes)
    progress(f"teaching {sum(len(p) for p in teach_with.values())} photos of {len(classes)} classes, "
             f"holding out {len(held)} to test")
    view = Path(tempfile.mkdtemp(prefix=".edgecls-teach-"))
    try:
        _view(teach_with, view)
        taught = teach(parent, view, out, name=name or Path(out).name, progress=progress)
    finally:
        shutil.rmtree(view, ignore_errors=True)
    progress(f"testing {len(held)} held-out photos")
    checks = []
    with Classifier(taught.bundle, backend="cpu") as clf:
        for label, photo in held.items():
            top = clf.classify(str(photo), top=1).classes[0]
            checks.append(Check(label, f"{label}/{photo.name}", "held_out", top.label, float(top.score)))
    golden = (load_bundle(taught.bundle).meta.get("golden") or {}).get("photos", [])
    for entry in golden:
        if entry["label"] in taught.kept:
            index, score = entry["top_k"][0]
            checks.append(Check(entry["label"], entry["file"], "golden", taught.labels[index], float(score)))
    tested = {c.label for c in checks}
    return Tried(taught, checks, [c for c in taught.labels if c not in tested],
                 {c: f"{c}/{p.name}" for c, p in held.items()})
