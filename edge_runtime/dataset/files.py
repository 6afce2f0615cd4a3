"""Files in ``DATASET/<class>/``: the one way edgecls names, writes and moves a photo, and the
class-name rules ``edgecls train`` reads by.

How a photo is written (``write_new``): the JPEG goes to a hidden temporary file in the class
folder, is flushed to disk, then gets its final name with ``link(2)``, which fails instead of
replacing an existing file; the temporary name is removed. So a crash leaves either no photo or
a whole one (a stray ``.tmp-*`` at worst, which training skips as a hidden file), and no photo
is ever overwritten. Names are the UTC save time to the microsecond (``20250102-153012-123456``),
so they sort by time; a clash gets ``_1``, ``_2``... which sorts after the first.

On a file system without hard links (FAT or exFAT on a USB stick or an SD card: ``link`` fails
with EPERM) the final name is claimed with ``open(O_CREAT | O_EXCL)``, which, like ``link``,
fails where any file of that name exists, and only then is the whole temporary file renamed
over that empty placeholder, after checking that it is still the one this call created. No
photo is overwritten there either; a crash in the moment between the claim and the rename
leaves an empty file under the final name, never a part of a photo. A move to another file
system (EXDEV) is a copy written the same way, then the source is removed.
"""

from __future__ import annotations

import errno
import io
import os
import re
import tempfile
import time
from pathlib import Path

from PIL import Image

from edge_runtime.errors import EdgeclsError
from edge_runtime.live.frames import Frame
from edge_runtime.model.preprocess import IMAGE_SUFFIXES

__all__ = ["IMAGE_SUFFIXES", "check_class", "class_folders", "jpeg", "move_new", "safe_label", "stamp", "write_new"]

JPEG_QUALITY = 92
MAX_CLASS_NAME = 64

def check_class(name: str) -> str:
    """A class name that is a safe folder name and that ``edgecls train`` reads as a class."""
    clean = name.strip()
    bad = (not clean or clean in (".", "..") or clean.startswith((".", "_")) or len(clean) > MAX_CLASS_NAME
           or any(c in clean for c in "/\\") or any(ord(c) < 32 for c in clean))
    if bad:
        raise ValueError(f"class name {name!r} cannot be a class folder: use letters, digits, spaces, '-' or '_', "
                         f"not starting with '.' or '_', no '/', at most {MAX_CLASS_NAME} characters")
    return clean


def class_folders(root: Path) -> list[str]:
    """The class folders of a dataset, as ``edgecls train`` sees them (no ``.`` or ``_`` folders)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def count_images(d: Path) -> int:
    """Photos in a class folder (0 when it does not exist): image files, hidden ones left out."""
    if not d.is_dir():
        return 0
    return sum(1 for p in d.iterdir() if p.is_file() and not p.name.startswith(".")
               and p.suffix.lower() in IMAGE_SUFFIXES)


def stamp(t: float | None = None) -> str:
    """UTC time to the microsecond, as a file name that sorts by time."""
    t = time.time() if t is None else t
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(t)) + f"-{int(t % 1 * 1e6):06d}"


NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK)  # what link(2) says on FAT


def _claim(src: Path | str, final: Path) -> bool:
    """Give the file ``src`` the name ``final`` unless something already has that name: True when
    it did (``src`` is then linked, or renamed away), False when ``final`` exists. Raises OSError
    (EXDEV across file systems, and anything but "no hard links here")."""
    try:
        os.link(src, final)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in NO_HARD_LINKS:
            raise
    try:  # no hard links: claim the name with an exclusive create, then rename over the claim
        fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        ours = os.fstat(fd)
    finally:
        os.close(fd)
    now = os.stat(final)
    if (now.st_dev, now.st_ino, now.st_size) != (ours.st_dev, ours.st_ino, 0):
        return False  # our placeholder was replaced meanwhile: that file is someone else's, leave it
    os.rename(src, final)
    return True


def _names(directory: Path, stem: str, tail: str, suffix: str):  # type: ignore[no-untyped-def]
    for i in range(10000):
        yield directory / f"{stem}{f'_{i}' if i else ''}{tail}{suffix}"


def write_new(directory: Path, stem: str, data: bytes, suffix: str = ".jpg", tail: str = "") -> Path:
    """Write ``data`` as ``directory/stem[_N]tail suffix``, atomically and never over an existing
    file (see the module's docstring). Returns the path written."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; a photo is an ordinary file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        for final in _names(directory, stem, tail, suffix):
            if _claim(tmp, final):
                return final
        raise EdgeclsError(f"{directory}: cannot find a free name for {stem}{suffix}")
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def move_new(src: Path, directory: Path) -> Path:
    """Move ``src`` into ``directory`` under its own name (``_N`` added on a clash), atomically and
    never over an existing file: link to the new name (or, without hard links, claim it and rename),
    then unlink the old one. Across file systems: a copy written by ``write_new``, then the unlink."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        for final in _names(directory, src.stem, "", src.suffix):
            if _claim(src, final):
                if os.path.lexists(src):
                    os.unlink(src)  # linked: the old name goes (renamed: it has gone already)
                return final
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        final = write_new(directory, src.stem, src.read_bytes(), suffix=src.suffix)
        os.unlink(src)
        return final
    raise EdgeclsError(f"{directory}: cannot find a free name for {src.name}")


def jpeg(frame: Frame, quality: int = JPEG_QUALITY) -> bytes:
    """The frame's full picture (the display/main stream when the source has one) as JPEG."""
    buf = io.BytesIO()
    Image.fromarray(frame.display if frame.display is not None else frame.rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()



def safe_label(label: str) -> str:
    """A label as part of a file or folder name: letters, digits, '-', '.' kept, the rest '_'
    squeezed (``Egyptian cat`` -> ``Egyptian_cat``)."""
    out = re.sub(r"[^A-Za-z0-9.-]+", "_", label).strip("_.")
    return out[:64] or "unlabelled"
