"""Float vs full-int8 latency on the CPU backend (XNNPACK), as a ratio measured in one run, with
model sizes: the sign-language bundle (MobileNet V1 0.25, 128 px) and a MobileNetV2 1.0 at
224 px converted by edgecls (random weights: they do not change the latency; calibrated on
real photos). Goal for the latter on x86: at least 2.2x.

usage: python benchmarks/int8_vs_float.py [--bundle runs/bench-sign/bundle] [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_runtime import Classifier, __version__
from edge_runtime.model.interpreter import default_threads
from edge_runtime.model.preprocess import Normalization
from edge_runtime.system import machine

ROOT = Path(__file__).resolve().parents[1]
SIGN = ROOT.parent / "shared" / "assets" / "datasets" / "sign_language_digits"


def latency(paths: dict[str, Path], threads: int, rounds: int, per_round: int) -> dict[str, float]:
    """Median ms per invoke for each model, rounds interleaved so drift hits all alike."""
    clfs = {k: Classifier(p, backend="cpu", threads=threads, normalization=Normalization(0.0, 1.0),
                          output="probabilities") for k, p in paths.items()}
    for c in clfs.values():
        c.infer(c.prepare(np.full((c.height, c.width, 3), 128, np.uint8)))
        for _ in range(10):
            c.invoke()
    times: dict[str, list[float]] = {k: [] for k in clfs}
    for _ in range(rounds):
        for k, c in clfs.items():
            t = time.perf_counter()
            for _ in range(per_round):
                c.invoke()
            times[k].append((time.perf_counter() - t) / per_round)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


def mobilenet_v2(work: Path) -> dict[str, Path]:
    from convert import quantize
    from train import data, model

    built = model.build("mobilenet_v2", 1000, 224, 1.0, None)
    ds = data.scan(SIGN)
    calib = data.decode(data.stratified(ds.split("train"), 100), 224, 224)
    (work / "v2_float.tflite").write_bytes(quantize.to_float(built.model))
    (work / "v2_int8.tflite").write_bytes(quantize.to_int8(built.model, calib))
    return {"float": work / "v2_float.tflite", "int8": work / "v2_int8.tflite"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=ROOT / "runs" / "bench-sign" / "bundle")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = {"sign-language MobileNet V1 0.25 128 px (bundle)":
                  {"float": a.bundle / "model_float.tflite", "int8": a.bundle / "model.tflite"},
                  "MobileNetV2 1.0 224 px (converted by edgecls)": mobilenet_v2(Path(tmp))}
        rows = []
        for name, paths in models.items():
            sizes = {k: p.stat().st_size for k, p in paths.items()}
            for threads in sorted({1, default_threads()}):
                per_round = 200 if "0.25" in name else 20
                ms = latency(paths, threads, a.rounds, per_round)
                rows.append({"model": name, "threads": threads, "float_ms": round(ms["float"], 3),
                             "int8_ms": round(ms["int8"], 3), "speedup": round(ms["float"] / ms["int8"], 2),
                             "float_bytes": sizes["float"], "int8_bytes": sizes["int8"],
                             "size_ratio": round(sizes["int8"] / sizes["float"], 3)})
    c = Classifier(a.bundle, backend="cpu")
    r = {"rows": rows, "goal": "MobileNetV2 1.0 224: int8 at least 2.2x faster than float on x86",
         "machine": {**machine.summary(),
                     "interpreter": f"{c.interpreter} {c.package.version}",
                     "edgecls": __version__}}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "int8_vs_float.json").write_text(json.dumps(r, indent=2) + "\n")
    m = r["machine"]
    md = ["# Float vs int8 on the CPU backend", "",
          f"{m['cpu']}, {m['cores']} cores ({m['arch']}), {m['interpreter']}, XNNPACK. Median of {a.rounds} "
          "interleaved rounds of bare `invoke()`. Produced by `python benchmarks/int8_vs_float.py`.", "",
          "| model | threads | float ms | int8 ms | int8 speed-up | float size | int8 size (ratio) |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    md += [f"| {x['model']} | {x['threads']} | {x['float_ms']:.3f} | {x['int8_ms']:.3f} | **{x['speedup']:.2f}x** | "
           f"{x['float_bytes'] / 1024:.0f} KiB | {x['int8_bytes'] / 1024:.0f} KiB ({x['size_ratio']:.0%}) |" for x in rows]
    md += ["", f"Goal: {r['goal']}.", ""]
    (a.out / "int8_vs_float.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
