"""Where `edgecls demo` spends its time: runs the demo as a user would (one process each) N
times and writes a table of its stages (wall median/min/max, CPU median) to
benchmarks/results/demo_time.md (and .json), naming the machine and how busy it was.

Wall seconds say how long a user waits; on a machine shared with other jobs they say mostly how
busy it was. CPU seconds (every thread of the demo's process) say what a stage costs whatever
the load: on an idle machine the wall time of a stage is about its CPU time divided by the
cores it keeps busy.

With ``--before REV`` the demo of that git revision runs too, each run of it taking turns with
one of this tree (the order alternating), so that the ratio of the two medians is measured in one
sitting on one machine, whatever its speed that day.

usage: python benchmarks/demo_time.py [--runs 3] [--before REV] [--work /tmp/demo-time]
       [--out benchmarks/results] [-- DEMO_ARGS...]   (e.g. -- --seed 0)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from revisions import tree_at

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_once(i: int, work: Path, demo_args: list[str], tree: Path = ROOT, label: str = "this tree") -> dict:
    out = work / f"run-{i}-{'this' if tree == ROOT else 'before'}"
    load = os.getloadavg()[0]
    # that tree's modules before the editable install's
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])))
    t, c = time.perf_counter(), os.times()
    p = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "demo", "--out", str(out), *demo_args],
                       capture_output=True, text=True, cwd=tree, timeout=3600, env=env)
    wall, c2 = time.perf_counter() - t, os.times()
    row: dict = {"run": i, "tree": label, "exit": p.returncode, "wall": round(wall, 1), "load_before": round(load, 2),
                 "load_after": round(os.getloadavg()[0], 2),
                 "cpu": round(c2.children_user - c.children_user + c2.children_system - c.children_system, 1)}
    if not (out / "summary.json").exists():
        row["error"] = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return row
    try:
        s = json.loads((out / "summary.json").read_text())
        row.update({k: s[k] for k in ("int8_test_top1", "float_test_top1", "verify_ok", "gate", "stages", "epochs")})
        history = json.loads((out / "run" / "history.json").read_text())
        row["epoch_seconds"] = [h["seconds"] for h in history]
    except (OSError, ValueError, KeyError) as e:  # an older demo that reports less: a failed row, not a crash
        for k in ("stages", "epoch_seconds"):
            row.pop(k, None)
        row["error"] = f"its summary lacks {e}"
    return row


def _cells(values: list[float]) -> str:
    if not values:
        return " | | "
    return f"{statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f}"


def table(rows: list[dict]) -> list[str]:
    ok = [r for r in rows if "stages" in r]
    names = list(dict.fromkeys(k for r in ok for k in r["stages"]))
    lines = ["| stage | wall median s | min | max | CPU median s |", "| --- | --- | --- | --- | --- |"]
    for name in names:
        wall = [r["stages"][name]["wall"] for r in ok if name in r["stages"]]
        cpu = [r["stages"][name]["cpu"] for r in ok if name in r["stages"]]
        lines.append(f"| {name} | {_cells(wall)} | {statistics.median(cpu):.1f} |")
        if name.startswith("train: phase 2"):
            first = [r["epoch_seconds"][0] for r in ok if r["epoch_seconds"]]
            rest = [statistics.median(r["epoch_seconds"][1:]) for r in ok if len(r["epoch_seconds"]) > 1]
            lines.append(f"| &nbsp;&nbsp;epoch 1 (traces the graphs) | {_cells(first)} | |")
            lines.append(f"| &nbsp;&nbsp;each later epoch (median of a run) | {_cells(rest)} | |")
    inside = [sum(v["wall"] for v in r["stages"].values()) for r in ok]
    start = [r["wall"] - w for r, w in zip(ok, inside)]
    lines.append(f"| process start, imports, summary | {_cells(start)} | |")
    lines.append(f"| **total (the user's wait)** | {_cells([r['wall'] for r in ok])} | "
                 f"{statistics.median([r['cpu'] for r in ok]):.1f} |")
    return lines


def write(rows: list[dict], demo_args: list[str], out: Path) -> None:
    trees = list(dict.fromkeys(r.get("tree", "this tree") for r in rows))
    meta = {"cpu": cpu_model(), "cores": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "command": " ".join(["edgecls demo", *demo_args])}
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_time.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=2) + "\n")
    md = [f"# Where `{meta['command']}` spends its time", "",
          f"{meta['cpu']}, {meta['cores']} cores, {meta['machine']}, Python {meta['python']}, no GPU. "
          f"Produced by `python benchmarks/demo_time.py`: {len(rows)} run(s) of `{meta['command']}`, each in its "
          "own process; wall seconds (what a user waits) and CPU seconds (every thread of the demo's process: what a "
          "stage costs whatever else runs on the machine).", "",
          "| run | tree | exit | wall s | CPU s | load before | load after | epochs | int8 top-1 | verified |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        md.append(f"| {r['run']} | {r.get('tree', 'this tree')} | {r['exit']} | {r['wall']:.0f} | {r['cpu']:.0f} | {r['load_before']} | "
                  f"{r['load_after']} | {r.get('epochs', '')} | "
                  + (f"{r['int8_test_top1']:.1%} | {'yes' if r['verify_ok'] else 'NO'} |" if "stages" in r
                     else f"{r.get('error', '')} | |"))
    md += ["", "load: the machine's 1-minute load average (2 cores: above 2, other jobs were taking turns with the "
               "demo, and its wall times stretch accordingly).", ""]
    medians = {}
    for tree in trees:
        ok = [r for r in rows if "stages" in r and r.get("tree", "this tree") == tree]
        if ok:
            medians[tree] = statistics.median(r["wall"] for r in ok)
            md += [f"## {tree}", ""] + table(ok) + [""]
    if len(medians) == 2:
        (a, ta), (b, tb) = medians.items()
        md += [f"**{a} / {b}, median wall: {ta:.1f} / {tb:.1f} s = {ta / tb:.2f}** (measured in one sitting, "
               "the runs taking turns)."]
    (out / "demo_time.md").write_text("\n".join(md) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/demo-time"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--before", default=None, help="also run the demo of this git revision, taking turns")
    ap.add_argument("demo_args", nargs="*", help="passed to edgecls demo (after --)")
    a = ap.parse_args()
    trees = [(ROOT, "this tree")]
    if a.before:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", a.before], capture_output=True,
                             text=True, check=True).stdout.strip()
        trees.append((tree_at(a.before, a.work / "before"), f"before ({rev})"))
    rows: list[dict] = []
    for i in range(1, a.runs + 1):
        for tree, label in (trees if i % 2 else trees[::-1]):
            rows.append(run_once(i, a.work, a.demo_args, tree, label))
            print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("stages", "epoch_seconds")}), flush=True)
            write(rows, a.demo_args, a.out)  # after every run: an interrupted benchmark keeps what it measured
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
