"""Files in ``DATASET/<class>/``: the one way edgecls names, writes and moves a photo, and the
class-name rules ``edgecls train`` reads by.

How a photo is written (``write_new``): the JPEG goes to a hidden temporary file in the class
folder, is flushed to disk, then gets its final name with ``link(2)``, which fails instead of
replacing an existing file; the temporary name is removed. So a crash leaves either no photo or
a whole one (a stray ``.tmp-*`` at worst, which training skips as a hidden file), and no photo
is ever overwritten. Names are the UTC save time to the microsecond (``20250102-153012-123456``),
so they sort by time; a clash gets ``_1``, ``_2``... which sorts after the first.
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


def stamp(t: float | None = None) -> str:
    """UTC time to the microsecond, as a file name that sorts by time."""
    t = time.time() if t is None else t
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(t)) + f"-{int(t % 1 * 1e6):06d}"


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
        for i in range(10000):
            final = directory / f"{stem}{f'_{i}' if i else ''}{tail}{suffix}"
            try:
                os.link(tmp, final)
                return final
            except FileExistsError:
                continue
            except OSError as e:  # a file system without hard links (FAT on a USB stick): check, then rename
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                if final.exists():
                    continue
                os.rename(tmp, final)
                return final
        raise EdgeclsError(f"{directory}: cannot find a free name for {stem}{suffix}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def move_new(src: Path, directory: Path) -> Path:
    """Move ``src`` into ``directory`` under its own name (``_N`` added on a clash), atomically and
    never over an existing file: link to the new name, then unlink the old one."""
    directory.mkdir(parents=True, exist_ok=True)
    stem, suffix = src.stem, src.suffix
    for i in range(10000):
        final = directory / f"{stem}{f'_{i}' if i else ''}{suffix}"
        try:
            os.link(src, final)
        except FileExistsError:
            continue
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                raise
            if final.exists():
                continue
            os.rename(src, final)
            return final
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
