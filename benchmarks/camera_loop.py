"""Loop throughput of `edgecls camera` on a 640x480 video file against 1 / invoke latency, for
Coral's mobilenet_v2_1.0_224_quant at 1 thread, in one run. Goal: at least 0.9 (decoding and
resizing overlap the inference in the capture thread instead of adding to it).

usage: python benchmarks/camera_loop.py [--frames 300] [--rounds 3] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from edge_runtime import Classifier, __version__
from edge_runtime.live import loop as camera
from edge_runtime.live import sources
from edge_runtime.system import machine

ROOT = Path(__file__).resolve().parents[1]
CORAL = ROOT.parent / "shared" / "assets" / "coral"


def make_video(path: Path, frames: int) -> None:
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    pics = [np.asarray(Image.open(CORAL / n).convert("RGB").resize((640, 480)))[:, :, ::-1].copy()
            for n in ("cat.bmp", "parrot.jpg", "bird.bmp")]
    for i in range(frames):
        w.write(pics[(i // 10) % 3])
    w.release()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "photos.avi"
        make_video(video, a.frames)
        clf = Classifier(CORAL / "mobilenet_v2_1.0_224_quant.tflite", labels=CORAL / "imagenet_labels.txt",
                         backend="cpu", threads=1)
        x = clf.preprocess(CORAL / "cat.bmp")
        for _ in range(20):
            clf.infer(x)
        invoke, loop, dropped = [], [], []
        for _ in range(a.rounds):  # interleaved: drift on a shared machine hits both alike
            ts = []
            for _ in range(100):
                t = time.perf_counter()
                clf.infer(x)
                ts.append(time.perf_counter() - t)
            invoke.append(statistics.median(ts))
            src, _ = sources.open_source(str(video), (clf.width, clf.height))
            src.open()
            s = camera.run(clf, src, lambda d: None)
            loop.append(s.fps)
            dropped.append(s.dropped)
            stages = s.latency_ms
    inv = statistics.median(invoke)
    fps = statistics.median(loop)
    r = {"model": "mobilenet_v2_1.0_224_quant", "threads": 1, "frames": a.frames, "video": "640x480 MJPG, real photos",
         "invoke_ms": round(inv * 1e3, 3), "invoke_bound_fps": round(1 / inv, 1), "loop_fps": round(fps, 1),
         "ratio": round(fps * inv, 3), "goal": 0.9, "dropped": dropped, "mean_stage_ms_last_round":
         {k: round(v, 3) for k, v in stages.items()},
         "machine": {**machine.summary(), "interpreter": f"{clf.interpreter} {clf.package.version}",
                     "edgecls": __version__}}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "camera_loop.json").write_text(json.dumps(r, indent=2) + "\n")
    md = ["# Camera loop throughput vs bare invoke", "",
          f"{r['machine']['cpu']} ({r['machine']['arch']}), {r['machine']['interpreter']}, 1 thread; {a.frames}-frame "
          f"640x480 video of real photos; median of {a.rounds} interleaved rounds. Produced by "
          "`python benchmarks/camera_loop.py`.", "",
          "| invoke ms | 1 / invoke | loop FPS | ratio (goal >= 0.9) | dropped |", "| --- | --- | --- | --- | --- |",
          f"| {r['invoke_ms']:.2f} | {r['invoke_bound_fps']:.1f} | {r['loop_fps']:.1f} | **{r['ratio']:.2f}** | "
          f"{sum(dropped)} (a file's frames wait; cameras drop) |", "",
          "Mean per frame (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in r["mean_stage_ms_last_round"].items())
          + " (age = capture to result).", ""]
    (a.out / "camera_loop.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
