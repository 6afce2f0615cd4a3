"""`edgecls pull` under faults: the disk at home fills up, 50,000 files, a connection cut in the
middle. Afterwards every file of the device is at home exactly once (compared by sha256), and
nothing half-written is left."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import assert_one_line_error, run_edgecls
from faultkit import MARKS, ram_dir, resize_tmpfs, small_tmpfs  # noqa: F401 - ram_dir is a fixture

pytestmark = MARKS
TIMES: dict[str, float] = {}


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def at_home(root: Path) -> list[str]:
    """The sha256 of every image at home (one entry per file: a file twice shows twice)."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out += [sha(Path(dirpath, f).read_bytes()) for f in files if f.endswith(".jpg")]
    return sorted(out)


def small_files(dev: Path, n: int, pad: int = 0, classes: int = 5) -> list[str]:
    """``n`` distinct small files in ``classes`` class folders; returns their sha256, sorted."""
    sums = []
    for c in range(classes):
        (dev / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        data = b"photo %07d " % i + b"." * (i % 97)
        (dev / f"class{i % classes}" / f"{i:07d}{'_' + 'x' * pad if pad else ''}.jpg").write_bytes(data)
        sums.append(sha(data))
    return sorted(sums)


def pull(server, dev: Path, home: Path, *extra: str, timeout: float = 600):
    return run_edgecls("pull", server.target(dev), "--into", home, *server.ssh_args(), *extra, timeout=timeout)


def test_disk_full_at_home_names_the_path_and_a_rerun_gets_every_file_once(server, tmp_path):
    dev = tmp_path / "device"
    want = []
    for i in range(24):  # ~40 kB each, ~1 MB in all
        data = os.urandom(40_000)
        (dev / "cat").mkdir(parents=True, exist_ok=True)
        (dev / "cat" / f"{i:03d}.jpg").write_bytes(data)
        want.append(sha(data))
    with small_tmpfs(tmp_path / "home", "400k") as home:
        t0 = time.perf_counter()
        p = pull(server, dev, home)
        err = assert_one_line_error(p, "cannot write", str(home), "No space left on device", "at home",
                                    "run the same pull again")
        assert "connection" not in err
        got = at_home(home)
        assert 0 < len(got) < 24 and set(got) <= set(want) and len(set(got)) == len(got)
        assert not list(home.rglob(".tmp-*"))  # nothing half-written
        resize_tmpfs(home, "4m")  # space freed
        p = pull(server, dev, home, "--json")
        assert p.returncode == 0, p.stderr
        assert len(json.loads(p.stdout)["copied"]) == 24 - len(got)
        assert at_home(home) == sorted(want)  # every file, exactly once
        TIMES["disk full, then rerun"] = time.perf_counter() - t0


def test_fifty_thousand_files_and_a_cut_pull_rerun_gets_each_once(server, ram_dir):
    """50,000 files with long names (5 MB of file list: the size that deadlocked the pull before
    its list got a thread of its own), into memory at home."""
    dev, home = ram_dir / "device", ram_dir / "home"
    want = small_files(dev, 50_000, pad=90)
    t0 = time.perf_counter()
    p = pull(server, dev, home, "--json", timeout=300)
    TIMES["pull of 50,000 files"] = time.perf_counter() - t0
    r = json.loads(p.stdout)
    assert p.returncode == 0 and len(r["copied"]) == 50_000 and not r["error"], p.stderr
    assert at_home(home) == want

    # Cut in the middle: 5,000 files at 1 MiB/s, the connection cut when a third are home.
    dev2, home2 = ram_dir / "device2", ram_dir / "home2"
    want2 = small_files(dev2, 5_000, pad=10)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "edge_runtime.cli", "pull", server.target(dev2), "--into", str(home2),
           *server.ssh_args(), "--limit", "1024"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and _count(home2) < 1500:
        time.sleep(0.2)
    assert proc.poll() is None, "the pull finished before the connection could be cut"
    server.kill_sessions()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "run the same pull again" in err and "Traceback" not in err, err
    first = _count(home2)
    assert 1500 <= first < 5_000
    p = pull(server, dev2, home2, "--json")
    r = json.loads(p.stdout)
    assert p.returncode == 0 and len(r["copied"]) == 5_000 - first and r["known"] == first, p.stderr
    assert at_home(home2) == want2
    TIMES["5,000 files: cut at a third, rerun"] = time.perf_counter() - t0
    print("\n" + "\n".join(f"{k}: {v:.1f} s" for k, v in TIMES.items()))


def _count(root: Path) -> int:
    n = 0
    if not root.exists():
        return 0
    for d in os.scandir(root):
        if d.is_dir() and not d.name.startswith("."):
            n += sum(1 for f in os.scandir(d.path) if f.name.endswith(".jpg") and not f.name.startswith("."))
    return n
