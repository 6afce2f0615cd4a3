"""Where ``convert`` and ``adopt`` write a bundle (``--out``), and how an earlier bundle there is
replaced.

``--out`` may name nothing yet, an empty folder, or a bundle of ours: a folder whose
``edgecls.json`` is our metadata (a JSON object with ``format_version`` and ``files``) and which
holds nothing but the files it lists (and what a device makes beside them,
``imx500/network.rpk``). Anything else (a training run, a folder of photos, a file, a symbolic
link) is refused with one line naming the path and the fix, before any work starts and again
just before writing: ``convert runs/x --out runs/x`` once deleted the training run.

Replacing a bundle: the new one is written whole beside it (``.NAME.new-PID``, by
``write_bundle``), then the two folders trade places in one ``renameat2(RENAME_EXCHANGE)``
(Linux), so ``--out`` is at every moment the whole old bundle or the whole new one; the old one,
now at the sibling name, is removed. Where the system has no exchange, the old bundle is renamed
aside (``.NAME.old-PID``) and the new one renamed in, and back again if that fails; a crash
between those two renames leaves the old bundle at ``.NAME.old-PID``.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any, Callable, Mapping

from edge_runtime.bundle.format import METADATA, write_bundle
from edge_runtime.errors import EdgeclsError

DEVICE_MADE = frozenset({"imx500/network.rpk"})  # made on the Pi by imx500-package (convert/imx500.py)
MAX_METADATA_BYTES = 16 << 20


class OutError(EdgeclsError):
    """An ``--out`` that holds something a bundle must not replace."""


def check_out(out: str | os.PathLike[str], flag: str = "--out") -> bool:
    """Whether writing a bundle at ``out`` replaces a bundle of ours (True) or fills a new or empty
    folder (False). Raises OutError when ``out`` holds anything else."""
    out = Path(out)
    fix = f"pass a new or empty folder as {flag} (e.g. {flag} {_elsewhere(out)})"
    if out.name in ("", ".", ".."):
        raise OutError(f"{out}: {flag} must name the bundle's own folder, not {out}; {fix}")
    if out.is_symlink():
        raise OutError(f"{out}: {flag} is a symbolic link (to {os.readlink(out)}), not a bundle folder; {fix}")
    if not out.exists():
        return False
    if not out.is_dir():
        raise OutError(f"{out}: a file, not a bundle folder; writing the bundle would replace it - {fix}")
    if not any(out.iterdir()):
        return False
    meta = _bundle_files(out)
    if meta is None:
        raise OutError(f"{out}: not empty and not an edgecls bundle (no readable {METADATA}); writing the bundle "
                       f"would replace everything in it - {fix}")
    extra = _unlisted(out, meta)
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise OutError(f"{out}: an edgecls bundle, but it also holds {extra[0]}{more}, which the bundle does not "
                       f"list; replacing it would delete them - move them out, or {fix}")
    return True


def _elsewhere(out: Path) -> Path:
    """A folder to suggest instead of ``out``: bundles/NAME, as the README writes it."""
    name = Path(os.path.abspath(out)).name
    suggestion = Path("bundles") / name
    return suggestion if os.path.abspath(suggestion) != os.path.abspath(out) else Path("bundles") / f"{name}-2"


def _bundle_files(folder: Path) -> set[str] | None:
    """The files a bundle folder's edgecls.json lists; None when it has no edgecls.json of ours."""
    path = folder / METADATA
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_METADATA_BYTES:
            return None
        meta = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or "format_version" not in meta or not isinstance(meta.get("files"), dict):
        return None
    return set(meta["files"])


def _unlisted(folder: Path, listed: set[str]) -> list[str]:
    """Files (and links) under ``folder`` that are neither listed, nor edgecls.json, nor device-made."""
    known = listed | DEVICE_MADE | {METADATA}
    found = []
    for root, dirs, names in os.walk(folder):
        base = Path(root).relative_to(folder)
        links = [d for d in dirs if (Path(root) / d).is_symlink()]  # os.walk lists them but never enters
        for name in sorted(names + links):
            rel = (base / name).as_posix()
            if rel not in known:
                found.append(rel)
        dirs.sort()
    return found


def write(out: str | os.PathLike[str], files: Mapping[str, Any], meta: Mapping[str, Any], tar: bool = False,
          progress: Callable[[str], None] = print, flag: str = "--out") -> Path:
    """``write_bundle`` at ``out`` after ``check_out``; an earlier bundle there is replaced as the
    module docstring says, and ``progress`` is told so. Returns the bundle directory."""
    out = Path(out)
    if not check_out(out, flag):
        return write_bundle(out, files, meta, tar=tar)
    staged = write_bundle(out.with_name(f".{out.name}.new-{os.getpid()}"), files, meta)
    try:
        if tar:
            _write_tar(staged, out.with_name(out.name + ".tar.gz"), out.name)
        how = _swap(staged, out)
    except OSError as e:
        raise OutError(f"{out}: the earlier bundle could not be replaced ({e.strerror or e}); it is unchanged - "
                       f"check the folder's permissions, or pass another {flag}") from None
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # after the swap: the earlier bundle
    progress(f"{out}: replaced the earlier bundle there ({how})")
    return out


def _swap(new: Path, out: Path) -> str:
    """Put the folder ``new`` at ``out`` and the earlier ``out`` at ``new``; says how."""
    if _exchange(new, out):
        return "the new one was written beside it, then swapped in by one atomic rename"
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)
        raise
    os.replace(old, new)
    return "the new one was written beside it, then renamed in (this system has no atomic exchange)"


def _exchange(a: Path, b: Path) -> bool:
    """``renameat2(a, b, RENAME_EXCHANGE)``: True when done, False where the system has no such call.
    Raises OSError for any other failure (both paths are then as they were)."""
    if sys.platform != "linux":
        return False
    call = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc 2.28+
    if call is None:
        return False
    call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if call(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # no such call, or not on this file system
        return False
    raise OSError(err, os.strerror(err), str(b))


def _write_tar(folder: Path, archive: Path, arcname: str) -> None:
    """``folder`` as ``archive`` (a .tar.gz whose top folder is ``arcname``), written beside it and renamed in."""
    part = archive.with_name(archive.name + ".part")
    with tarfile.open(part, "w:gz") as t:
        t.add(folder, arcname=arcname)
    os.replace(part, archive)
