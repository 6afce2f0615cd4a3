"""The collect page's bundle and its Teach button (``edgecls collect --serve --bundle BUNDLE``).

What a person teaching their Pi from the page gets:

- the page classifies the newest frame with its bundle ("the bundle sees: parcel 93%");
- Teach (an admin's) teaches the bundle given to ``--bundle`` every class folder of the dataset,
  holding out a photo per class (``dataset/held_out.py``), in a thread of its own; the page
  polls ``status`` for the step and then the per-class results. Each Teach starts again from
  that bundle with every photo in the folder then, so a photo taught twice never counts twice;
- the taught bundle is written beside it as a new folder, ``BUNDLE.taught-N`` (N one more than
  the highest there), and waits: **keep** makes it the bundle the page classifies with (it stays
  on disk, to run with ``edgecls camera`` or deploy), **undo** deletes it. The parent and the
  photos are never changed;
- one teach at a time: a second while one runs, or while a result waits for keep or undo, is
  refused (``TeachConflict``: the page answers 409 Conflict); a teach that fails leaves nothing
  behind and says why in one line.

Nothing here speaks HTTP: ``web/collect.py`` routes the page's requests here.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge_runtime.bundle.classifier import Classifier
from edge_runtime.bundle.format import load_bundle
from edge_runtime.bundle.meta import METADATA
from edge_runtime.dataset.held_out import Tried, teach_and_test
from edge_runtime.dataset.teach import TeachError, parent_prototypes, scan
from edge_runtime.errors import EdgeclsError

TAUGHT = re.compile(r"(?P<base>.+?)\.taught-(?P<n>[0-9]+)")
State = Literal["idle", "running", "done", "failed"]  # done: a taught bundle waits for keep or undo


class TeachConflict(EdgeclsError):
    """A teach is running, or its result waits for keep or undo (or there is none to keep)."""


def next_out(parent: Path) -> Path:
    """``PARENT.taught-N`` beside ``parent`` (a ``.tar.gz``'s name without its suffix; a taught
    bundle's own ``.taught-N`` dropped), N one more than the highest already there."""
    base = re.sub(r"\.(tar\.gz|tgz)$", "", parent.name)
    m = TAUGHT.fullmatch(base)
    base = m["base"] if m else base
    taken = [int(m["n"]) for p in parent.parent.iterdir() if (m := TAUGHT.fullmatch(p.name)) and m["base"] == base]
    return parent.parent / f"{base}.taught-{max(taken, default=0) + 1}"


class Teacher:
    """The page's bundle, its live top-k and the one teach at a time. Thread-safe."""

    def __init__(self, bundle: str | os.PathLike[str], dataset: str | os.PathLike[str]):
        self.parent = Path(os.path.abspath(bundle))  # what every Teach starts from (as given, not resolved)
        self.dataset = Path(dataset)
        self.lock = threading.Lock()
        self.see_lock = threading.Lock()  # one classification at a time, and none during a switch
        self.clf = Classifier(self.parent, backend="cpu")
        self.bundle = self.parent  # what the page classifies with: the parent, or a kept taught bundle
        try:
            parent_prototypes(load_bundle(self.parent))
            self.why_not: str | None = None
        except TeachError as e:
            self.why_not = str(e)
        self.state: State = "idle"
        self.step: dict[str, Any] = {"done": 0, "total": 0, "message": ""}
        self.error: str | None = None
        self.tried: Tried | None = None
        self.out: Path | None = None
        self.note = ""  # the last keep or undo, for every page that polls
        self.started = 0.0
        self.seconds = 0.0  # the last teach's, from the click to its result (teach and test)
        self.by: str | None = None
        self.thread: threading.Thread | None = None
        self.seen: tuple[Any, list[dict[str, Any]]] | None = None  # (key, top-k) of the last classified frame

    # --- the live picture -----------------------------------------------------------------------

    def sees(self, picture: np.ndarray, key: Any) -> list[dict[str, Any]]:
        """The page bundle's top 3 for ``picture`` (an RGB frame); ``key`` names the frame, so each
        frame is classified once however many pages poll."""
        with self.see_lock:
            if self.seen is None or self.seen[0] != (key, self.bundle):
                classes = self.clf.classify(picture, top=3).classes
                self.seen = ((key, self.bundle), [{"label": c.label, "score": round(c.score, 4)} for c in classes])
            return self.seen[1]

    # --- teach, keep, undo ----------------------------------------------------------------------

    def start(self, by: str | None = None) -> dict[str, Any]:
        """Start a teach in a thread; TeachConflict when one runs or waits, TeachError (at once) when the
        bundle cannot be taught or the dataset's folders cannot teach it."""
        with self.lock:
            if self.state == "running":
                raise TeachConflict(f"a teach is already running (started {time.time() - self.started:.0f} s ago"
                           + (f" by {self.by}" if self.by else "") + "); wait for its result")
            if self.state == "done":
                raise TeachConflict(f"the last teach ({self.out}) waits for keep or undo; choose one first")
            if self.why_not:
                raise TeachError(self.why_not)
            classes = scan(self.dataset)  # too few photos, a bad folder name: said now, in one line
            out = next_out(self.parent)
            self.state, self.error, self.tried, self.out, self.note = "running", None, None, out, ""
            self.step = {"done": 0, "total": len(classes) + 1, "message": "starting"}
            self.started, self.by = time.time(), by
            self.thread = threading.Thread(target=self._run, args=(out,), daemon=True, name="edgecls-teach")
            self.thread.start()
        print(f"edgecls: web: {by or 'the page'} started teaching {self.parent.name} {len(classes)} classes of "
              f"{self.dataset} into {out}", file=sys.stderr, flush=True)
        return self.status()

    def _progress(self, message: str) -> None:
        with self.lock:
            step = dict(self.step, message=message)
            if message.startswith("embedded "):
                step["done"] = min(step["done"] + 1, step["total"] - 1)
            elif message.startswith("testing "):
                step["done"] = step["total"] - 1
            self.step = step

    def _run(self, out: Path) -> None:
        existed = os.path.lexists(out)
        try:
            tried = teach_and_test(self.parent, self.dataset, out, progress=self._progress)
        except Exception as e:  # the page says what happened; the thread ends here
            if not existed:
                self._remove(out)  # written before the test failed: nothing stays from a failed teach
            if isinstance(e, EdgeclsError):
                msg = str(e)
            elif isinstance(e, OSError):
                msg = f"{e.filename or out}: {e.strerror or e}"
            else:
                msg = f"teach failed: {type(e).__name__}: {e}"
            with self.lock:
                self.state, self.error = "failed", (msg.splitlines() or [type(e).__name__])[0]
            print(f"edgecls: web: teach failed: {self.error}", file=sys.stderr, flush=True)
            return
        right, tested = tried.accuracy()
        with self.lock:
            self.state, self.tried, self.seconds = "done", tried, time.time() - self.started
            self.step = {**self.step, "done": self.step["total"], "message": "done"}
        print(f"edgecls: web: taught {out} in {self.seconds:.2f} s: {right} of {tested} held-out photos "
              "right; keep or undo it on the page", file=sys.stderr, flush=True)

    def _remove(self, out: Path) -> None:
        """Delete ``out`` if it is a bundle this teacher wrote (never the parent or the page's bundle)."""
        if out in (self.parent, self.bundle) or not (out / METADATA).is_file():
            return
        shutil.rmtree(out, ignore_errors=True)

    def _waiting(self, what: str) -> Path:
        if self.state == "running":
            raise TeachConflict(f"a teach is running; {what} its result once it is done")
        if self.state != "done" or self.out is None:
            raise TeachConflict(f"nothing to {what}: teach first")
        return self.out

    def keep(self, by: str | None = None) -> dict[str, Any]:
        """The waiting taught bundle becomes the page's (it stays on disk)."""
        with self.lock:
            out = self._waiting("keep")
        clf = Classifier(out, backend="cpu")  # a bundle that does not load stays waiting, the page says why
        with self.see_lock, self.lock:
            if self.state != "done" or self.out != out:  # another admin kept or undid it meanwhile
                clf.close()
                raise TeachConflict(f"{out} was kept or undone meanwhile; reload the page")
            old, self.clf, self.bundle = self.clf, clf, out
            self.state, self.tried, self.out = "idle", None, None
            self.note = (f"kept {out}: the page classifies with it; run it with `edgecls camera {out}` "
                         "(the next Teach starts again from " + str(self.parent) + ")")
        old.close()
        print(f"edgecls: web: {by or 'the page'} kept {out}", file=sys.stderr, flush=True)
        return self.status()

    def undo(self, by: str | None = None) -> dict[str, Any]:
        """Delete the waiting taught bundle; the page keeps its bundle."""
        with self.lock:
            out = self._waiting("undo")
            self._remove(out)
            self.state, self.tried, self.out = "idle", None, None
            self.note = f"removed {out}; the page still classifies with {self.bundle}"
        print(f"edgecls: web: {by or 'the page'} undid the teach: removed {out}", file=sys.stderr, flush=True)
        return self.status()

    def close(self) -> str | None:
        """Wait for a running teach, then let go of the model. Returns a line about a taught bundle
        left waiting (it stays on disk), or None."""
        thread = self.thread
        if thread is not None and thread.is_alive():
            print("edgecls: waiting for the teach to finish (Ctrl-C again to leave it)", file=sys.stderr, flush=True)
            thread.join()
        with self.see_lock:
            self.clf.close()
        if self.state == "done" and self.out is not None:
            return (f"{self.out} was taught but neither kept nor undone; it stays (run it with `edgecls camera "
                    f"{self.out}`, or delete it)")
        return None

    # --- what the page shows --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self.lock:
            tried = self.tried
            result = None
            if tried is not None:
                t = tried.taught
                right, tested = tried.accuracy()
                result = {"bundle": str(t.bundle), "labels": t.labels, "added": t.added, "refined": t.refined,
                          "kept": t.kept, "photos": t.photos, "seconds": round(self.seconds, 2),
                          "embed_ms": round(t.embed_ms, 2), "right": right, "tested": tested,
                          "checks": [c.to_json() for c in tried.checks], "untested": tried.untested}
            return {"bundle": str(self.bundle), "name": self.bundle.name, "classes": list(self.clf.labels or []),
                    "parent": str(self.parent), "can_teach": self.why_not is None, "why_not": self.why_not,
                    "state": self.state, "step": dict(self.step), "error": self.error, "result": result,
                    "out": str(self.out) if self.out else None, "note": self.note,
                    "elapsed": round(time.time() - self.started, 1) if self.state == "running" else None}
