"""The C allocator, set for a process that runs a frame loop for months on a small Pi.

Every frame makes a few blocks of about a megabyte (the decoded 640x480 picture and its copy as
bytes, the web view's copy to encode as JPEG, the one mining saves), in the capture, loop and
mining threads. glibc maps a block that large on its own and unmaps it when it is freed, until the
first such block is freed: then it raises its mmap threshold to that block's size (up to 32 MB),
and from there on serves them from a heap, one per thread that allocates, each of which keeps its
high-water mark. ``for_frames`` fixes the threshold instead, so those blocks keep going back to
the system whole. Measured on the emulated Pi Zero 2 W (benchmarks/pi_memory.py), `camera
--serve` with MobileNetV2: 3 MB less at its peak, 15 MB less at the end of the run. The cost is a
mapping and its page faults per block, a few per frame.
"""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc's malloc.h)
MMAP_THRESHOLD = 256 << 10  # blocks from this size are mapped on their own (glibc's default starts at 128 kB)
ENV = "MALLOC_MMAP_THRESHOLD_"  # glibc's own variable for the same: a user's value stands


def for_frames() -> bool:
    """Fix glibc's mmap threshold at ``MMAP_THRESHOLD``: True when it was set; False where the C
    library is not glibc (no ``mallopt``), or ``$MALLOC_MMAP_THRESHOLD_`` already sets it."""
    if ENV in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl, macOS, Windows
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
