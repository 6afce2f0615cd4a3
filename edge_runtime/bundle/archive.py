"""A bundle as one ``.tar.gz``: unpacking what its ``edgecls.json`` lists, and nothing else
(``extract``), and writing one (``write_tar``). Imported only where an archive is read or
written: a device that runs a bundle directory never loads ``tarfile``."""

from __future__ import annotations

import os
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

from edge_runtime.bundle.meta import METADATA, parse_meta
from edge_runtime.errors import BundleError
from edge_runtime.system.limits import MAX_BUNDLE_BYTES, MAX_BUNDLE_MEMBERS, MAX_META_BYTES, check_regular


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


def extract(archive: Path) -> tuple[Path, tempfile.TemporaryDirectory[str]]:
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


def write_tar(src: Path, archive: Path, arcname: str) -> None:
    """``src`` as ``archive`` (a .tar.gz, its top folder ``arcname``), written whole or not at all."""
    part = archive.with_name(archive.name + ".part")
    with tarfile.open(part, "w:gz") as tar:
        tar.add(src, arcname=arcname)
    os.replace(part, archive)
