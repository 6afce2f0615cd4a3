"""Classified frames per second from a Pi camera delivering 30 frames/s, against min(30, 1 / invoke).
Goal: equal (one camera request per classified frame). The adapter this replaced called
capture_array twice a frame (lores, then main): two camera frames each, so at most 15.

The camera is tests/picamera2_standin.py: picamera2's own Picamera2 (capture_request,
capture_array, process_requests, CompletedRequest) on a stand-in libcamera whose sensor completes
a request every 1/30 s; the scene is a real photo, the lores stream YUV420 (a Pi 4). The model is
Coral's mobilenet_v2_1.0_224_quant at 1 thread; a second row pads each invoke to 50 ms with a
sleep, to show the loop following 1 / invoke below the camera's rate.

usage: python benchmarks/camera_fps.py [--seconds 6] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_runtime import Classifier, __version__
from edge_runtime.cli.doctor import cpu_model
from edge_runtime.live import loop as camera
from edge_runtime.live import sources

ROOT = Path(__file__).resolve().parents[1]
CORAL = ROOT.parent / "shared" / "assets" / "coral"
sys.path.insert(0, str(ROOT / "tests"))
import picamera2_standin as standin  # noqa: E402  (needs: pip install --no-deps picamera2)

CAMERA_FPS = 30.0


class TwoCaptures(sources.Picamera2Source):
    """The adapter before: capture_array("lores") then capture_array("main"), one request each."""

    def read(self) -> sources.Frame | None:
        if self.lores is None or self.main is None:
            raise sources.SourceError("open() first")
        lores = self.cam.capture_array("lores")
        main = self.cam.capture_array("main")
        f = sources.Frame(self.lores.to_rgb(lores), time.time(), self.n, self.main.to_rgb(main))
        self.n += 1
        return f


class Padded:
    """A classifier whose infer takes at least ``ms`` milliseconds (sleeping the rest)."""

    def __init__(self, clf: Classifier, ms: float):
        self.clf, self.s = clf, ms / 1e3
        self.labels, self.prepare, self.scores = clf.labels, clf.prepare, clf.scores

    def infer(self, x: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        raw = self.clf.infer(x)
        time.sleep(max(0.0, self.s - (time.perf_counter() - t)))
        return raw


def measure(clf: Any, adapter: type, seconds: float, scene: np.ndarray) -> dict[str, Any]:
    cam = standin.StandInPicamera2([scene], fps=CAMERA_FPS, platform="vc4")
    src = adapter((224, 224), lores_format="YUV420", factory=lambda: cam)
    src.open()
    path = src.path
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    t0 = time.perf_counter()
    delivered0 = cam.delivered
    s = camera.run(clf, src, lambda d: None, stop=stop)
    timer.cancel()
    elapsed = time.perf_counter() - t0
    invoke_ms = s.latency_ms["invoke"]
    return {"classified_fps": round(s.fps, 2), "invoke_ms": round(invoke_ms, 2),
            "expected_fps": round(min(CAMERA_FPS, 1e3 / invoke_ms), 2),
            "camera_fps": round((cam.delivered - delivered0) / elapsed, 2),
            "requests_per_read": round(cam.consumed / max(s.captured, 1), 2),
            "classified": s.classified, "captured": s.captured, "dropped": s.dropped,
            "age_ms": round(s.latency_ms["age"], 1), "path": path}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()
    scene = np.asarray(Image.open(CORAL / "parrot.jpg").convert("RGB").resize((640, 480), Image.BILINEAR))
    clf = Classifier(CORAL / "mobilenet_v2_1.0_224_quant.tflite", labels=CORAL / "imagenet_labels.txt",
                     backend="cpu", threads=1)
    x = clf.prepare(scene)
    for _ in range(20):
        clf.infer(x)
    rows = []
    for label, model in (("mobilenet_v2 int8", clf), ("mobilenet_v2 int8, invoke padded to 50 ms", Padded(clf, 50))):
        for name, adapter in (("one request a frame (now)", sources.Picamera2Source),
                              ("two capture_array calls (before)", TwoCaptures)):
            r = measure(model, adapter, a.seconds, scene)
            r.update(model=label, adapter=name)
            rows.append(r)
            print(json.dumps(r), flush=True)
    result = {"camera_fps": CAMERA_FPS, "seconds": a.seconds, "threads": 1, "rows": rows,
              "machine": {"cpu": cpu_model(), "arch": platform.machine(),
                          "interpreter": f"{clf.interpreter} {clf.package.version}", "edgecls": __version__}}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "camera_fps.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    md = ["# Pi camera: classified frames per second", "",
          f"{m['cpu']} ({m['arch']}), {m['interpreter']}, 1 thread; a stand-in camera running picamera2's own "
          f"request handling at {CAMERA_FPS:g} frames/s, lores YUV420 224x224 (stride 256, Smpte170m) and main "
          f"640x480; {a.seconds:g} s a row. Produced by `python benchmarks/camera_fps.py`. "
          "Goal: classified FPS = min(30, 1 / invoke).", "",
          "| model | adapter | invoke ms | min(30, 1/invoke) | classified FPS | camera requests per read() | "
          "dropped (the loop takes the newest) |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        md.append(f"| {r['model']} | {r['adapter']} | {r['invoke_ms']:.1f} | {r['expected_fps']:.1f} | "
                  f"**{r['classified_fps']:.1f}** | {r['requests_per_read']:.2f} | {r['dropped']} |")
    md += ["", f"Path (`edgecls camera` prints the same): {rows[0]['path']}.", "",
           "Mean frame age, sensor timestamp to result (ms): "
           + ", ".join(f"{r['adapter'].split(' (')[0]} / {r['model']}: {r['age_ms']:.0f}" for r in rows)
           + " (the before adapter had no sensor timestamp: its age starts at the copy).", ""]
    (a.out / "camera_fps.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
