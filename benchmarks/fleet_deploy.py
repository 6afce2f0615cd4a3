"""Deploy time to ten loopback devices: `edgecls deploy BUNDLE --hosts INV --parallel 8` against
`--parallel 1`. Ten real OpenSSH servers on 127.0.0.1 ports (tests/sshd.py), each device running
this checkout's edgecls for the device-side verify; a Coral MobileNet bundle (~0.5 MB).

    .venv/bin/python benchmarks/fleet_deploy.py   # writes benchmarks/results/fleet_deploy.{json,md}
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import sshd  # noqa: E402
from conftest import make_coral_bundle  # noqa: E402

DEVICES = 10
REPEATS = 3


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        bundle = make_coral_bundle(t / "bundle")
        servers = [sshd.start(t / f"sshd{i}") for i in range(DEVICES)]
        try:
            known = t / "known_hosts"
            known.write_text("".join(s.known_hosts.read_text() for s in servers))
            rows = []
            for verify in (True, False):
                for parallel in (1, 8):
                    times = [_run(t, servers, known, bundle, parallel, verify, r) for r in range(REPEATS)]
                    rows.append({"parallel": parallel, "verify": verify, "seconds": times,
                                 "median_s": sorted(times)[len(times) // 2]})
                    print(rows[-1], file=sys.stderr)
        finally:
            for s in servers:
                s.stop()
    size = sum(f.stat().st_size for f in Path(bundle).rglob("*") if f.is_file()) if Path(bundle).exists() else None
    out = {"devices": DEVICES, "repeats": REPEATS, "cpu": platform.processor() or platform.machine(),
           "cores": os.cpu_count(), "rows": rows, "bundle_bytes": size}
    res = ROOT / "benchmarks" / "results"
    (res / "fleet_deploy.json").write_text(json.dumps(out, indent=2) + "\n")
    (res / "fleet_deploy.md").write_text(_markdown(out))
    print(_markdown(out))


def _run(t: Path, servers, known: Path, bundle: Path, parallel: int, verify: bool, rep: int) -> float:
    inv = t / f"pis-{parallel}-{verify}-{rep}.ini"
    lines = ["[bench]"]
    for i, s in enumerate(servers):
        d = t / f"dev-{parallel}-{verify}-{rep}-{i}"
        exe = d / "venv" / "bin" / "edgecls"
        exe.parent.mkdir(parents=True)
        exe.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m edge_runtime.cli "$@"\n')
        exe.chmod(0o755)
        lines.append(f"pi{i} ansible_host=127.0.0.1 ansible_port={s.port} ansible_user={s.user} "
                     f"ansible_ssh_private_key_file={s.key} edgecls_dir={d}")
    inv.write_text("\n".join(lines) + "\n")
    cmd = [sys.executable, "-m", "edge_runtime.cli", "deploy", str(bundle), "--hosts", str(inv), "--known-hosts",
           str(known), "--parallel", str(parallel), "--json"] + ([] if verify else ["--no-verify"])
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(p.stdout + p.stderr)
    return round(took, 2)


def _markdown(r: dict) -> str:
    lines = [f"# Deploy time to {r['devices']} loopback devices", "",
             f"Ten OpenSSH servers on 127.0.0.1 (one per device), {r['cores']}-core {r['cpu']} workstation that is "
             f"also every device; median of {r['repeats']} runs of `edgecls deploy BUNDLE --hosts INV`, a Coral "
             "MobileNet v1 0.25 bundle. With verify, each device reruns the golden photos with its own edgecls "
             "(a Python start and a model load: CPU work that here shares the same cores).", "",
             "| device-side verify | --parallel 1 (s) | --parallel 8 (s) | speed-up |", "| --- | --- | --- | --- |"]
    for verify in (True, False):
        one = next(x for x in r["rows"] if x["verify"] == verify and x["parallel"] == 1)["median_s"]
        eight = next(x for x in r["rows"] if x["verify"] == verify and x["parallel"] == 8)["median_s"]
        lines.append(f"| {'yes' if verify else 'no (--no-verify)'} | {one:.2f} | {eight:.2f} | {one / eight:.1f}x |")
    lines += ["", "On real Pis the devices do their verify on their own CPUs and the upload waits on the network, "
              "so --parallel gains more there than on one 2-core machine that plays all ten."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
