"""Fleet views: one status table for every device of an inventory, and ``edgecls bench BUNDLE
--hosts INV``, which benchmarks a bundle on every device with the device's own runtime and
merges the results the way ``edgecls bench compare`` does."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from edge_runtime.cli.args import positive_int
from edge_runtime.errors import EdgeclsError

from . import health, run, ssh
from .inventory import Host

# --- status ------------------------------------------------------------------------------------


def status_rows(hosts: list[Host], opts: ssh.Options, parallel: int = 8) -> list[dict[str, Any]]:
    """One probe per host (health.probe), in parallel; an unreachable host gets its error."""
    def one(h: Host) -> dict[str, Any]:
        try:
            p = health.probe(h.target, h.options(opts))
        except (health.ProbeError, OSError, subprocess.SubprocessError) as e:
            return {"host": h.name, "target": str(h.target), "error": str(e)}
        return {"host": h.name, "target": str(h.target), "error": None, **p}

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(one, hosts))


def status_table(rows: list[dict[str, Any]], now: float | None = None) -> str:
    """host, live version, bundle, since, kept versions, service, FPS, drift (the camera's, from its
    status.json: ``-`` without --serve or without a reference in the bundle)."""
    now = time.time() if now is None else now
    out = [("host", "live version", "bundle", "since", "kept", "service", "FPS", "drift")]
    for r in rows:
        if r["error"]:
            out.append((r["host"], "UNREACHABLE", "-", "-", "-", "-", "-", r["error"]))
            continue
        status = r.get("status") or {}
        fps = status.get("fps")
        service = f"{r['state']}" if r["service"] else "-"
        out.append((r["host"], r["current"] or "(nothing)", r["name"] or "-", _ago(r["since"], now),
                    str(len(r["versions"])), service, f"{fps:.1f}" if isinstance(fps, (int, float)) else "-",
                    drift_words(status.get("drift"))))
    w = [max(len(x[i]) for x in out) for i in range(7)]
    return "\n".join("  ".join(f"{c:<{w[i]}}" for i, c in enumerate(x[:7])) + "  " + x[7] for x in out)


def drift_words(drift: Any) -> str:
    """A status.json's drift in a table cell: the score, ``warming up`` before it has frames, else ``-``."""
    if not isinstance(drift, dict):
        return "-"
    score = drift.get("score")
    return f"{score:.2f}" if isinstance(score, (int, float)) else "warming up"


def _ago(t: float | None, now: float) -> str:
    if t is None:
        return "-"
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))
    s = max(0, int(now - t))
    ago = f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h" if s < 172800 else f"{s // 86400}d"
    return f"{stamp} ({ago} ago)"


# --- benchmark ---------------------------------------------------------------------------------

# $1 edgecls command on the device, $2 bundle name, then bench's options; stdin = the bundle as tar
BENCH = r'''
set -eu
exe=$1; name=$2; shift 2
t=$(mktemp -d)
trap 'rm -rf -- "$t"' EXIT
mkdir -- "$t/$name"
tar -x -f - -C "$t/$name"
rm -f -- "$t/$name/SHA256SUMS"
sh -c "$exe"' "$@"' edgecls bench "$t/$name" --save "$t/result.json" "$@" >&2
cat -- "$t/result.json"
'''


def bench_one(h: Host, opts: ssh.Options, packed: tuple[bytes, str], name: str, bench_args: list[str],
              remote_edgecls: str | None) -> dict[str, Any]:
    """Run ``edgecls bench`` on one device with its own runtime; its result, the device named
    by its inventory name."""
    o = h.options(opts)
    exe = run._remote_edgecls(h.target, o, remote_edgecls)
    if not exe:
        raise EdgeclsError(f"{h.name}: no edgecls runtime on the device (DIR/venv or PATH); install it with "
                           "edgecls deploy --install-runtime")
    cmd = exe if remote_edgecls else shlex.quote(exe)
    p = ssh.run(h.target, o, ["sh", "-c", BENCH, "edgecls-bench", cmd, name, *bench_args], stdin=packed[0],
                timeout=3600)
    if p.returncode != 0:
        err = [l for l in p.stderr.decode(errors="replace").splitlines() if l.strip()]
        raise EdgeclsError(f"{h.name}: edgecls bench failed on the device: {err[-1] if err else p.returncode}")
    result = json.loads(p.stdout.decode())
    m = result.setdefault("machine", {})
    m["board"] = f"{h.name}: {m['board']}" if m.get("board") else h.name  # rows named by inventory host
    return result


def bench_fleet(hosts: list[Host], opts: ssh.Options, bundle: str, bench_args: list[str],
                remote_edgecls: str | None, parallel: int = 1,
                log: Callable[[str], None] = lambda m: None) -> tuple[list[dict[str, Any]], list[str]]:
    """Every host's result (one host at a time by default: a benchmark should not share the
    network or the workstation with another) and the errors of the hosts that could not run it."""
    packed = run.pack(Path(bundle))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(bundle).name) or "bundle"
    results, errors = [], []

    def one(h: Host) -> tuple[dict[str, Any] | None, str | None]:
        log(f"{h.name}: benchmarking {name}")
        try:
            return bench_one(h, opts, packed, name, bench_args, remote_edgecls), None
        except (EdgeclsError, OSError, subprocess.SubprocessError, ValueError) as e:
            return None, str(e)

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for r, e in pool.map(one, hosts):
            if r is not None:
                results.append(r)
            if e is not None:
                errors.append(e)
    return results, errors


