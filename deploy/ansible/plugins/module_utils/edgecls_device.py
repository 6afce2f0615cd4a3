"""What the edgecls modules do on a device, around the device-side steps of edgecls_remote (a byte
copy of edgecls's deploy/remote.py, the same code ``edgecls deploy`` runs): find the device's edgecls,
probe what runs, run a step script with its arguments. Standard library only."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

from ansible_collections.edgecls.fleet.plugins.module_utils import edgecls_remote as remote


def absolute_dir(directory: str) -> str:
    """``edgecls_dir`` as ``edgecls deploy`` reads it (relative: under the login's home), made absolute."""
    d = remote.device_dir(directory)
    return os.path.normpath(d if os.path.isabs(d) else os.path.join(os.path.expanduser("~"), d))


def run_step(script: str, name: str, args: list[str], stdin=None, timeout: float | None = 900):
    """Run one of edgecls's device-side shell programs (``sh -c SCRIPT NAME ARGS...``)."""
    return subprocess.run(["sh", "-c", script, name, *args], stdin=stdin, capture_output=True, text=True,
                          timeout=timeout)


def find_edgecls(directory: str, asked: str) -> str | None:
    """The device's edgecls command (remote.FIND_EDGECLS); None when there is none."""
    p = run_step(remote.FIND_EDGECLS, "edgecls-find", [directory, asked], timeout=60)
    return p.stdout.strip() or None


def verify_command(exe: str) -> str:
    """The verify command line UPLOAD runs: a path is quoted, a command line (with spaces) is used as written."""
    return f"{exe if ' ' in exe else shlex.quote(exe)} verify --backend cpu"


def probe(directory: str) -> dict:
    """remote.PROBE, run by this Python: the live version, kept versions, camera service, status.json."""
    p = subprocess.run([sys.executable, "-c", remote.PROBE, directory], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"the probe of {directory} failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def failure(code: int, stderr: str) -> str:
    """A failed step's exit status and words, as one sentence (as ``edgecls deploy`` says it)."""
    if code == remote.EXIT_LOCKED:
        return "another deploy holds the device's lock; nothing changed - try again when it is done"
    mine = remote.device_words(stderr)
    if code == remote.EXIT_VERIFY:
        return "edgecls verify failed on the device, the previous version stays live: " + \
            "; ".join(remote.verify_causes(stderr) or mine)
    if mine:
        return mine[-1]
    lines = [line for line in stderr.splitlines() if line.strip()]
    return f"exit {code}: {lines[-1] if lines else 'no message'}"
