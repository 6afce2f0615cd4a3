"""``edgecls review``'s work: sort the mined frames that ``edgecls pull`` put in
``DATASET/_review/<predicted>/`` into class folders, on a web page in the same style as collect's.

Each frame shows its predicted label (its folder) and score (the last ``_`` field of its name, as
``edgecls camera --save-uncertain`` writes it). Moving one into a class, or discarding it into
``DATASET/_discarded/`` (kept until you delete it; training ignores ``_`` folders), is a
link-then-unlink: atomic, and never over an existing file.
"""

from __future__ import annotations

import threading
from pathlib import Path, PurePosixPath
from typing import Any

from edge_runtime.dataset.files import IMAGE_SUFFIXES, check_class, class_folders, move_new
from edge_runtime.errors import EdgeclsError

REVIEW = "_review"
DISCARDED = "_discarded"


def score_of(name: str) -> float | None:
    """The score in a mined frame's name (``..._<label>_<score>.jpg``), or None."""
    try:
        return float(PurePosixPath(name).stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return None


class Reviewer:
    """The frames waiting in ``root/_review`` and the moves out of it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise EdgeclsError(f"{self.root}: not a directory; give the dataset folder that `edgecls pull --into` filled")
        self.lock = threading.Lock()
        self.extra: list[str] = []  # classes added on the page, not yet folders
        self.sorted = {"moved": 0, "discarded": 0}  # frames sorted by this process

    def pending(self) -> list[dict[str, Any]]:
        review = self.root / REVIEW
        out = []
        if review.is_dir():
            for p in sorted(review.rglob("*")):
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES:
                    rel = p.relative_to(self.root).as_posix()
                    predicted = p.parent.name if p.parent != review else ""
                    out.append({"rel": rel, "predicted": predicted, "score": score_of(p.name)})
        return out

    def classes(self) -> list[str]:
        with self.lock:
            return sorted(set(class_folders(self.root)) | set(self.extra))

    def add_class(self, name: str) -> str:
        name = check_class(name)
        with self.lock:
            if name not in self.extra:
                self.extra.append(name)
        return name

    def _source(self, rel: str) -> Path:
        p = (self.root / rel).resolve()
        review = (self.root / REVIEW).resolve()
        try:
            p.relative_to(review)
        except ValueError:
            raise ValueError(f"{rel}: not a frame in {REVIEW}/") from None
        if not p.is_file():
            raise ValueError(f"{rel}: no such frame (already moved?)")
        return p

    def move(self, rel: str, label: str) -> Path:
        """Move a frame into the class folder ``label`` (made if new)."""
        label = check_class(label)
        with self.lock:
            out = move_new(self._source(rel), self.root / label)
            self.sorted["moved"] += 1
            return out

    def discard(self, rel: str) -> Path:
        with self.lock:
            out = move_new(self._source(rel), self.root / DISCARDED)
            self.sorted["discarded"] += 1
            return out

    def state(self) -> dict[str, Any]:
        return {"root": str(self.root), "classes": self.classes(), "pending": self.pending()}
