"""The allocator setting of the long-running commands (system/memory.py): per-frame blocks made in
several threads go back to the system when freed, instead of staying in each thread's heap."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or not platform.libc_ver()[0].startswith("glibc"),
                                reason="mallopt is glibc's")

# Four threads make and free 1.5 MB blocks, as the capture, loop and mining threads do with frames;
# prints how much more the process holds afterwards (bytes).
FRAMES = """
import sys, threading
if sys.argv[1] == "set":
    from edge_runtime.system.memory import for_frames
    print(for_frames())
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
def frames():
    for _ in range(5):
        b = bytearray(1_500_000)
        b[::4096] = bytes(len(b[::4096]))  # touched, as a decoded picture is
        del b
base = rss()
for _ in range(2):
    threads = [threading.Thread(target=frames) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
print(rss() - base)
"""


def _run(mode: str, env: dict[str, str] | None = None) -> list[str]:
    p = subprocess.run([sys.executable, "-c", FRAMES, mode], capture_output=True, text=True, check=True,
                       env={**os.environ, **(env or {})})
    return p.stdout.split()


def test_frames_freed_in_several_threads_go_back_to_the_system():
    was_set, kept = _run("set")
    assert was_set == "True" and int(kept) < 1_000_000, kept


def test_a_threshold_the_user_set_stands():
    was_set, _ = _run("set", {"MALLOC_MMAP_THRESHOLD_": str(4 << 20)})
    assert was_set == "False"
