"""Shared parts of the fault-injection suite (issue 28): deploys killed at each stage, a full disk
at home during a pull, 50,000 files, a host that dies in a rollout. Every module here is marked
``faults`` and ``sshd`` (``MARKS``: it runs against real OpenSSH servers on 127.0.0.1) and checks
that nothing was lost."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest


MARKS = [pytest.mark.faults, pytest.mark.sshd]


@pytest.fixture
def ram_dir(tmp_path):
    """A folder in memory (/dev/shm) where there is one (tens of thousands of fsync'd files on a
    VM's disk take minutes and test nothing more); elsewhere tmp_path."""
    if not Path("/dev/shm").is_dir():
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="edgecls-faults-", dir="/dev/shm"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@contextmanager
def small_tmpfs(path: Path, size: str):
    """``path`` as a tmpfs of ``size`` (root only); the test is skipped where mount is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                       text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip() or p.returncode}): needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def resize_tmpfs(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True, capture_output=True)
