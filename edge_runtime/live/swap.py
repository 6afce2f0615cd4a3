"""A camera on a deployed bundle folder (``bundle/deployed.py``) follows its ``current``: when a
deploy, ``edgecls teach --into`` or a rollback switches it, the camera runs the new version from
the next frame on, without a restart.

How: a thread looks at ``current`` (one readlink) every ``CHECK_S``; when it names another version,
the thread loads it (the bundle's checks: format, every file's sha256) and reruns its golden
photos through the loaded model, as a deploy's verify does, all beside the running loop. The loop
asks ``between_frames`` before each frame and, once the new model is ready, takes it there: no
frame is skipped or scored twice. A frame prepared for the old model (the capture thread works
one frame ahead) is prepared again for the new one, whose input may differ. A version that does not
load or fails its golden photos is said once; the old model keeps running.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_runtime.bundle.classifier import Classifier
from edge_runtime.bundle.deployed import Deployed, manifest_sha256
from edge_runtime.bundle.verify import check
from edge_runtime.errors import EdgeclsError
from edge_runtime.live.loop import ModelScorer

CHECK_S = 1.0  # how often current is looked at: one readlink


@dataclass(frozen=True)
class _Prepared:
    """A model input with the model it was made for and the picture it was made from."""

    clf: Classifier
    x: np.ndarray
    rgb: np.ndarray


class Following(ModelScorer):
    """A ``ModelScorer`` on ``folder``'s live version ``version`` that takes each new live version
    between two frames. ``load`` makes a Classifier of a version directory (the camera's backend
    and threads); ``log`` says what happened (one line each); ``on_swap`` runs in the loop right
    after a swap (the camera's web view, metrics, drift). ``start`` the watching thread, ``close``
    at the end."""

    def __init__(self, clf: Classifier, folder: Deployed, version: str, load: Callable[[Path], Classifier],
                 log: Callable[[str], None], every_s: float = CHECK_S):
        super().__init__(clf)
        self.folder, self.version, self.load, self.log, self.every_s = folder, version, load, log, every_s
        self.on_swap: list[Callable[["Following"], None]] = []
        self._ready: tuple[str, Classifier] | None = None  # loaded and checked, waiting for the next frame
        self._tried: str = version  # the version the watcher loaded last (running, ready or refused)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._frame: int | None = None
        self.status = self._status(clf, version)

    def _status(self, clf: Classifier, version: str) -> dict[str, Any]:
        """What the camera's status JSON says under ``bundle``: the version running, since when,
        and the newest one that could not run here, with why. Replaced whole, never changed."""
        files = clf.bundle.meta.get("files", {}) if clf.bundle is not None else {}
        return {"name": clf.bundle.name if clf.bundle is not None else "", "version": version,
                "sha256": manifest_sha256(files), "folder": str(self.folder.path), "since": round(time.time(), 3)}

    def start(self) -> "Following":
        self._thread = threading.Thread(target=self._watch, daemon=True, name="edgecls-follow")
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None:
            ready[1].close()

    # --- the loop's side -------------------------------------------------------------------

    def prepare(self, rgb: np.ndarray) -> _Prepared:  # type: ignore[override]
        clf = self.clf
        return _Prepared(clf, clf.prepare(rgb), rgb)

    def score(self, frame: Any, p: _Prepared) -> tuple[np.ndarray, dict[str, float]]:  # type: ignore[override]
        self._frame = frame.n
        clf = self.clf
        x = p.x if p.clf is clf else clf.prepare(p.rgb)  # made for the model before the swap
        t = time.perf_counter()
        raw = clf.infer(x)
        invoke_ms = (time.perf_counter() - t) * 1e3
        return clf.scores(raw), {"invoke": invoke_ms}

    def between_frames(self) -> bool:
        if self._ready is None:  # the common case: no lock taken
            return False
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is None:
            return False
        version, new = ready
        old, was = self.clf, self.version
        self.clf, self.labels, self.version = new, new.labels, version
        with self._lock:
            self.status = self._status(new, version)
        old.close()  # the capture thread may still prepare with it: preparing needs no interpreter
        after = f" after frame {self._frame}" if self._frame is not None else ""
        self.log(f"now running {version} ({self._describe(new)}) from {self.folder.path}/current{after}; was {was}")
        for f in self.on_swap:
            f(self)
        return True

    @staticmethod
    def _describe(clf: Classifier) -> str:
        taught = (clf.bundle.meta.get("taught") or {}) if clf.bundle is not None else {}
        added = f"; taught {', '.join(taught['added'])}" if taught.get("added") else ""
        name = clf.bundle.name if clf.bundle is not None else Path(clf.model_path).stem
        return f"{name}, {len(clf.labels)} classes{added}"

    # --- the watcher's side ----------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(self.every_s):
            target = self.folder.live()
            if target is None or target == self._tried:
                continue
            self._tried = target
            if target == self.version:  # switched back before the new one went live here
                with self._lock:
                    ready, self._ready = self._ready, None
                if ready is not None:
                    ready[1].close()
                with self._lock:
                    self.status = {k: v for k, v in self.status.items() if k != "refused"}
                continue
            clf = self._load(target)
            if clf is None:
                continue
            with self._lock:
                ready, self._ready = self._ready, (target, clf)
            if ready is not None:  # a newer version came before the loop took the last one
                ready[1].close()

    def _load(self, version: str) -> Classifier | None:
        """The version's Classifier, checked as a deploy checks it; None (said once) when it cannot run."""
        path = self.folder.version(version)
        clf = None
        try:
            clf = self.load(path)
            if clf.bundle is not None and (clf.bundle.meta.get("golden") or {}).get("photos"):
                rep = check(clf, str(path))
                if not rep.ok:
                    raise EdgeclsError(f"its golden photos fail here ({'; '.join(rep.causes()) or 'mismatch'})")
            return clf
        except (EdgeclsError, OSError, ValueError) as e:
            if clf is not None:
                clf.close()
            reason = " ".join(str(e).split())
            with self._lock:
                self.status = {**self.status, "refused": {"version": version, "reason": reason}}
            self.log(f"warning: {self.folder.path}/current now names {version}, which cannot run here: {reason}; "
                     f"still running {self.version}")
            return None