def bench_args(a: argparse.Namespace) -> list[str]:
    """The options of ``edgecls bench`` that the device's run gets too."""
    out = ["--backend", ",".join(a.backend)]
    if a.threads:
        out += ["--threads", ",".join(map(str, a.threads))]
    if a.runs is not None:
        out += ["--runs", str(a.runs)]
    if a.seconds is not None:
        out += ["--seconds", str(a.seconds)]
    out += ["--warmup", str(a.warmup)]
    if a.in_process:
        out.append("--in-process")
    return out


def extend_bench(sub: argparse._SubParsersAction) -> None:
    """Give the runtime's ``edgecls bench`` a ``--hosts INV`` option (edge_runtime never imports
    deploy: this runs from deploy's ``edgecls.commands`` entry point, after bench is registered)."""
    p = sub.choices.get("bench")
    if p is None or any("--hosts" in a.option_strings for a in p._actions):
        return
    g = p.add_argument_group("on a fleet (edgecls deploy's inventories)")
    g.add_argument("--hosts", metavar="INV", help="run the benchmark on every device of INV (a hosts file or an "
                   "Ansible inventory) with the device's own edgecls, and compare them in one table")
    g.add_argument("--group", metavar="NAME", help="only the hosts of this inventory group")
    g.add_argument("--identity", metavar="KEY", help="SSH private key")
    g.add_argument("--known-hosts", metavar="FILE", help="known_hosts file")
    g.add_argument("--port", type=positive_int, default=None, help="SSH port for hosts that do not name one")
    g.add_argument("--remote-edgecls", metavar="CMD", help="the edgecls command on the devices")
    g.add_argument("--parallel", type=positive_int, default=1, metavar="N", help="devices benchmarked at once (default 1)")
    local = p.get_default("func")

    def func(a: argparse.Namespace) -> int:
        if not a.hosts:
            return local(a)
        return cmd_bench_hosts(a)

    p.set_defaults(func=func)


def cmd_bench_hosts(a: argparse.Namespace) -> int:
    import sys

    from edge_runtime.cli.bench import bench_outputs

    from . import inventory

    if len(a.models) != 1 or a.models[0] == "compare":
        raise ValueError("usage: edgecls bench BUNDLE --hosts INV (one bundle)")
    hosts = inventory.load(a.hosts, a.group, a.port)
    opts = ssh.Options(identity=a.identity, known_hosts=a.known_hosts)
    results, errors = bench_fleet(hosts, opts, a.models[0], bench_args(a), a.remote_edgecls, a.parallel,
                                  log=lambda m: print(m, file=sys.stderr, flush=True))
    for e in errors:
        print(f"edgecls: warning: {e}", file=sys.stderr)
    if not results:
        raise EdgeclsError(f"{a.hosts}: no device could run the benchmark")
    if a.save:
        Path(a.save).write_text(json.dumps(results, indent=2) + "\n")
    bench_outputs(a, results)
    return 1 if errors else 0
