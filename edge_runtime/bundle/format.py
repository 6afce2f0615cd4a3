"""The bundle: what is flashed to a device (see DESIGN.md).

A directory (or one ``.tar.gz`` of it) with ``model.tflite``, optionally
``model_edgetpu.tflite`` and ``model_float.tflite``, ``labels.txt``, ``golden/`` and
``edgecls.json``, which lists every file's sha256 and size. Reading checks the format
version and every checksum before any model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

from edge_runtime.bundle.meta import FORMAT_VERSION, METADATA, FileEntry, Metadata, parse_meta
from edge_runtime.errors import BundleError, EdgeclsError
from edge_runtime.model.contract import InputContract, OutputContract
from edge_runtime.model.labels import read_labels
from edge_runtime.system.limits import MAX_META_BYTES, check_regular, read_bounded

MODEL_FILES = {"cpu": "model.tflite", "edgetpu": "model_edgetpu.tflite", "float": "model_float.tflite"}
LABELS = "labels.txt"


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Bundle:
    """A verified bundle on disk."""

    path: Path
    meta: dict[str, Any]
    labels: list[str]
    input: InputContract
    output: OutputContract
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def model(self, kind: str) -> Path | None:
        """Path of the ``cpu``, ``edgetpu`` or ``float`` model, None when the bundle has none."""
        name = MODEL_FILES[kind]
        return self.path / name if name in self.meta["files"] else None

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.path.name))


def is_bundle(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return (p.is_dir() and os.path.lexists(p / METADATA)) or p.name.endswith((".tar.gz", ".tgz"))


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and verify a bundle directory or ``.tar.gz``: the format version and the whole of
    ``edgecls.json`` (``meta.check_meta``), then the size and sha256 of every listed file.
    Raises BundleError naming the file and the fix."""
    p = archive = Path(path)
    tmp = None
    if p.name.endswith((".tar.gz", ".tgz")) and not p.is_dir():
        from edge_runtime.bundle.archive import extract  # tarfile, only for an archive (0.4 MB on a Pi)

        p, tmp = extract(p)
    elif not os.path.lexists(p):
        raise BundleError(f"{p}: bundle not found")
    try:
        meta = _read_meta(p)
        verify_files(p, meta.files)
        labels = read_labels(p / LABELS, meta.output.classes)
    except EdgeclsError as e:
        if tmp is None:
            raise
        tmp.cleanup()  # name the archive, not the temporary directory that is gone
        raise type(e)(str(e).replace(f"{p}{os.sep}", f"{archive}:")) from None
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
    return Bundle(p, meta.raw, labels, meta.input, meta.output, tmp)


def _read_meta(p: Path) -> Metadata:
    meta_path = p / METADATA
    if not p.is_dir():
        raise BundleError(f"{p}: not a bundle (a bundle is a directory or a .tar.gz with {METADATA}); "
                          "pass a bundle (edgecls convert or edgecls adopt makes one)")
    if not os.path.lexists(meta_path):
        raise BundleError(f"{p}: not a bundle (no {METADATA}); pass a bundle directory (edgecls convert or "
                          "edgecls adopt makes one)")
    data = read_bounded(meta_path, "bundle metadata file", BundleError, MAX_META_BYTES.get(), MAX_META_BYTES.hint())
    return parse_meta(data, str(meta_path))


def verify_files(p: Path, files: Mapping[str, FileEntry]) -> None:
    """Check every listed file: a regular file (never opened otherwise), same size, same sha256."""
    for name, entry in files.items():
        f = p / name
        size = check_regular(f, "bundle file", BundleError, missing=f"listed in {METADATA} but missing; copy the bundle again")
        if size != entry.size:
            raise BundleError(f"{f}: size {size} bytes, {METADATA} says {entry.size}; "
                              "the file is truncated or changed - copy the bundle again")
        digest = sha256_file(f)
        if digest != entry.sha256:
            raise BundleError(f"{f}: sha256 {digest[:12]}... does not match {METADATA} "
                              f"({entry.sha256[:12]}...); the file is corrupt or changed - copy the bundle again")


Source = Union[str, os.PathLike, bytes]


def write_bundle(dest: str | os.PathLike[str], files: Mapping[str, Source], meta: Mapping[str, Any],
                 tar: bool = False) -> Path:
    """Write a bundle atomically: every file into a temporary sibling directory, checksums into
    ``edgecls.json``, then one rename into place. A failure leaves any earlier bundle at
    ``dest`` untouched and no half bundle behind. ``files`` maps bundle names (``model.tflite``,
    ``golden/x.png``) to a source path or bytes. With ``tar``, ``dest.tar.gz`` is written too.
    Returns the bundle directory."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)  # mkdtemp's 0700 would make the bundle private to this user
    try:
        entries = {}
        for name, src in sorted(files.items()):
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, bytes):
                target.write_bytes(src)
            else:
                shutil.copyfile(src, target)
            entries[name] = {"sha256": sha256_file(target), "size": target.stat().st_size}
        full = {"format_version": FORMAT_VERSION,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **meta, "files": entries}
        (work / METADATA).write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
        if tar:
            from edge_runtime.bundle.archive import write_tar

            write_tar(work, dest.with_name(dest.name + ".tar.gz"), dest.name)
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
        os.replace(work, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return dest
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
