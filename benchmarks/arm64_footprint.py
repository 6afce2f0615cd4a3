"""The runtime's install footprint on arm64 and its import time under emulation: the site
directory a Pi installs (edgecls from this checkout's wheel + ai-edge-litert, numpy, pillow, or
tflite-runtime 2.14 + numpy<2), its largest packages, and the time to start Python and import
edge_runtime on emulated Raspberry Pi OS (qemu-user, Cortex-A72 / A76). Emulated times compare
setups with each other; they say nothing about a real Pi's speed.

usage: python benchmarks/arm64_footprint.py [--out benchmarks/results]   (builds the userland of the arm64 tier)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from arm64 import INTERPRETERS, build, du  # noqa: E402


def timed(arm, code: str, pi: int, interpreter: str, n: int = 5) -> float:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        p = arm.run(code, module="", python_args=("-c",), pi=pi, interpreter=interpreter)
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-2000:])
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        arm = build(ROOT / ".cache", Path(tmp))
        r: dict = {"edgecls_bytes": du(arm.edgecls), "setups": {}}
        for interp in INTERPRETERS:
            site = arm.site(interp)
            pkgs = sorted(((du(p), p.name) for p in site.iterdir() if p.is_dir() and not p.name.endswith(".dist-info")),
                          reverse=True)
            tf = [n for _, n in pkgs if n.lower().startswith(("tensorflow", "keras"))]
            row = {"site_bytes": du(site) + r["edgecls_bytes"], "largest": [[n, s] for s, n in pkgs[:5]],
                   "tensorflow_present": bool(tf)}
            for pi in (4, 5):
                start = timed(arm, "pass", pi, interp)
                imp = timed(arm, "import edge_runtime", pi, interp)
                full = timed(arm, "import edge_runtime.model.interpreter as i; i.resolve_package()", pi, interp)
                row[f"pi{pi}"] = {"python_start_s": round(start, 3), "import_edge_runtime_s": round(imp - start, 3),
                                  "import_plus_interpreter_s": round(full - start, 3)}
            r["setups"][interp] = row
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "arm64_footprint.json").write_text(json.dumps(r, indent=2) + "\n")
    names = {"litert": "ai-edge-litert + numpy 2 + pillow", "tflite": "tflite-runtime 2.14 + numpy<2 + pillow"}
    md = ["# The runtime on arm64: install footprint and import time (emulated)", "",
          "Debian 12 arm64 userland with Python 3.11 under qemu-user 7.2 on a 2-core x86 VM (the arm64 test tier's). "
          "Times are medians of 5 runs of `python3.11 -c ...` minus Python's own start; emulation makes them "
          "slower than a Pi and only comparable with each other. Produced by `python benchmarks/arm64_footprint.py`.", "",
          f"edgecls itself (the wheel built from this checkout): {r['edgecls_bytes'] / 1024:.0f} KiB.", "",
          "| setup | installed size | largest packages | TensorFlow | import edge_runtime (Pi 4 / Pi 5) | + resolve the interpreter (Pi 4 / Pi 5) |",
          "| --- | --- | --- | --- | --- | --- |"]
    for interp, row in r["setups"].items():
        largest = ", ".join(f"{n} {s / 2**20:.0f} MiB" for n, s in row["largest"][:3])
        md.append(f"| {names[interp]} | {row['site_bytes'] / 2**20:.0f} MiB | {largest} | "
                  f"{'present' if row['tensorflow_present'] else 'absent'} | "
                  f"{row['pi4']['import_edge_runtime_s']:.2f} s / {row['pi5']['import_edge_runtime_s']:.2f} s | "
                  f"{row['pi4']['import_plus_interpreter_s']:.2f} s / {row['pi5']['import_plus_interpreter_s']:.2f} s |")
    md.append("")
    (a.out / "arm64_footprint.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
