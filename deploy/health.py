"""What a device is running and whether it is healthy, read over one SSH connection.

The probe is a small Python program run by the device's ``python3`` (every device with the
runtime has one): it reads DIR/current (the live version, its bundle name, since when), the kept
versions, the camera service named in DIR/service (``systemctl is-active``) and, when the unit
runs ``edgecls camera --serve ADDR``, that web view's ``/status.json`` (frame counter, FPS,
latency, drift from the bundle's reference). It prints one JSON object and never changes anything.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

from . import ssh

# $1 = DIR
PROBE = r'''
import json, os, shlex, subprocess, sys, urllib.request
d = os.path.expanduser(sys.argv[1])
out = {"current": None, "name": None, "since": None, "versions": [], "service": None, "state": None,
       "serve": None, "status": None, "status_error": None}
cur = os.path.join(d, "current")
if os.path.islink(cur):
    out["current"] = os.path.basename(os.readlink(cur))
    out["since"] = os.lstat(cur).st_mtime
    try:
        with open(os.path.join(cur, "edgecls.json")) as f:
            out["name"] = json.load(f).get("name")
    except (OSError, ValueError):
        pass
vd = os.path.join(d, "versions")
if os.path.isdir(vd):
    out["versions"] = sorted(v for v in os.listdir(vd) if not v.startswith("."))
try:
    with open(os.path.join(d, "service")) as f:
        unit = f.read().strip()
except OSError:
    unit = None
if unit:
    out["service"] = unit
    try:
        r = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True, timeout=20)
        out["state"] = r.stdout.strip() or ("active" if r.returncode == 0 else "inactive")
    except (OSError, subprocess.SubprocessError) as e:
        out["state"] = "unknown (%s)" % e
    args = []
    try:
        with open(os.path.join(os.environ.get("EDGECLS_UNIT_DIR", "/etc/systemd/system"), unit)) as f:
            for line in f:
                if line.startswith("ExecStart="):
                    args = [a.replace("%%", "%").replace("$$", "$") for a in shlex.split(line[10:])]
    except (OSError, ValueError):
        pass
    for i, a in enumerate(args):
        if a == "--serve" and i + 1 < len(args):
            out["serve"] = args[i + 1]
        elif a.startswith("--serve="):
            out["serve"] = a[8:]
    if out["serve"] and out["state"] == "active":
        host, _, port = out["serve"].rpartition(":")
        host = host.strip("[]")
        host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        try:
            with urllib.request.urlopen("http://%s:%s/status.json" % (host, port), timeout=5) as r:
                out["status"] = json.loads(r.read().decode())
        except Exception as e:
            out["status_error"] = str(e)
print(json.dumps(out))
'''


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


def latency_ms(status: dict[str, Any] | None) -> float | None:
    """The camera's inference latency from a status.json: the median ``invoke`` of its last minute
    (``history``; one frame's time jumps several-fold on a busy machine), else the last frame's
    ``invoke``, else the sum of its stages."""
    history = [x for x in ((status or {}).get("history") or {}).get("invoke_ms") or [] if isinstance(x, (int, float))]
    if history:
        return float(statistics.median(history))
    lat = (status or {}).get("latency_ms") or {}
    if "invoke" in lat:
        return float(lat["invoke"])
    return float(sum(lat.values())) if lat else None


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
    if not first["service"]:
        facts["service"] = None
        return []
    facts["service"] = first["service"]
    if first["state"] != "active":
        return [f"service {first['service']} is {first['state']} after the switch"]
    if not first["serve"]:
        facts["note"] = "the camera service has no --serve: frames and latency were not checked"
        return []
    first = _serving(t, o, first)
    time.sleep(max(0.0, soak.seconds))
    last = probe(t, o)
    facts.update(frames=[_frame(first), _frame(last)], fps=(last["status"] or {}).get("fps"))
    if last["state"] != "active":
        return [f"service {last['service']} stopped during the {soak.seconds:g} s soak ({last['state']})"]
    if last["status"] is None:
        return [f"the camera's status.json did not answer ({last['status_error'] or first['status_error']})"]
    problems = []
    if _frame(last) <= _frame(first):
        problems.append(f"frames did not advance in {soak.seconds:g} s (frame {_frame(last)})")
    errs = [(s["status"] or {}).get("errors") for s in (first, last)]
    if errs[1] and errs[1] != errs[0]:
        problems.append(f"the camera reported errors during the soak ({errs[0] or 0} -> {errs[1]})")
    old, new = latency_ms((before or {}).get("status")), latency_ms(last["status"])
    facts["latency_ms"] = [old, new]
    if soak.max_latency_ratio and old and new and new > soak.max_latency_ratio * old:
        problems.append(f"latency {new:.1f} ms is {new / old:.2f}x the {old:.1f} ms before "
                        f"(--max-latency-ratio {soak.max_latency_ratio:g})")
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


STARTUP_S = 15.0  # a restarted camera (model load, camera start) may take this long to serve status.json


def _serving(t: ssh.Target, o: ssh.Options, first: dict[str, Any]) -> dict[str, Any]:
    """The first probe whose status.json answered (the soak starts there), waiting up to STARTUP_S."""
    deadline = time.monotonic() + STARTUP_S
    while first["status"] is None and first["state"] == "active" and time.monotonic() < deadline:
        time.sleep(1.0)
        first = probe(t, o)
    return first


def _frame(p: dict[str, Any]) -> int:
    f = (p.get("status") or {}).get("frame")
    return -1 if f is None else int(f)
