"""A folder of labelled photos: scan, check, split, fingerprint, decode.

Plain numpy and Pillow (through the runtime's own decoder and resize, so training sees
exactly the pixels the device will); no TensorFlow here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from edge_runtime.errors import EdgeclsError, ImageError
from edge_runtime.model.pipeline import prefetch
from edge_runtime.model.preprocess import load_image, load_image_for, resize

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
SPLITS = ("train", "val", "test")
MIN_SIDE = 8  # pixels; anything smaller carries no usable picture
IMBALANCE_RATIO = 3.0  # largest class / smallest class above this gives a warning


class DatasetError(EdgeclsError):
    """A dataset folder that cannot be trained on."""


@dataclass(frozen=True)
class Sample:
    path: Path  # absolute
    rel: str  # "class/sub/file.jpg", POSIX separators
    label: int
    split: str


@dataclass
class Dataset:
    root: Path
    classes: list[str]
    samples: list[Sample]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (rel path, reason)
    warnings: list[str] = field(default_factory=list)
    fingerprint: str = ""

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        out = {c: {k: 0 for k in SPLITS} for c in self.classes}
        for s in self.samples:
            out[self.classes[s.label]][s.split] += 1
        return out

    def summary(self) -> dict:
        return {"root": str(self.root), "fingerprint": self.fingerprint, "classes": self.classes,
                "counts": self.counts(), "images": len(self.samples), "skipped": len(self.skipped),
                "warnings": self.warnings}


def split_of(rel_in_class: str, val: float, test: float) -> str:
    """The split of a file, from a hash of its path inside its class folder: stable when files
    are added or removed, independent of the machine and of directory order."""
    h = int.from_bytes(hashlib.sha256(rel_in_class.encode("utf-8")).digest()[:8], "big") / 2.0**64
    if h < test:
        return "test"
    if h < test + val:
        return "val"
    return "train"


def _check(path: Path) -> tuple[str | None, str]:
    """(reason it cannot be used or None, sha256 of its bytes)."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return "empty file (0 bytes)", digest
    try:
        img = load_image(path)
    except ImageError as e:
        return str(e).split(": ", 1)[-1], digest
    if min(img.shape[:2]) < MIN_SIDE:
        return f"too small ({img.shape[1]}x{img.shape[0]} px; at least {MIN_SIDE}x{MIN_SIDE} needed)", digest
    return None, digest


