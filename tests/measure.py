"""Run the edgecls command in a subprocess and measure it: exit status, output, wall time and the
child's own peak RSS, killed at a timeout.

The peak is the kernel's VmHWM of the child, read by the child as it exits: exec starts a new
address space, so it counts only the edgecls process (getrusage's ru_maxrss would also count the
pytest process the child was forked from)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import sys
import threading
import time
from dataclasses import dataclass


@dataclass
class Measured:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_mb: float
    timed_out: bool


_WRAPPER = """
import atexit, os, runpy, sys
def _peak():
    with open('/proc/self/status') as f:
        kb = [line.split()[1] for line in f if line.startswith('VmHWM:')]
    with open(os.environ['EDGECLS_TEST_PEAK_FILE'], 'w') as f:
        f.write(kb[0] if kb else '0')
atexit.register(_peak)
sys.argv[0] = 'edgecls'
runpy.run_module('edge_runtime.cli', run_name='__main__', alter_sys=True)
"""


def run_measured(*args: object, timeout: float = 60, env: dict[str, str] | None = None,
                 python: str = sys.executable) -> Measured:
    fd, peak_file = tempfile.mkstemp(prefix="edgecls-peak-")
    os.close(fd)
    p = subprocess.Popen([python, "-c", _WRAPPER, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL,
                         env={**os.environ, **(env or {}), "EDGECLS_TEST_PEAK_FILE": peak_file})
    out: dict[str, bytes] = {}

    def read(name: str, f) -> None:
        out[name] = f.read()
        f.close()

    readers = [threading.Thread(target=read, args=(n, f)) for n, f in (("out", p.stdout), ("err", p.stderr))]
    for r in readers:
        r.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        p.kill()

    timer = threading.Timer(timeout, kill)
    t0 = time.monotonic()
    timer.start()
    _, status = os.waitpid(p.pid, 0)
    seconds = time.monotonic() - t0
    timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    for r in readers:
        r.join()
    with open(peak_file) as f:
        text = f.read().strip()
    os.unlink(peak_file)
    peak_mb = int(text) / 1024 if text else float("nan")  # nan: the child died before atexit (a crash)
    return Measured(p.returncode, out["out"].decode(errors="replace"), out["err"].decode(errors="replace"),
                    seconds, peak_mb, timed_out.is_set())


def one_error_line(m: Measured, *fragments: str) -> str:
    """Non-zero exit, no traceback, no hang, one 'edgecls: error:' line naming what it must."""
    assert not m.timed_out, f"hung for {m.seconds:.0f} s: {m.stderr[-2000:]}"
    assert m.returncode not in (0, -11, -6, -9), (m.returncode, m.stderr[-2000:])
    assert "Traceback" not in m.stderr, m.stderr
    errors = [line for line in m.stderr.splitlines() if line.startswith("edgecls: error:")]
    assert len(errors) == 1, m.stderr
    for f in fragments:
        assert f in errors[0], errors[0]
    return errors[0]
