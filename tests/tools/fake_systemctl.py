#!/usr/bin/env python3
"""Stands in for systemctl (systemd cannot run in this container) in the deploy tests: it keeps
unit state in $EDGECLS_UNIT_DIR and really runs a unit's ExecStart (parsed as systemd quotes it)
in its WorkingDirectory,
so a test sees the generated unit start `edgecls camera` on the live bundle.
Supports: daemon-reload, enable UNIT, restart UNIT, is-active [--quiet] UNIT, stop UNIT."""

import os
import shlex
import signal
import subprocess
import sys
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


if cmd in ("daemon-reload", "enable"):
    sys.exit(0)
if cmd in ("stop", "restart") and pidfile.exists() and alive():
    os.killpg(int(pidfile.read_text()), signal.SIGTERM)
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
