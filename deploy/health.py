"""What a device is running and whether it is healthy, read over one SSH connection.

The probe is a small Python program run by the device's ``python3`` (every device with the
runtime has one): it reads DIR/current (the live version, its bundle name, since when), the kept
versions, the camera service named in DIR/service (``systemctl is-active``) and, when the unit
runs ``edgecls camera --serve ADDR``, that web view's ``/status.json`` (frame counter, FPS,
latency, drift from the bundle's reference). It prints one JSON object and never changes anything.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from . import remote, ssh

PROBE = remote.PROBE  # $1 = DIR; shared with the Ansible collection's modules


class ProbeError(Exception):
    """The device could not be probed; the message says why."""


def probe(t: ssh.Target, o: ssh.Options) -> dict[str, Any]:
    """The device's live version, kept versions, camera service and its status.json."""
    p = ssh.run(t, o, ["python3", "-c", PROBE, t.dir], timeout=60)
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace")
        if p.returncode == 127 or "python3: not found" in err or "command not found" in err:
            raise ProbeError(f"{t}: no python3 on the device; install it (sudo apt install python3)")
        raise ProbeError(ssh.explain(t, o, p.returncode, err))
    try:
        return json.loads(p.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ProbeError(f"{t}: the device's answer was not JSON: {p.stdout.decode(errors='replace')[-200:]}") from None


latency_ms = remote.latency_ms


@dataclass
class Soak:
    seconds: float
    max_latency_ratio: float | None
    max_drift: float | None = None  # the camera's drift from its bundle's reference (status.json's drift.score)


def soak_problems(t: ssh.Target, o: ssh.Options, before: dict[str, Any] | None, soak: Soak,
                  facts: dict[str, Any]) -> list[str]:
    """Where the camera service runs: it must stay active, its frames must advance without errors
    for ``soak.seconds`` (counted from its first status.json, which a restarted camera gets
    ``STARTUP_S`` to serve) and its latency stay within ``max_latency_ratio`` of ``before``'s.
    Fills ``facts`` with what it saw; returns the problems (none: healthy)."""
    first = probe(t, o)
    now = remote.soak_start(first, facts)
    if now is not None:
        return now
    first = _serving(t, o, first)
    time.sleep(max(0.0, soak.seconds))
    last = probe(t, o)
    problems = remote.soak_verdict(before, first, last, soak.seconds, soak.max_latency_ratio, facts)
    if last.get("status") is not None and last["state"] == "active":
        problems += drift_problems(last["status"], soak.max_drift, facts)
    return problems


def drift_problems(status: dict[str, Any], max_drift: float | None, facts: dict[str, Any]) -> list[str]:
    """``--max-drift``: the camera's drift (edge_runtime/live/drift.py) at the end of the soak must
    not exceed it. A bundle without a reference, or a soak too short to fill the window's minimum,
    is not failed: ``facts["drift"]`` says why it was not judged."""
    drift = status.get("drift")
    score = drift.get("score") if isinstance(drift, dict) else None
    facts["drift"] = score if score is not None else ("no reference in the bundle" if drift is None else
                                                      f"too few frames to judge ({drift.get('frames')})")
    if max_drift is None or score is None:
        return []
    if score > max_drift:
        return [f"drift {score:.2f} is above --max-drift {max_drift:g} (top-1 PSI {drift.get('top1_psi')}, margin "
                f"PSI {drift.get('margin_psi')} over {drift.get('frames')} frames): the camera sees something unlike "
                "the bundle's held-out photos"]
    return []


STARTUP_S = remote.STARTUP_S


def _serving(t: ssh.Target, o: ssh.Options, first: dict[str, Any]) -> dict[str, Any]:
    """The first probe whose status.json answered (the soak starts there), waiting up to STARTUP_S."""
    deadline = time.monotonic() + STARTUP_S
    while first["status"] is None and first["state"] == "active" and time.monotonic() < deadline:
        time.sleep(1.0)
        first = probe(t, o)
    return first
