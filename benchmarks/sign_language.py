"""The training issue's acceptance run, as a user types it, timed: train MobileNet V1 0.25 at
128 px on the sign-language photos with the shared ImageNet weights (offline), convert the run
to an int8 bundle, and record top-1 of Keras, float and int8 on the test split.

usage: python benchmarks/sign_language.py [--work runs/bench-sign] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edge_runtime.system import machine

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-sign")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    run, bundle = a.work / "run", a.work / "bundle"
    train_cmd = ["edgecls", "train", "../shared/assets/datasets/sign_language_digits", "--out", "runs/sign",
                 "--arch", "mobilenet_v1", "--alpha", "0.25", "--size", "128", "--weights",
                 "../shared/assets/keras_weights/mobilenet_2_5_224_tf_no_top.h5"]
    args = [str(ASSETS / "datasets" / "sign_language_digits"), "--out", str(run)] + train_cmd[5:-1] + \
        [str(ASSETS / "keras_weights" / "mobilenet_2_5_224_tf_no_top.h5")]
    edgecls = [sys.executable, "-m", "edge_runtime.cli"]
    t = time.perf_counter()
    subprocess.run(edgecls + ["train"] + args, check=True, cwd=ROOT)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run(edgecls + ["convert", str(run), "--out", str(bundle)], check=True, cwd=ROOT)
    convert_s = time.perf_counter() - t
    m = json.loads((run / "metrics.json").read_text())
    b = json.loads((bundle / "edgecls.json").read_text())["metrics"]
    r = {"train_command": " ".join(train_cmd), "convert_command": "edgecls convert runs/sign --out bundles/sign",
         "train_seconds": round(train_s, 1), "convert_seconds": round(convert_s, 1),
         "epochs": m["epochs"], "test_images": m["test"]["count"], "keras_test_top1": m["test"]["top1"],
         "val_top1": m.get("val", {}).get("top1"), "float_top1": b["float_top1"], "int8_top1": b["int8_top1"],
         "int8_float_agreement": b["int8_float_agreement"], "int8_bytes": b["size_bytes"]["int8"],
         "float_bytes": b["size_bytes"]["float"], "int8_size_ratio": b["int8_size_ratio"],
         "machine": {**machine.summary()}}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "sign_language.json").write_text(json.dumps(r, indent=2) + "\n")
    md = ["# Sign-language digits: train and convert, offline", "",
          f"Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores ({r['machine']['arch']}). "
          "Produced by `python benchmarks/sign_language.py`.", "",
          f"    {r['train_command']}", f"    {r['convert_command']}", "",
          "| | value |", "| --- | --- |",
          f"| training wall time | {r['train_seconds']:.0f} s ({r['epochs']['1']} head + {r['epochs']['2']} fine-tune epochs) |",
          f"| test photos (held out by path hash) | {r['test_images']} |",
          f"| Keras top-1 | {r['keras_test_top1']:.2%} |",
          f"| float TFLite top-1 | {r['float_top1']:.2%} |",
          f"| int8 TFLite top-1 | {r['int8_top1']:.2%} |",
          f"| int8 agrees with float | {r['int8_float_agreement']:.2%} |",
          f"| model size int8 / float | {r['int8_bytes'] / 1024:.0f} KiB / {r['float_bytes'] / 1024:.0f} KiB "
          f"({r['int8_size_ratio']:.0%}) |",
          f"| conversion wall time | {r['convert_seconds']:.0f} s |", ""]
    (a.out / "sign_language.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
