"""The sign-language run converted for the Raspberry Pi AI Camera (Sony IMX500), timed: `edgecls
convert RUN --out BUNDLE --imx500` with a ready converter environment, then the quantized
network's top-1 on the test photos beside float, the chip's memory report and each stage's time.

usage: python benchmarks/imx500.py RUN [--work runs/bench-imx500] [--out benchmarks/results]
       (RUN: a finished `edgecls train` run, e.g. benchmarks/sign_language.py's; the converter
       environment is $EDGECLS_IMX500_ENV or the user's cache, built on first use)
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edge_runtime.cli.doctor import cpu_model
from edge_runtime.model.interpreter import default_threads

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-imx500")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    bundle = a.work / "bundle"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edge_runtime.cli", "convert", str(a.run), "--out", str(bundle), "--imx500"],
                   check=True, cwd=ROOT)
    wall = time.perf_counter() - t
    meta = json.loads((bundle / "edgecls.json").read_text())
    sec, cpu = meta["imx500"], meta["metrics"]
    cfg = json.loads((a.run / "config.json").read_text())
    m = sec["metrics"]
    result = {"machine": f"{cpu_model()}, {default_threads()} cores ({platform.machine()})",
              "model": f"{cfg['arch']} {cfg['alpha']} at {cfg['size']} px", "convert_wall_s": round(wall, 1),
              "imx500_seconds": sec["convert_seconds"], "stages_s": sec["stages_seconds"], "metrics": m,
              "cpu_int8_top1": cpu["int8_top1"], "keras_top1": cpu["keras_top1"], "memory": sec["memory"],
              "packer_bytes": meta["files"]["imx500/packerOut.zip"]["size"], "tools": sec["tools"]}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "imx500.json").write_text(json.dumps(result, indent=2) + "\n")
    st = sec["stages_seconds"]
    drop = (m["float_top1"] - m["imx500_top1"]) * 100
    md = f"""# Sign-language digits on the Raspberry Pi AI Camera (IMX500)

Machine: {result['machine']}. Produced by `python benchmarks/imx500.py RUN` on the run of
`benchmarks/sign_language.py` ({result['model']}), with {', '.join(f'{k} {v}' for k, v in sec['tools'].items())}.

    edgecls convert runs/sign --out bundles/sign --imx500

| | value |
| --- | --- |
| test photos | {m['test_images']} |
| Keras 3 top-1 (training's TensorFlow) | {result['keras_top1']:.2%} |
| float top-1, rebuilt in Keras 2 for Sony's tools | {m['float_top1']:.2%} |
| float top-1, fed as the sensor feeds it (int8 = pixel - 128) | {m['chip_input_float_top1']:.2%} |
| **IMX500 quantized top-1** (MCT 2.5.1, IMX500 TPC v1) | **{m['imx500_top1']:.2%}** ({drop:+.2f} points vs float; the goal: within 2) |
| IMX500 agrees with float | {m['imx500_float_agreement']:.2%} |
| CPU int8 TFLite top-1 (same bundle) | {result['cpu_int8_top1']:.2%} |
| on-chip memory (imxconv-tf's report) | {sec['memory']['Memory Usage']} of {sec['memory']['Total Memory Available On Chip']} ({sec['memory']['Memory Utilization']}), fits: {sec['memory']['Fit In Chip']} |
| packerOut.zip | {result['packer_bytes'] / 1024:.0f} KiB |
| IMX500 part of the conversion | {sec['convert_seconds']:.0f} s: rebuild {st['rebuild']:.0f} s, MCT quantization {st['quantize']:.0f} s, evaluation {st['evaluate']:.0f} s, imxconv-tf {st['imxconv']:.0f} s |
| whole `convert --imx500` (CPU bundle + IMX500) | {wall:.0f} s |

The quantized top-1 is that of MCT's quantized Keras model (fake-quantized: the same integer
grid as the chip) on the test photos, fed what the sensor's input stage feeds the network. It was
not measured on an AI Camera: no device here. The converter environment was ready (built once:
about 45 s and 2.3 GB from PyPI, not counted).
"""
    (a.out / "imx500.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
