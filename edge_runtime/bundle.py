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
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

from .contract import InputContract, OutputContract
from .errors import BundleError
from .labels import read_labels

FORMAT_VERSION = 1
METADATA = "edgecls.json"
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
    return (p.is_dir() and (p / METADATA).is_file()) or p.name.endswith((".tar.gz", ".tgz"))


def _extract(archive: Path) -> tuple[Path, tempfile.TemporaryDirectory[str]]:
    tmp = tempfile.TemporaryDirectory(prefix="edgecls-bundle-")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                target = os.path.realpath(os.path.join(tmp.name, member.name))
                if not target.startswith(os.path.realpath(tmp.name) + os.sep) or not (member.isfile() or member.isdir()):
                    raise BundleError(f"{archive}: unsafe or unsupported entry {member.name!r} in the archive")
                if member.isfile():
                    src = tar.extractfile(member)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with src, open(target, "wb") as dst:  # type: ignore[union-attr]
                        shutil.copyfileobj(src, dst)
    except (tarfile.TarError, EOFError, OSError) as e:
        tmp.cleanup()
        raise BundleError(f"{archive}: cannot unpack bundle archive ({e}); the file may be truncated - copy it again") from None
    except BundleError:
        tmp.cleanup()
        raise
    found = [Path(d) for d, _, files in os.walk(tmp.name) if METADATA in files]
    if len(found) != 1:
        tmp.cleanup()
        raise BundleError(f"{archive}: the archive holds {len(found)} {METADATA} files; a bundle archive holds one")
    return found[0], tmp


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and verify a bundle directory or ``.tar.gz``: the format version, then the size
    and sha256 of every listed file. Raises BundleError naming the file and the fix."""
    p = Path(path)
    tmp = None
    if p.is_file() and p.name.endswith((".tar.gz", ".tgz")):
        p, tmp = _extract(p)
    try:
        meta = _read_meta(p)
        where = str(p / METADATA)
        contract_in = InputContract.from_json(meta["input"], where)
        contract_out = OutputContract.from_json(meta["output"], where)
        verify_files(p, meta)
        labels = read_labels(p / LABELS)
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
    return Bundle(p, meta, labels, contract_in, contract_out, tmp)


def _read_meta(p: Path) -> dict[str, Any]:
    meta_path = p / METADATA
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{p}: not a bundle (no {METADATA}); pass a bundle directory or a .tflite with --labels") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{meta_path}: unreadable bundle metadata ({e}); copy the bundle again") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{meta_path}: bundle metadata is not a JSON object; copy the bundle again")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{meta_path}: bundle format version {version!r} is not known to this edgecls "
                          f"(it reads version {FORMAT_VERSION}); install the edgecls version that wrote it, or reconvert")
    for key in ("files", "input", "output"):
        if not isinstance(meta.get(key), dict):
            raise BundleError(f"{meta_path}: bundle metadata has no '{key}' section; reconvert the model")
    for required in (MODEL_FILES["cpu"], LABELS):
        if required not in meta["files"]:
            raise BundleError(f"{meta_path}: bundle lists no {required}; reconvert the model")
    return meta


def verify_files(p: Path, meta: Mapping[str, Any]) -> None:
    """Check every file listed in the metadata: present, same size, same sha256."""
    for name, entry in meta["files"].items():
        f = p / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{p / METADATA}: file entry {name!r} points outside the bundle")
        if not f.is_file():
            raise BundleError(f"{f}: listed in {METADATA} but missing; copy the bundle again")
        size = f.stat().st_size
        if size != entry.get("size"):
            raise BundleError(f"{f}: size {size} bytes, {METADATA} says {entry.get('size')}; "
                              "the file is truncated or changed - copy the bundle again")
        digest = sha256_file(f)
        if digest != entry.get("sha256"):
            raise BundleError(f"{f}: sha256 {digest[:12]}... does not match {METADATA} "
                              f"({str(entry.get('sha256'))[:12]}...); the file is corrupt or changed - copy the bundle again")


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
            _write_tar(work, dest.with_name(dest.name + ".tar.gz"), dest.name)
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


def _write_tar(src: Path, archive: Path, arcname: str) -> None:
    part = archive.with_name(archive.name + ".part")
    with tarfile.open(part, "w:gz") as tar:
        tar.add(src, arcname=arcname)
    os.replace(part, archive)
