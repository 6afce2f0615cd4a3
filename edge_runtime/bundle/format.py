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
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Union

from edge_runtime.bundle.meta import FORMAT_VERSION, METADATA, FileEntry, Metadata, parse_meta
from edge_runtime.errors import BundleError, EdgeclsError
from edge_runtime.model.contract import InputContract, OutputContract
from edge_runtime.model.labels import read_labels
from edge_runtime.system.limits import MAX_BUNDLE_BYTES, MAX_BUNDLE_MEMBERS, MAX_META_BYTES, check_regular, read_bounded

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


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads pax and GNU long-name headers into memory whole: refuse large ones first."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        if self.type in _META_TYPES and self.size > _MAX_HEADER:
            raise BundleError(f"{tar.name}: a {self.size:,}-byte tar header block; a bundle archive has short "
                              "names only - make the archive with edgecls convert --tar")
        return super()._proc_member(tar)  # type: ignore[misc]


_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
               tarfile.GNUTYPE_LONGLINK)
_MAX_HEADER = 1 << 16


def _extract(archive: Path) -> tuple[Path, tempfile.TemporaryDirectory[str]]:
    """Unpack the files a bundle archive's edgecls.json lists, and nothing else.

    First pass, headers only: at most $EDGECLS_MAX_BUNDLE_MEMBERS entries declaring at most
    $EDGECLS_MAX_BUNDLE_BYTES, exactly one edgecls.json (validated). Second pass: each listed
    file, which must be a regular file of the listed size, streamed out with its size checked
    as it is written (symlinks, devices and unlisted entries are never written). Any failure,
    Ctrl-C or SIGTERM/SIGHUP (see ``signals``) removes the temporary directory."""
    check_regular(archive, "bundle archive", BundleError)
    tmp = tempfile.TemporaryDirectory(prefix="edgecls-bundle-")
    try:
        with tarfile.open(archive, "r:gz", tarinfo=_BoundedTarInfo) as tar:
            members = _headers(archive, tar)
            metas = [m for name, m in members.items() if PurePosixPath(name).name == METADATA]
            if len(metas) != 1:
                raise BundleError(f"{archive}: the archive holds {len(metas)} {METADATA} files; a bundle archive holds one")
            meta_member = metas[0]
            prefix = str(PurePosixPath(meta_member.name).parent)
            prefix = "" if prefix == "." else prefix + "/"
            if not meta_member.isreg():
                raise BundleError(f"{archive}: {meta_member.name} is not a regular file in the archive; copy the bundle again")
            limit = MAX_META_BYTES.get()
            if meta_member.size > limit:
                raise BundleError(f"{archive}: {meta_member.name} is {meta_member.size:,} bytes, above "
                                  f"{limit:,}; {MAX_META_BYTES.hint()}")
            raw = tar.extractfile(meta_member).read(limit + 1)  # type: ignore[union-attr]
            meta = parse_meta(raw, f"{archive}:{meta_member.name}")
            total = sum(e.size for e in meta.files.values())
            if total > MAX_BUNDLE_BYTES.get():
                raise BundleError(f"{archive}: {METADATA} lists {total:,} bytes of files, above the limit of "
                                  f"{MAX_BUNDLE_BYTES.get():,}; {MAX_BUNDLE_BYTES.hint()}")
            root = Path(tmp.name) / "bundle"
            root.mkdir()
            wanted = []
            for name, entry in meta.files.items():
                m = members.get(prefix + name)
                if m is None:
                    raise BundleError(f"{archive}: {name} is listed in {METADATA} but not in the archive; copy the bundle again")
                if not m.isreg():
                    what = "a symlink" if m.issym() else "a hard link" if m.islnk() else "not a regular file"
                    raise BundleError(f"{archive}: {m.name} is {what}; a bundle archive holds regular files only - "
                                      "make it with edgecls convert --tar")
                if m.size != entry.size:
                    raise BundleError(f"{archive}: {m.name} is {m.size:,} bytes, {METADATA} says {entry.size:,}; "
                                      "the file is truncated or changed - copy the bundle again")
                wanted.append((m, entry))
            for m, entry in sorted(wanted, key=lambda x: x[0].offset_data):  # archive order: one forward pass
                _stream(archive, tar, m, entry.size, root / entry.name)
            with open(root / METADATA, "wb") as f:
                f.write(raw)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        tmp.cleanup()
        raise BundleError(f"{archive}: cannot unpack bundle archive ({e}); the file may be truncated - copy it again") from None
    except OSError as e:
        tmp.cleanup()
        raise BundleError(f"{archive}: cannot unpack bundle archive into {tempfile.gettempdir()} ({e.strerror}); "
                          "free space there or set TMPDIR") from None
    except BaseException:
        tmp.cleanup()
        raise
    return root, tmp


def _headers(archive: Path, tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Every entry's header, with the count and declared sizes bounded as they are read."""
    most, budget = MAX_BUNDLE_MEMBERS.get(), MAX_BUNDLE_BYTES.get()
    members: dict[str, tarfile.TarInfo] = {}
    count = declared = 0
    while True:
        m = tar.next()
        if m is None:
            return members
        count += 1
        if count > most:
            raise BundleError(f"{archive}: more than {most:,} entries; a bundle holds a few files - "
                              + MAX_BUNDLE_MEMBERS.hint())
        parts = PurePosixPath(m.name).parts
        if m.name.startswith("/") or ".." in parts:
            raise BundleError(f"{archive}: unsafe entry {m.name!r} in the archive (it points outside); "
                              "make the archive with edgecls convert --tar")
        declared += m.size if m.isreg() else 0
        if declared > budget:
            raise BundleError(f"{archive}: unpacks to more than {budget:,} bytes (a decompression bomb, or not a "
                              f"bundle); {MAX_BUNDLE_BYTES.hint()}")
        members[str(PurePosixPath(m.name))] = m  # "./b/x" and "b//x" are "b/x"


def _stream(archive: Path, tar: tarfile.TarFile, m: tarfile.TarInfo, size: int, target: Path) -> None:
    """Copy one entry out, never writing more than ``size`` bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    src = tar.extractfile(m)
    written = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with src, os.fdopen(fd, "wb") as dst:  # type: ignore[union-attr]
        while True:
            block = src.read(1 << 20)  # type: ignore[union-attr]
            if not block:
                break
            written += len(block)
            if written > size:
                raise BundleError(f"{archive}: {m.name} holds more than the {size:,} bytes {METADATA} lists; "
                                  "copy the bundle again")
            dst.write(block)
    if written != size:
        raise BundleError(f"{archive}: {m.name} ends after {written:,} of {size:,} bytes; the archive is "
                          "truncated - copy it again")


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and verify a bundle directory or ``.tar.gz``: the format version and the whole of
    ``edgecls.json`` (``meta.check_meta``), then the size and sha256 of every listed file.
    Raises BundleError naming the file and the fix."""
    p = archive = Path(path)
    tmp = None
    if p.name.endswith((".tar.gz", ".tgz")) and not p.is_dir():
        p, tmp = _extract(p)
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
