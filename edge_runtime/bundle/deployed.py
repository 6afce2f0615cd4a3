"""A deployed bundle folder on this device, as ``edgecls deploy`` lays it out, read and changed
here by the runtime (``edgecls teach --into`` adds a version, ``edgecls camera`` follows
``current``). The protocol is deploy/remote.py's, step for step; that module is the device side of
a deploy, run as shell programs over ssh and imported only with the standard library, so it cannot
use this one (and the runtime never imports deploy/). The layout, under DIR:

    versions/<id>/            one directory per version that went live
    versions/.incoming-<x>/   one in the making (removed by the next operation under the lock)
    current -> versions/<id>  a relative symlink, replaced by rename(2): it always names a whole version
    history                   the ids in the order they went live (a rollback goes to the newest
                              earlier one that is still there)
    .lock                     flock(2)'d by every operation that changes anything; flock(1) in
                              remote.py's programs takes the same lock, so the two never interleave

An id is ``<UTC time>-<name>-<first 10 hex of the manifest's sha256>``, as ``remote.bundle_tar``
names an upload (the manifest: ``sha256  file`` lines of ``edgecls.json``'s files, sorted).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from edge_runtime.errors import EdgeclsError

CURRENT = "current"
VERSIONS = "versions"
HISTORY = "history"
LOCK = ".lock"
INCOMING = ".incoming-"
KEEP = 5  # versions kept, as edgecls deploy --keep's default


class DeployedError(EdgeclsError):
    """A folder that is not a deployed bundle folder, or one another operation holds."""


def manifest_sha256(files: Mapping[str, Mapping[str, Any]]) -> str:
    """The sha256 of edgecls.json's file list (``sha256  name`` lines, sorted), which a deploy
    names versions by and ``edgecls_bundle_info`` reports."""
    text = "".join(f"{files[f]['sha256']}  {f}\n" for f in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


def version_id(meta: Mapping[str, Any], now: float | None = None) -> str:
    """The id a deploy would give this bundle's upload (``remote.bundle_tar``'s)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(meta.get("name") or ""))[:40] or "bundle"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"{stamp}-{name}-{manifest_sha256(meta['files'])[:10]}"


@dataclass(frozen=True)
class Deployed:
    """One deployed folder (``DIR``)."""

    path: Path

    @classmethod
    def find(cls, path: str | os.PathLike[str]) -> "Deployed | None":
        """The deployed folder ``path`` names, as DIR or as DIR/current; None when it is neither."""
        p = Path(path)
        if p.name == CURRENT and p.is_symlink():
            p = p.parent
        d = cls(p)
        return d if d.live() is not None else None

    @classmethod
    def open(cls, path: str | os.PathLike[str], option: str = "--into") -> "Deployed":
        """``find``, or DeployedError saying what ``path`` is instead and what to pass."""
        d = cls.find(path)
        if d is not None:
            return d
        p = Path(path)
        what = ("does not exist" if not os.path.lexists(p) else "is not a folder" if not p.is_dir()
                else "is a bundle, not a deployed folder" if (p / "edgecls.json").exists()
                else f"has no {CURRENT} -> {VERSIONS}/ID symlink, so nothing is deployed there")
        raise DeployedError(f"{p}: {what}; {option} takes the folder that `edgecls deploy` made on this device "
                            f"(DIR, holding {CURRENT} and {VERSIONS}/)")

    def live(self) -> str | None:
        """The id ``current`` names (None when there is no current, or it points outside versions/)."""
        try:
            target = os.readlink(self.path / CURRENT)
        except OSError:
            return None
        head, _, vid = target.rstrip("/").rpartition("/")
        if head not in (VERSIONS, str(self.path / VERSIONS)) or not vid or vid.startswith("."):
            return None
        return vid

    def version(self, vid: str) -> Path:
        return self.path / VERSIONS / vid

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold DIR/.lock as remote.py's programs do (``flock -n``): another holder is an error now,
        not a wait. Abandoned incoming versions are removed once it is held."""
        fd = os.open(self.path / LOCK, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise DeployedError(f"{self.path}: locked by another deploy or teach; run this again when it "
                                    "has finished") from None
            for old in (self.path / VERSIONS).glob(INCOMING + "*"):
                shutil.rmtree(old, ignore_errors=True)
            yield
        finally:
            os.close(fd)

    def incoming(self) -> Path:
        """A new, empty ``versions/.incoming-*`` directory to build a version in (under the lock)."""
        return Path(tempfile.mkdtemp(prefix=INCOMING, dir=self.path / VERSIONS))

    def add(self, staged: Path, vid: str, keep: int = KEEP) -> None:
        """Make ``staged`` (a complete, verified bundle directory inside versions/) version ``vid``,
        switch ``current`` to it, append it to the history and keep the newest ``keep`` versions
        that went live (0: all), as remote.UPLOAD's last steps do. Under ``locked``."""
        dest = self.version(vid)
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(staged, dest)
        self.switch(vid)
        with open(self.path / HISTORY, "a", encoding="utf-8") as f:
            f.write(vid + "\n")
        if keep > 0:
            newest_first = list(dict.fromkeys(reversed(self.history())))
            for old in newest_first[keep:]:
                if old != vid:
                    shutil.rmtree(self.version(old), ignore_errors=True)

    def switch(self, vid: str) -> None:
        """Point ``current`` at versions/``vid`` in one rename (``ln -sfn`` + ``mv -fT``)."""
        tmp = self.path / ".current.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(f"{VERSIONS}/{vid}", tmp)
        os.replace(tmp, self.path / CURRENT)

    def history(self) -> list[str]:
        try:
            text = (self.path / HISTORY).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line]
