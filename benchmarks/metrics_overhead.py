"""The cost of metrics and drift in the camera loop (issue 35): goal <= 2% of a frame's time.

Two measurements on Coral's mobilenet_v2_1.0_224_quant (1001 classes), 1 thread:

1. the inference thread's own cost: ``Monitor.frame`` (the drift window plus the Prometheus
   histograms and counters) per frame, timed over many calls with real score vectors, against the
   loop's time per frame - the bound that does not depend on how busy the machine is;
2. end to end: the loop's FPS on a 640x480 video of real photos with the monitor off and on, rounds
   interleaved off, on, on, off (linear drift of a shared machine cancels), after a warm-up round.

Also the cost of one scrape (``/metrics``' body), which runs in a web thread, not the loop.

usage: python benchmarks/metrics_overhead.py [--frames 300] [--rounds 5] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_runtime import Classifier, __version__
from edge_runtime.bench.metrics import Monitor
from edge_runtime.bundle.reference import Reference
from edge_runtime.cli.doctor import cpu_model
from edge_runtime.live import loop as camera
from edge_runtime.live import sources
from edge_runtime.live.drift import Drift
from edge_runtime.model.postprocess import top_k

ROOT = Path(__file__).resolve().parents[1]
CORAL = ROOT.parent / "shared" / "assets" / "coral"
sys.path.insert(0, str(ROOT / "benchmarks"))
from camera_loop import make_video  # noqa: E402


def monitor(clf: Classifier, reference: Reference) -> Monitor:
    return Monitor({"name": "bench", "version": "bench", "sha256": "", "backend": "cpu"}, Drift(reference))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()
    clf = Classifier(CORAL / "mobilenet_v2_1.0_224_quant.tflite", labels=CORAL / "imagenet_labels.txt",
                     backend="cpu", threads=1)
    photos = [clf.scores(clf.infer(clf.prepare(str(CORAL / n)))) for n in ("cat.bmp", "parrot.jpg", "bird.bmp")]
    reference = Reference.from_scores(np.stack(photos * 10))
    fps: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "photos.avi"
        make_video(video, a.frames)
        for r in range(a.rounds * 2 + 1):  # round 0 warms up; then off, on, on, off, ...
            mode = "on" if r == 0 else ("off", "on", "on", "off")[(r - 1) % 4]
            src, _ = sources.open_source(str(video), (clf.width, clf.height))
            src.open()
            s = camera.run(clf, src, lambda d: None, watch=monitor(clf, reference) if mode == "on" else None)
            if r:
                fps[mode].append(s.fps)
    # the loop thread's own cost per frame, with a label change every 10 frames
    m = monitor(clf, reference)
    classes = [top_k(p, clf.labels, 3) for p in photos]
    lat = {"preprocess": 1.0, "invoke": 7.0, "postprocess": 0.1, "age": 9.0}
    n = 20000
    t = time.perf_counter()
    for i in range(n):
        k = (i // 10) % 3
        m.frame(None, photos[k], classes[k], lat)
    frame_us = (time.perf_counter() - t) / n * 1e6
    t = time.perf_counter()
    for _ in range(200):
        body = m.exposition()
    scrape_ms = (time.perf_counter() - t) / 200 * 1e3
    off, on = statistics.median(fps["off"]), statistics.median(fps["on"])
    pairs = [b / o for o, b in zip(fps["off"], fps["on"])]
    share = frame_us / (1e6 / off)
    r = {"model": "mobilenet_v2_1.0_224_quant", "threads": 1, "frames": a.frames, "rounds": a.rounds,
         "fps_off": [round(x, 2) for x in fps["off"]], "fps_on": [round(x, 2) for x in fps["on"]],
         "median_fps_off": round(off, 2), "median_fps_on": round(on, 2),
         "median_pair_ratio": round(statistics.median(pairs), 3), "monitor_frame_us": round(frame_us, 2),
         "share_of_frame": round(share, 5), "goal_share": 0.02, "scrape_ms": round(scrape_ms, 3),
         "scrape_bytes": len(body),
         "machine": {"cpu": cpu_model(), "arch": platform.machine(), "cores": camera_cores(),
                     "interpreter": f"{clf.interpreter} {clf.package.version}", "edgecls": __version__}}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "metrics_overhead.json").write_text(json.dumps(r, indent=2) + "\n")
    md = ["# Metrics and drift: their cost in the camera loop", "",
          f"{r['machine']['cpu']} ({r['machine']['arch']}, {r['machine']['cores']} cores shared with other jobs), "
          f"{r['machine']['interpreter']}, 1 thread; Coral's mobilenet_v2_1.0_224_quant (1001 classes) on a "
          f"{a.frames}-frame 640x480 video of real photos; {a.rounds} rounds each, interleaved off, on, on, off, "
          "after a warm-up round. Produced by `python benchmarks/metrics_overhead.py`.", "",
          f"**The loop thread's own cost: `Monitor.frame` (drift window + Prometheus histograms and counters) takes "
          f"{frame_us:.1f} us a frame, {share:.2%} of the {1e3 / off:.1f} ms a frame takes here** (goal <= 2%). "
          "Counts kept elsewhere (dropped frames, errors, actions, mined frames, temperature) and the drift "
          "statistic itself are read when Prometheus scrapes, in a web thread: "
          f"one scrape takes {scrape_ms:.2f} ms ({len(body):,} bytes).", "",
          "| metrics and drift | loop FPS (median) | rounds |", "| --- | --- | --- |",
          f"| off | {off:.1f} | {', '.join(f'{x:.1f}' for x in fps['off'])} |",
          f"| on | {on:.1f} | {', '.join(f'{x:.1f}' for x in fps['on'])} |", "",
          f"End to end, on / off, median of the per-pair ratios: {r['median_pair_ratio']:.3f}; per pair: "
          f"{', '.join(f'{x:.2f}' for x in pairs)}. Rounds of one mode differ by "
          f"{max(max(v) / min(v) - 1 for v in fps.values()):.0%} on this shared machine, more than the 2% asked "
          "for: the per-frame bound above is the figure that holds.", ""]
    (a.out / "metrics_overhead.md").write_text("\n".join(md))
    print("\n".join(md))


def camera_cores() -> int:
    from edge_runtime.system.machine import cores

    return cores()


if __name__ == "__main__":
    main()
