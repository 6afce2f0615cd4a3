"""Per-frame cost of `Classifier.classify` on a 640x480 RGB frame (preprocess + invoke +
postprocess) against bare `invoke()`, for Coral's mobilenet_v2_1.0_224_quant at 1 and 2
threads, measured in one run. Goal on x86: at most 1.05x at 1 thread and 1.10x at 2.

usage: python benchmarks/runtime_overhead.py [--rounds 20] [--per-round 25] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

from edge_runtime import Classifier, __version__
from edge_runtime.system import machine

ROOT = Path(__file__).resolve().parents[1]
CORAL = ROOT.parent / "shared" / "assets" / "coral"
GOALS = {1: 1.05, 2: 1.10}


def measure(threads: int, frame: np.ndarray, rounds: int, per_round: int) -> dict:
    clf = Classifier(CORAL / "mobilenet_v2_1.0_224_quant.tflite", labels=CORAL / "imagenet_labels.txt",
                     backend="cpu", threads=threads)
    clf.classify(frame)  # sets an input; warms caches and the resize plan
    for _ in range(20):
        clf.invoke()
    bare, full, stages = [], [], {"preprocess": [], "invoke": [], "postprocess": []}
    # Interleave short rounds of each so drift on a shared machine hits both alike.
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(per_round):
            clf.invoke()
        bare.append((time.perf_counter() - t) / per_round)
        t = time.perf_counter()
        for _ in range(per_round):
            r = clf.classify(frame)
        full.append((time.perf_counter() - t) / per_round)
        for k in stages:
            stages[k].append(r.latency_ms[k])
    b, f = float(np.median(bare)) * 1e3, float(np.median(full)) * 1e3
    return {"threads": threads, "bare_invoke_ms": b, "classify_ms": f, "ratio": f / b, "goal": GOALS[threads],
            "stages_ms_last_frame_median": {k: float(np.median(v)) for k, v in stages.items()},
            "rounds": rounds, "per_round": per_round, "input_conversion": clf.to_input.kind,
            "resize": clf.resize_method, "interpreter": f"{clf.interpreter} {clf.package.version}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--per-round", type=int, default=25)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()
    frame = np.asarray(Image.open(CORAL / "parrot.jpg").convert("RGB").resize((640, 480)))
    rows = [measure(t, frame, a.rounds, a.per_round) for t in (1, 2)]
    mach = {**machine.summary(),
               "python": platform.python_version(), "numpy": np.__version__,
               "edgecls": __version__, "date": time.strftime("%Y-%m-%d")}
    lines = ["# Runtime overhead per frame (640x480 RGB frame -> mobilenet_v2_1.0_224_quant)", "",
             f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['arch']}, governor {mach['governor']}, "
             f"Python {mach['python']}, numpy {mach['numpy']}, {rows[0]['interpreter']}, {mach['date']}.", "",
             "| threads | bare invoke (ms) | classify (ms) | preprocess | invoke | postprocess | ratio | goal |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        s = r["stages_ms_last_frame_median"]
        lines.append(f"| {r['threads']} | {r['bare_invoke_ms']:.2f} | {r['classify_ms']:.2f} | {s['preprocess']:.2f} | "
                     f"{s['invoke']:.2f} | {s['postprocess']:.3f} | {r['ratio']:.3f}x | {r['goal']:.2f}x "
                     f"{'met' if r['ratio'] <= r['goal'] else 'MISSED'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "runtime_overhead.json").write_text(json.dumps({"machine": mach, "rows": rows}, indent=2) + "\n")
    (a.out / "runtime_overhead.md").write_text(text)


if __name__ == "__main__":
    main()
