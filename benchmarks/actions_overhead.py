"""Camera-loop throughput with actions on (MQTT to a local mosquitto with Home Assistant discovery,
plus a webhook to a local HTTP server) against off, in one run: rounds interleaved off, on, on, off so that
drift on a shared machine hits both alike. Coral's mobilenet_v2_1.0_224_quant at 1 thread on a
640x480 video of real photos whose label changes every 10 frames (a change every third of a second
at 30 FPS: far more than a real scene, so every change reaches both sinks). Goal: on/off >= 0.98.

usage: python benchmarks/actions_overhead.py [--frames 300] [--rounds 7] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from edge_runtime import Class, Classifier, __version__
from edge_runtime.actions import ActionOptions, Actions
from edge_runtime.cli.doctor import cpu_model
from edge_runtime.live import loop as camera
from edge_runtime.live import sources

ROOT = Path(__file__).resolve().parents[1]
CORAL = ROOT.parent / "shared" / "assets" / "coral"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import mosquitto  # noqa: E402  (tests/mosquitto.py: a broker on a free loopback port)
from camera_loop import make_video  # noqa: E402


class Hook(BaseHTTPRequestHandler):
    posts = 0

    def log_message(self, *a: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        Hook.posts += 1
        self.send_response(204)
        self.end_headers()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "photos.avi"
        make_video(video, a.frames)
        broker = mosquitto.Broker(Path(tmp)).start()
        web = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=web.serve_forever, daemon=True).start()
        opts = ActionOptions(mqtt=f"{broker.url}/bench/cam", ha_binary=["Egyptian cat"], mqtt_interval=1.0,
                             webhook=f"http://127.0.0.1:{web.server_address[1]}/hook")
        clf = Classifier(CORAL / "mobilenet_v2_1.0_224_quant.tflite", labels=CORAL / "imagenet_labels.txt",
                         backend="cpu", threads=1)
        fps: dict[str, list[float]] = {"off": [], "on": []}
        stats = []
        try:
            for r in range(a.rounds * 2 + 1):  # round 0 warms up (not counted); then off, on, on, off, off, on, ...
                mode = "on" if r == 0 else ("off", "on", "on", "off")[(r - 1) % 4]  # ABBA: linear drift cancels
                acts = Actions(opts, clf.labels, log=lambda m: None).start() if mode == "on" else None
                src, _ = sources.open_source(str(video), (clf.width, clf.height))
                src.open()
                s = camera.run(clf, src, lambda d: None, actions=acts)
                if r:
                    fps[mode].append(s.fps)
                    if acts is not None:
                        stats.append(s.actions)
            # the inference thread's own cost: observe() on a frame that changes nothing, and on a change
            # (queued for both sinks); measured on the same machine, with the sinks live
            acts = Actions(opts, clf.labels, log=lambda m: None).start()
            a_, b_ = [Class(0, "a", 0.9)], [Class(1, "b", 0.9)]
            t = time.perf_counter()
            for n in range(20000):
                acts.observe(n, 0.0, a_)
            same_us = (time.perf_counter() - t) / 20000 * 1e6
            t = time.perf_counter()
            for n in range(200):
                acts.observe(n, 0.0, b_ if n % 2 else a_)
            change_us = (time.perf_counter() - t) / 200 * 1e6
            acts.close()
        finally:
            web.shutdown()
            web.server_close()
            broker.stop()
    off, on = statistics.median(fps["off"]), statistics.median(fps["on"])
    pairs = [b / o for o, b in zip(fps["off"], fps["on"])]
    last = stats[-1]
    spread = max(max(v) / min(v) - 1 for v in fps.values())
    r = {"model": "mobilenet_v2_1.0_224_quant", "threads": 1, "frames": a.frames, "rounds": a.rounds,
         "fps_off": [round(x, 2) for x in fps["off"]], "fps_on": [round(x, 2) for x in fps["on"]],
         "median_fps_off": round(off, 2), "median_fps_on": round(on, 2), "ratio": round(on / off, 3),
         "median_pair_ratio": round(statistics.median(pairs), 3), "goal": 0.98,
         "observe_us": {"no_change": round(same_us, 2), "change": round(change_us, 2)}, "actions_last_round": last,
         "machine": {"cpu": cpu_model(), "arch": platform.machine(), "interpreter": f"{clf.interpreter} {clf.package.version}",
                     "edgecls": __version__}}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "actions.json").write_text(json.dumps(r, indent=2) + "\n")
    m, w = last["mqtt"], last["webhook"]
    md = ["# Actions: camera-loop throughput with MQTT and a webhook on vs off", "",
          f"{r['machine']['cpu']} ({r['machine']['arch']}), {r['machine']['interpreter']}, 1 thread; {a.frames}-frame "
          f"640x480 video of real photos, the label changing every 10 frames ({last['changes']} changes a round); "
          f"MQTT to a local mosquitto (Home Assistant discovery, state every 1 s and on each change) and a webhook "
          f"to a local HTTP server; {a.rounds} rounds each, interleaved off, on, on, off, ... after a warm-up round. Produced by "
          "`python benchmarks/actions_overhead.py`.", "",
          "| actions | loop FPS (median) | rounds |", "| --- | --- | --- |",
          f"| off | {off:.1f} | {', '.join(f'{x:.1f}' for x in fps['off'])} |",
          f"| MQTT + webhook | {on:.1f} | {', '.join(f'{x:.1f}' for x in fps['on'])} |", "",
          f"**on / off, median of the per-pair ratios (adjacent rounds): {r['median_pair_ratio']:.3f}** (goal >= 0.98); "
          f"ratio of the medians: {r['ratio']:.3f}; per pair: {', '.join(f'{x:.2f}' for x in pairs)}. "
          f"Rounds of the same mode differ by up to {spread:.0%} here, far more than the 2% the goal asks to resolve: "
          "the bound that does not depend on the machine is the next line.",
          "",
          f"The inference thread's own cost: `observe()` takes {same_us:.1f} us on a frame that changes nothing "
          f"and {change_us:.1f} us on a change (queued for both sinks), against {1e3 / off:.1f} ms a frame; the rest "
          "of the difference between rounds is the machine (2 cores shared with other jobs; the sinks' threads "
          "and mosquitto compete for the same cores).", "",
          f"Last round: MQTT {m['sent']} sent, {m['failed']} failed, {m['dropped']} dropped; webhook {w['sent']} sent, "
          f"{w['failed']} failed, {w['dropped']} dropped.", ""]
    (a.out / "actions.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
