#!/usr/bin/env python3
"""Stands in for systemctl (systemd cannot run in this container) in the deploy tests: it keeps
unit state in $EDGECLS_UNIT_DIR and really runs a unit's ExecStart (parsed as systemd quotes it)
in its WorkingDirectory,
so a test sees the generated unit start `edgecls camera` on the live bundle.
Supports: daemon-reload, enable UNIT, restart UNIT, is-active [--quiet] UNIT, stop UNIT.

stop and restart do what systemd's do (systemd.kill(5), systemd.service(5)): SIGTERM to the unit's
processes, then wait until every one has exited, SIGKILL after TimeoutStopSec (90 s unless the unit
sets it); restart starts the unit only then. A restart that started the new process while the old
one was still exiting would let the two race for the old one's resources (its --serve port)."""

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

units = Path(os.environ.get("EDGECLS_UNIT_DIR", "/etc/systemd/system"))
args = [a for a in sys.argv[1:] if a != "--quiet"]
with open(units / "systemctl.log", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\n")
cmd, unit = args[0], (args[1] if len(args) > 1 else None)
pidfile = units / f"{unit}.pid" if unit else None


def alive() -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (an exited one not yet reaped is not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_timeout() -> float:
    """TimeoutStopSec= of the unit, in seconds (plain seconds only), else systemd's default 90 s."""
    for line in (units / unit).read_text().splitlines() if (units / unit).is_file() else []:
        if line.startswith("TimeoutStopSec="):
            return float(line.split("=", 1)[1])
    return 90.0


def stop() -> None:
    """SIGTERM to the unit's process group; wait for all of it to exit; SIGKILL after TimeoutStopSec."""
    pgid = int(pidfile.read_text())
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + stop_timeout()
    while group_alive(pgid):
        if time.monotonic() > deadline:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = float("inf")
        time.sleep(0.05)


if cmd in ("daemon-reload", "enable"):
    sys.exit(0)
if cmd in ("stop", "restart") and pidfile.exists() and alive():
    stop()
if cmd == "restart":
    text = (units / unit).read_text()
    line = next(l for l in text.splitlines() if l.startswith("ExecStart="))[len("ExecStart="):]
    argv = [a.replace("%%", "%").replace("$$", "$") for a in shlex.split(line)]
    cwd = next((l[len("WorkingDirectory="):] for l in text.splitlines() if l.startswith("WorkingDirectory=")), None)
    with open(units / f"{unit}.out", "ab") as out:
        p = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True, cwd=cwd)
    pidfile.write_text(str(p.pid))
    sys.exit(0)
if cmd == "is-active":
    sys.exit(0 if alive() else 3)
sys.exit(0 if cmd == "stop" else 1)
