"""Limits on what edgecls reads, and the one way it opens a file it was given.

A Pi runs unattended for months and reads files that other people made, so every input has a
bound that is checked before memory is allocated or a byte is written, and every bound can be
raised by an environment variable (a systemd unit sets them with ``Environment=``):

=============================  =================  ==============================================
variable                       default            what it bounds
=============================  =================  ==============================================
``EDGECLS_MAX_PIXELS``         16,000,000         pixels of one decoded image (JPEGs above it
                                                  are decoded at 1/2, 1/4 or 1/8 scale first)
``EDGECLS_MAX_LABELS_BYTES``   8 MiB              size of a label file
``EDGECLS_MAX_CLASSES``        100,000            class indexes in a label file
``EDGECLS_MAX_META_BYTES``     16 MiB             size of ``edgecls.json``
``EDGECLS_MAX_BUNDLE_MEMBERS`` 1,000              entries in a bundle ``.tar.gz``
``EDGECLS_MAX_BUNDLE_BYTES``   1 GiB              bytes a bundle ``.tar.gz`` unpacks to
=============================  =================  ==============================================

A ``.tflite`` is a flatbuffer, which cannot exceed 2 GiB: that bound is fixed. Files that are
not regular files (FIFOs, devices, sockets, directories) are refused before they are opened:
reading a FIFO blocks forever, ``/dev/zero`` never ends.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Callable, TypeVar

from edge_runtime.errors import EdgeclsError

MAX_MODEL_BYTES = 2 << 30  # flatbuffers use 32-bit offsets: no valid .tflite is larger


@dataclass(frozen=True)
class Limit:
    """A bound with its default and the environment variable that raises it."""

    env: str
    default: int
    unit: str  # for messages: "pixels", "bytes", ...

    def get(self) -> int:
        """The value in force: ``$env`` when set to a positive integer, else the default. A
        malformed value is an error naming the variable (never silently the default)."""
        text = os.environ.get(self.env, "").strip().replace("_", "")
        if not text:
            return self.default
        if not text.isdigit() or int(text) < 1:
            raise EdgeclsError(f"${self.env}={os.environ[self.env]!r} is not a positive integer; "
                               f"unset it (default {self.default:,}) or give a number of {self.unit}")
        return int(text)

    def hint(self) -> str:
        """What to tell a user who really means it."""
        return f"raise the limit with {self.env}=N (now {self.get():,} {self.unit})"


MAX_PIXELS = Limit("EDGECLS_MAX_PIXELS", 16_000_000, "pixels")  # ~14 bytes a pixel at peak: under 300 MB
MAX_LABELS_BYTES = Limit("EDGECLS_MAX_LABELS_BYTES", 8 << 20, "bytes")
MAX_CLASSES = Limit("EDGECLS_MAX_CLASSES", 100_000, "classes")
MAX_META_BYTES = Limit("EDGECLS_MAX_META_BYTES", 16 << 20, "bytes")
MAX_BUNDLE_MEMBERS = Limit("EDGECLS_MAX_BUNDLE_MEMBERS", 1_000, "entries")
MAX_BUNDLE_BYTES = Limit("EDGECLS_MAX_BUNDLE_BYTES", 1 << 30, "bytes")
ALL = (MAX_PIXELS, MAX_LABELS_BYTES, MAX_CLASSES, MAX_META_BYTES, MAX_BUNDLE_MEMBERS, MAX_BUNDLE_BYTES)


def kind_of(mode: int) -> str:
    """'a FIFO', 'a directory', ... for a stat mode that is not a regular file."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


E = TypeVar("E", bound=EdgeclsError)


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def check_regular(path: str | os.PathLike[str], what: str, error: Callable[[str], E],
                  missing: str = "not found") -> int:
    """Stat ``path`` (following links) without opening it; return its size. Raises ``error``
    naming the path when it is missing or not a regular file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {what} {missing}") from None
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: is {kind_of(st.st_mode)}, not {_a(what)}; pass a regular file")
    return st.st_size


def open_regular(path: str | os.PathLike[str], what: str, error: Callable[[str], E]) -> int:
    """Open a regular file for reading and return the descriptor: checked before it is opened,
    opened with O_NONBLOCK (a FIFO swapped in between cannot block) and checked again."""
    check_regular(path, what, error)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise error(f"{path}: cannot open {what} ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise error(f"{path}: is {kind_of(st.st_mode)}, not {_a(what)}; pass a regular file")
    os.set_blocking(fd, True)
    return fd


def read_bounded(path: str | os.PathLike[str], what: str, error: Callable[[str], E], limit: int,
                 hint: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; never reads more than ``limit + 1``."""
    fd = open_regular(path, what, error)
    with os.fdopen(fd, "rb") as f:
        # Read what the file holds (+1 shows it is larger), never a limit-sized buffer: read(n)
        # allocates n bytes first, which a 32-bit Python (armhf Raspberry Pi OS) cannot do for
        # MAX_MODEL_BYTES (OverflowError); then whatever it grew by since, up to limit + 1.
        data = f.read(min(limit, os.fstat(f.fileno()).st_size) + 1)
        while len(data) <= limit:
            more = f.read(min(limit + 1 - len(data), 1 << 20))
            if not more:
                break
            data += more
    if len(data) > limit:
        raise error(f"{path}: {what} is larger than {limit:,} bytes; {hint}")
    return data