def scan(root: str | os.PathLike[str], val: float = 0.15, test: float = 0.15,
         progress: Callable[[int, int], None] | None = None) -> Dataset:
    """Read a folder-per-class dataset: every file is decoded once to check it; files that
    cannot be used are listed in ``skipped`` with the reason, classes left without images are
    dropped with a warning."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory; pass a folder with one sub-folder of images per class")
    if not (0 <= val < 1 and 0 < test < 1 and val + test < 1):
        raise ValueError(f"val ({val}) and test ({test}) fractions must be in [0, 1) and sum below 1")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    # `_` folders are the loop's own (_review: mined frames waiting for `edgecls review`, _discarded)
    ignored = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("_"))
    if not class_dirs:
        raise DatasetError(f"{root}: no class folders; put each class's images in its own sub-folder "
                           f"(e.g. {root}/cat/*.jpg, {root}/dog/*.jpg)")
    found: list[tuple[str, Path, str]] = []  # (class, path, rel in class)
    skipped: list[tuple[str, str]] = []
    for d in class_dirs:
        for dirpath, dirs, files in os.walk(d):
            dirs[:] = sorted(x for x in dirs if not x.startswith("."))
            for f in sorted(files):
                p = Path(dirpath) / f
                rel = p.relative_to(d).as_posix()
                if f.startswith("."):
                    continue
                if p.suffix.lower() not in IMAGE_SUFFIXES:
                    skipped.append((f"{d.name}/{rel}", f"not an image file name (expected {', '.join(IMAGE_SUFFIXES)})"))
                    continue
                found.append((d.name, p, rel))

    digests: list[str] = []
    good: dict[str, list[tuple[Path, str]]] = {d.name: [] for d in class_dirs}
    for i, (cls, p, rel) in enumerate(found):
        reason, digest = _check(p)
        if reason:
            skipped.append((f"{cls}/{rel}", reason))
        else:
            good[cls].append((p, rel))
            digests.append(f"{cls}/{rel}\t{digest}")
        if progress:
            progress(i + 1, len(found))

    warnings: list[str] = []
    if ignored:
        warnings.append(f"ignored folder(s) {', '.join(ignored)}: a folder starting with '_' is not a class "
                        "(sort _review with `edgecls review` first)")
    classes = [c for c in good if good[c]]
    for c in good:
        if not good[c]:
            warnings.append(f"class '{c}' has no usable images and is left out")
        elif len(good[c]) == 1:
            warnings.append(f"class '{c}' has one image: it cannot appear in both training and test data")
    if len(classes) < 2:
        raise DatasetError(f"{root}: {len(classes)} class(es) with usable images; a classifier needs at least two")
    sizes = {c: len(good[c]) for c in classes}
    if max(sizes.values()) > IMBALANCE_RATIO * min(sizes.values()):
        big, small = max(sizes, key=sizes.get), min(sizes, key=sizes.get)
        warnings.append(f"classes are imbalanced: '{big}' has {sizes[big]} images, '{small}' {sizes[small]}; "
                        "add photos to the small classes or expect it to be predicted less")
    samples = [Sample(p.resolve(), f"{c}/{rel}", classes.index(c), split_of(rel, val, test))
               for c in classes for p, rel in good[c]]
    fingerprint = hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()
    return Dataset(root.resolve(), classes, samples, sorted(skipped), warnings, fingerprint)


def decode(samples: Sequence[Sample], height: int, width: int, method: str = "bilinear",
           out: np.ndarray | None = None, progress: Callable[[int, int], None] | None = None,
           decode_mode: str = "full") -> np.ndarray:
    """Decode (by the contract's ``decode_mode``) and resize ``samples`` to N x H x W x 3 uint8,
    by the runtime's own path."""
    if out is None:
        out = np.empty((len(samples), height, width, 3), np.uint8)

    def pixels(s: Sample) -> np.ndarray:
        return resize(load_image_for(s.path, height, width, decode_mode), height, width, method)  # type: ignore[arg-type]

    # The next photos decode in threads (the other core) while this one is stored; in order, and a
    # photo that cannot be read raises, as before.
    for i, (_, px) in enumerate(prefetch(samples, pixels, skip=())):
        out[i] = px
        if progress:
            progress(i + 1, len(samples))
    return out


def cached_pixels(samples: Sequence[Sample], height: int, width: int, method: str, cache_dir: Path,
                  key: str, progress: Callable[[int, int], None] | None = None,
                  decode_mode: str = "full") -> np.ndarray:
    """``decode`` once into ``cache_dir/<key>.npy`` (memory-mapped, so a dataset larger than
    memory works) and reuse it while the file list and contents are unchanged."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    ident = hashlib.sha256(json.dumps([[s.rel for s in samples], height, width, method, key]
                                      + ([decode_mode] if decode_mode != "full" else [])).encode()).hexdigest()[:16]
    path = cache_dir / f"pixels-{ident}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    part = path.with_suffix(".part.npy")
    arr = np.lib.format.open_memmap(part, mode="w+", dtype=np.uint8, shape=(len(samples), height, width, 3))
    decode(samples, height, width, method, out=arr, progress=progress, decode_mode=decode_mode)
    arr.flush()
    del arr
    os.replace(part, path)
    return np.load(path, mmap_mode="r")


def write_lists(ds: Dataset, out: Path) -> None:
    """The split lists and the skipped files, as text files in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        (out / f"{name}.txt").write_text("".join(f"{s.rel}\n" for s in ds.split(name)), encoding="utf-8")
    (out / "skipped.txt").write_text("".join(f"{rel}\t{why}\n" for rel, why in ds.skipped), encoding="utf-8")


def stratified(samples: Iterable[Sample], n: int, seed: int = 0) -> list[Sample]:
    """About ``n`` samples with each class in proportion, chosen reproducibly."""
    samples = list(samples)
    if n >= len(samples):
        return samples
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[Sample]] = {}
    for s in samples:
        by_class.setdefault(s.label, []).append(s)
    picked: list[Sample] = []
    for label, group in sorted(by_class.items()):
        k = max(1, round(n * len(group) / len(samples)))
        idx = rng.permutation(len(group))[:k]
        picked.extend(group[i] for i in sorted(idx))
    return picked
