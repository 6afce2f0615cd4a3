"""edgecls against the two ways people run the same classifier in Python: pycoral's documented
path and MediaPipe Tasks' ImageClassifier. Same model, same twenty 640x480 JPEG frames (made
from the shared sign-language photos), same thread count, in one process, in interleaved
rounds (each round runs every path over all twenty frames, in an order that rotates), so that
drift on a shared machine hits every row alike. Reported: the median over rounds of the mean
time per frame, from the JPEG file to the top-5 classes.

Rows, for each model and thread count:
- ``bare invoke``: ``invoke()`` on an input already set: the floor.
- ``pycoral``: as pycoral's examples/classify_image.py does it, with pycoral.adapters.common and
  .classify's code paths: PIL open + convert("RGB") + resize(LANCZOS), its input normalization
  check (scale * std vs 1, mean vs zero point) and, when needed, its float normalization,
  ``input_tensor(...)[:, :] = data``, invoke, ``get_classes`` (dequantize in int64, argpartition,
  sort). Run on LiteRT's Interpreter with ``num_threads`` (pycoral's make_interpreter on a CPU
  model is the same interpreter without the Edge TPU delegate).
- ``mediapipe``: ``ImageClassifier`` (IMAGE mode, max_results=5) on ``mp.Image.create_from_file``.
  MediaPipe's Python Tasks API has no thread option: the same classifier serves both columns.
- ``edgecls (decode full)`` / ``edgecls (decode draft)``: ``Classifier.classify(path)`` with the
  contract's decode mode full (TensorFlow's resize on every decoded pixel, the default for bare
  models and old bundles) or draft (DCT-scaled JPEG decoding, what new bundles record).
- ``edgecls prepare+infer+rank``: the tensor API in three calls (the draft decode), i.e. without
  the write straight into the input tensor that ``classify`` does.
- ``edgecls decoded frame``: ``classify`` on the already-decoded 640x480 RGB frame (the webcam
  case), against ``bare invoke``.

usage: python benchmarks/peers.py [--bundle BUNDLE] [--rounds 15] [--threads 1,2] [--out benchmarks/results]

Without ``--bundle`` the small model is Coral's mobilenet_v1_0.25_128_quant only; a bundle
trained by ``edgecls train`` on the sign photos (``--arch mobilenet_v1 --alpha 0.25 --size 128``)
and converted adds its rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from edge_runtime import Classifier, __version__
from edge_runtime.bench.measure import end_to_end
from edge_runtime.model.preprocess import iter_images
from edge_runtime.system import machine

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
CORAL = ASSETS / "coral"
SIGN = ASSETS / "datasets" / "sign_language_digits"
FRAMES = 20
SPEEDUP_GOAL = 1.5  # edgecls vs the fastest of pycoral and MediaPipe, per JPEG frame
FRAME_GOAL = 1.10  # classify on a decoded frame vs bare invoke, at 1 thread


def make_frames(dest: Path, n: int = FRAMES) -> list[str]:
    """``n`` 640x480 JPEGs (quality 90, 4:2:0, as a camera or phone writes them) made from sign
    photos, two per class in turn."""
    by_class = [sorted(iter_images([str(d)])) for d in sorted(SIGN.iterdir()) if d.is_dir()]
    picked = [by_class[i % len(by_class)][i // len(by_class) * 7] for i in range(n)]
    out = []
    for i, p in enumerate(picked):
        f = dest / f"frame{i:02d}.jpg"
        with Image.open(p) as im:
            im.convert("RGB").resize((640, 480), Image.Resampling.BICUBIC).save(f, quality=90)
        out.append(str(f))
    return out


# --- pycoral's path, as its example and adapters do it ---------------------------------------


class PycoralPath:
    """examples/classify_image.py with pycoral.adapters.common/classify, on a CPU interpreter."""

    def __init__(self, model: str, threads: int, mean: float, std: float):
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_path=model, num_threads=threads)
        self.it.allocate_tensors()
        d = self.it.get_input_details()[0]
        if d["dtype"] != np.uint8:
            raise ValueError("Only support uint8 input type.")
        _, h, w, _ = d["shape"]
        self.size = (int(w), int(h))
        self.input_index = d["index"]
        q = d["quantization_parameters"]
        scale, zero_point = q["scales"], q["zero_points"]
        self.direct = bool(abs(scale * std - 1) < 1e-5 and abs(mean - zero_point) < 1e-5)
        self.mean, self.std, self.scale, self.zero_point = mean, std, scale, zero_point
        self.out = self.it.get_output_details()[0]

    def __call__(self, path: str) -> list[tuple[int, float]]:
        image = Image.open(path).convert("RGB").resize(self.size, Image.LANCZOS)
        if self.direct:
            data: Any = image
        else:
            normalized = (np.asarray(image) - self.mean) / (self.std * self.scale) + self.zero_point
            np.clip(normalized, 0, 255, out=normalized)
            data = normalized.astype(np.uint8)
        self.it.tensor(self.input_index)()[0][:, :] = data  # common.set_input
        self.it.invoke()
        raw = self.it.tensor(self.out["index"])().flatten()  # classify.get_scores
        scale, zero_point = self.out["quantization"]
        scores = scale * (raw.astype(np.int64) - zero_point)
        top_k = min(5, len(scores))  # classify.get_classes_from_scores
        classes = [(int(i), float(scores[i])) for i in np.argpartition(scores, -top_k)[-top_k:]]
        return sorted(classes, key=lambda c: c[1], reverse=True)


class MediapipePath:
    def __init__(self, model: str):
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self.mp = mp
        opts = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=os.path.abspath(model)),
                                             max_results=5)
        self.clf = vision.ImageClassifier.create_from_options(opts)

    def __call__(self, path: str) -> list[tuple[int, float]]:
        r = self.clf.classify(self.mp.Image.create_from_file(path))
        return [(c.index, c.score) for c in r.classifications[0].categories]

    def close(self) -> None:
        self.clf.close()


# --- one model --------------------------------------------------------------------------------


@dataclass
class Model:
    name: str
    path: str  # a .tflite or a bundle
    labels: str | None
    tflite: str  # the CPU model file, for the peers
    mean: float  # pycoral's --input_mean / --input_std for this model
    std: float


def models(bundle: str | None) -> list[Model]:
    imagenet = str(CORAL / "imagenet_labels.txt")
    out = [Model("MobileNetV2 1.0 224 (Coral tf2 PTQ)", str(CORAL / "tf2_mobilenet_v2_1.0_224_ptq.tflite"), imagenet,
                 str(CORAL / "tf2_mobilenet_v2_1.0_224_ptq.tflite"), 128.0, 128.0),
           Model("MobileNetV1 0.25 128 (Coral)", str(CORAL / "mobilenet_v1_0.25_128_quant.tflite"), imagenet,
                 str(CORAL / "mobilenet_v1_0.25_128_quant.tflite"), 128.0, 128.0)]
    if bundle:
        # The bundle's model takes raw pixels (scale 1, zero point 0): pycoral's example is run with
        # --input_mean 0 --input_std 1, so that it feeds what the model expects.
        out.append(Model("sign bundle (MobileNetV1 0.25 128, trained here)", bundle, None,
                         str(Path(bundle) / "model.tflite"), 0.0, 1.0))
    return out


def run_model(m: Model, threads: list[int], frames: list[str], rounds: int, log: Callable[[str], None]) -> dict:
    decoded = [np.asarray(Image.open(f).convert("RGB")) for f in frames]
    mediapipe: MediapipePath | None = None
    note = None
    try:
        mediapipe = MediapipePath(m.tflite)
    except ImportError:
        note = "MediaPipe not installed (pip install mediapipe): its row is skipped"
    except Exception as e:  # noqa: BLE001 - a peer that cannot load this model gets a note, not a crash
        note = f"MediaPipe cannot run this model: {str(e).splitlines()[0][:160]}"
    result: dict[str, Any] = {"model": m.name, "file": m.tflite, "threads": {}, "note": note}
    for n in threads:
        full = Classifier(m.path, labels=m.labels, backend="cpu", threads=n, decode="full")
        draft = Classifier(m.path, labels=m.labels, backend="cpu", threads=n, decode="draft")
        pycoral = PycoralPath(m.tflite, n, m.mean, m.std)
        rows: dict[str, Callable[[int], Any]] = {
            "bare invoke": lambda i: full.invoke(),
            "pycoral": lambda i: pycoral(frames[i]),
            "edgecls (decode full)": lambda i: full.classify(frames[i]),
            "edgecls (decode draft)": lambda i: draft.classify(frames[i]),
            "edgecls prepare+infer+rank": lambda i: draft.rank(draft.infer(draft.prepare(frames[i]))),
            "edgecls decoded frame": lambda i: full.classify(decoded[i]),
        }
        if mediapipe is not None:
            rows["mediapipe"] = lambda i: mediapipe(frames[i])  # type: ignore[misc]
        full.classify(decoded[0])  # sets an input for the bare invokes
        for fn in rows.values():  # warm-up: plans, caches, first invokes
            for i in range(len(frames)):
                fn(i)
        # Interleaved rounds: each path over all the frames, the order of the paths rotating from
        # round to round. (Not frame by frame: MediaPipe's and XNNPACK's worker threads spin for a
        # while after a call, and would slow whichever path runs right after them.)
        times: dict[str, list[float]] = {k: [] for k in rows}
        names = list(rows)
        for r in range(rounds):
            for k in names[r % len(names):] + names[: r % len(names)]:
                fn = rows[k]
                t = time.perf_counter()
                for i in range(len(frames)):
                    fn(i)
                times[k].append((time.perf_counter() - t) / len(frames))
        ms = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
        best = {k: float(np.min(v)) * 1e3 for k, v in times.items()}
        agree = _agreement(full, draft, pycoral, mediapipe, frames)
        stages = {"full": end_to_end(full, frames[0], 30), "draft": end_to_end(draft, frames[0], 30)}
        result["threads"][n] = {"ms": ms, "min_ms": best, "spread_ms": {k: [float(np.min(v)) * 1e3, float(np.max(v)) * 1e3]
                                                        for k, v in times.items()},
                                "stages_ms": stages, "top1_agreement": agree}
        log(f"{m.name}, {n} thread(s): " + ", ".join(f"{k} {v:.2f}" for k, v in ms.items()))
        full.close()
        draft.close()
    if mediapipe is not None:
        mediapipe.close()
    return result


def _agreement(full: Classifier, draft: Classifier, pycoral: PycoralPath, mediapipe: MediapipePath | None,
               frames: list[str]) -> dict[str, float]:
    """Share of frames where each path's top-1 equals edgecls's full-decode top-1."""
    ref = [full.classify(f).classes[0].index for f in frames]
    out = {"edgecls (decode draft)": float(np.mean([draft.classify(f).classes[0].index == r
                                                     for f, r in zip(frames, ref)])),
           "pycoral": float(np.mean([pycoral(f)[0][0] == r for f, r in zip(frames, ref)]))}
    if mediapipe is not None:
        out["mediapipe"] = float(np.mean([mediapipe(f)[0][0] == r for f, r in zip(frames, ref)]))
    return out


# --- the levers, one at a time -------------------------------------------------------------

BASE = "24de827"  # the commit before issue 16: its resize is the four-corner gather


def _previous() -> Any:
    """The preprocess module of commit BASE, loaded from git (None outside a git checkout)."""
    import importlib.util
    import subprocess
    import sys

    try:
        src = subprocess.run(["git", "show", f"{BASE}:edge_runtime/preprocess.py"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "preprocess_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("edge_runtime._preprocess_before", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    mod.__package__ = "edge_runtime"
    sys.modules[spec.name] = mod  # type: ignore[union-attr]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def levers(frames: list[str], rounds: int) -> list[dict[str, Any]]:
    """Each lever alone, per frame (median over rounds of the mean over the frames), ms."""
    from edge_runtime.model.preprocess import load_image_for, resize

    old = _previous()
    before = old.resize if old else None
    decoded = [load_image_for(f, 224, 224, "full") for f in frames]
    rows = []

    def timed(fn: Callable[[int], Any]) -> float:
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            for i in range(len(frames)):
                fn(i)
            times.append((time.perf_counter() - t) / len(frames))
        return float(np.median(times)) * 1e3

    for size in (224, 128):
        drafts = [load_image_for(f, size, size, "draft") for f in frames]
        out = np.empty((size, size, 3), np.uint8)
        cases = [
            (f"decode 640x480 JPEG for {size} px", f"full, commit {BASE}", old and (lambda i: old.load_image(frames[i])),
             "full, no EXIF copy", lambda i: load_image_for(frames[i], size, size, "full")),
            (f"decode 640x480 JPEG for {size} px", "full", lambda i: load_image_for(frames[i], size, size, "full"),
             "draft", lambda i: load_image_for(frames[i], size, size, "draft")),
            (f"resize 640x480 -> {size}", f"commit {BASE}", before and (lambda i: before(decoded[i], size, size)),
             "separable, into a buffer", lambda i: resize(decoded[i], size, size, out=out)),
            (f"resize {drafts[0].shape[1]}x{drafts[0].shape[0]} (draft) -> {size}", f"commit {BASE}",
             before and (lambda i: before(drafts[i], size, size)),
             "separable, into a buffer", lambda i: resize(drafts[i], size, size, out=out)),
        ]
        for what, a_name, a, b_name, b in cases:
            for fn in (a, b):
                if fn:
                    timed(fn)  # warm-up
            rows.append({"lever": what, "before": a_name, "before_ms": timed(a) if a else None,
                         "after": b_name, "after_ms": timed(b)})
    return rows


# --- report -----------------------------------------------------------------------------------


ORDER = ["bare invoke", "pycoral", "mediapipe", "edgecls (decode full)", "edgecls (decode draft)",
         "edgecls prepare+infer+rank", "edgecls decoded frame"]


def verdicts(res: dict) -> list[str]:
    """The issue's goals, on the medians (and, in brackets, on the fastest rounds)."""
    lines = []
    for n, t in res["threads"].items():
        def speedup(k: str, stat: str) -> float:
            return min(t[stat][p] for p in ("pycoral", "mediapipe") if p in t[stat]) / t[stat][k]

        for k in ("edgecls (decode full)", "edgecls (decode draft)"):
            s, s_min = speedup(k, "ms"), speedup(k, "min_ms")
            lines.append(f"{n} thread(s), {k}: {s:.2f}x ({s_min:.2f}x) the speed of the fastest peer "
                         f"({'met' if s >= SPEEDUP_GOAL else 'missed'}: goal {SPEEDUP_GOAL}x)")
        ceiling = min(t["ms"][p] for p in ("pycoral", "mediapipe") if p in t["ms"]) / t["ms"]["bare invoke"]
        lines.append(f"{n} thread(s), ceiling: the fastest peer takes {ceiling:.2f}x bare invoke, so no "
                     "preprocessing, however fast, gets edgecls further ahead than that")
        ratio = t["ms"]["edgecls decoded frame"] / t["ms"]["bare invoke"]
        r_min = t["min_ms"]["edgecls decoded frame"] / t["min_ms"]["bare invoke"]
        goal = f" ({'met' if ratio <= FRAME_GOAL else 'missed'}: goal {FRAME_GOAL}x)" if int(n) == 1 else ""
        lines.append(f"{n} thread(s), decoded frame: {ratio:.3f}x ({r_min:.3f}x) bare invoke{goal}")
    return lines


def markdown(data: dict) -> str:
    m = data["machine"]
    out = ["# edgecls vs pycoral's path and MediaPipe, per 640x480 JPEG frame", "",
           f"Machine: {m['cpu']}, {m['cores']} cores, {m['arch']}, governor {m['governor'] or 'n/a'}; "
           f"Python {data['python']}, numpy {data['numpy']}, Pillow {data['pillow']}, "
           + ", ".join(f"{k} {v}" for k, v in m["interpreters"].items() if v)
           + f", mediapipe {data['mediapipe'] or 'not installed'}; edgecls {data['edgecls']}, {data['date']}. "
           f"{data['rounds']} interleaved rounds of {FRAMES} frames; ms per frame: the median over rounds of the mean per frame "
           "(in brackets the fastest round). Load average before / after: "
           f"{data['load'][0]} / {data['load'][1]} (the machine is shared: compare rows within a column).",
           "", "Reproduce: `python benchmarks/peers.py" + (" --bundle BUNDLE" if data.get("bundle") else "")
           + f" --rounds {data['rounds']}`.", ""]
    for res in data["results"]:
        threads = list(res["threads"])
        out += [f"## {res['model']}", "", "| path | " + " | ".join(f"{n} thread(s)" for n in threads) + " |",
                "| --- |" + " --- |" * len(threads)]
        for k in ORDER:
            if k in res["threads"][threads[0]]["ms"]:
                out.append(f"| {k} | " + " | ".join(f"{res['threads'][n]['ms'][k]:.2f} ({res['threads'][n]['min_ms'][k]:.2f})"
                                                    for n in threads) + " |")
        if res.get("note"):
            out += ["", f"Note: {res['note']}."]
        out += [""] + [f"- {v}" for v in verdicts(res)]
        for n in threads:
            t = res["threads"][n]
            st = " / ".join(f"{k} " + ", ".join(f"{s} {v:.2f}" for s, v in t["stages_ms"][k].items())
                            for k in ("full", "draft"))
            out.append(f"- {n} thread(s), `edgecls bench` stages (one frame, p50 ms): {st}")
            out.append(f"- {n} thread(s), top-1 agreement with edgecls's full decode over the {FRAMES} frames: "
                       + ", ".join(f"{k} {v:.0%}" for k, v in t["top1_agreement"].items()))
        out.append("")
    out += ["MediaPipe's Python Tasks API has no thread option; measured here it runs the model on one thread "
            "(CPU time per call below wall time) and its C++ decode and resize cost about 2 ms per frame over "
            "bare invoke on MobileNetV2: the ceiling lines above follow from that. The pycoral path is run on "
            "LiteRT's interpreter with the row's threads.", ""]
    if data.get("levers"):
        out += ["## The levers, one at a time (per frame, ms)", "", "| stage | before | ms | after | ms | speed-up |",
                "| --- | --- | --- | --- | --- | --- |"]
        for r in data["levers"]:
            b, a = r["before_ms"], r["after_ms"]
            before = "" if b is None else f"{b:.3f}"
            gain = "" if b is None else f"{b / a:.2f}x"
            out.append(f"| {r['lever']} | {r['before']} | {before} | {r['after']} | {a:.3f} | {gain} |")
        out += ["", "Writing into the input tensor: compare `edgecls (decode draft)` (classify, into the tensor) "
                "with `edgecls prepare+infer+rank` (a new tensor, then set_tensor's copy) above.", ""]
    out += ["![per-frame latency](peers.png)", ""]
    return "\n".join(out)


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(res["model"].split(" (")[0] + ("\n" + res["model"].split(" (")[1].rstrip(")") if " (" in res["model"] else ""),
               n, res["threads"][n]["ms"]) for res in data["results"] for n in res["threads"]]
    keys = [k for k in ORDER if any(k in g[2] for g in groups)]
    fig, ax = plt.subplots(figsize=(max(8, 1.9 * len(groups)), 4.8))
    width = 0.8 / len(keys)
    colours = ["#999999", "#dd8452", "#55a868", "#8172b3", "#4c72b0", "#64b5cd", "#c44e52"]
    for i, k in enumerate(keys):
        xs = [j + (i - (len(keys) - 1) / 2) * width for j in range(len(groups))]
        ax.bar(xs, [g[2].get(k, 0) for g in groups], width, label=k, color=colours[ORDER.index(k)])
    ax.set_xticks(range(len(groups)), [f"{g[0]}\n{g[1]} thread(s)" for g in groups], fontsize=7)
    ax.set_ylabel("ms per 640x480 JPEG frame (median of rounds)")
    ax.set_title(f"edgecls vs pycoral's path vs MediaPipe ({data['machine']['cpu'][:40]}, {data['machine']['cores']} cores)",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="a sign-language bundle from edgecls train + convert (adds its rows)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--report-only", action="store_true", help="rewrite peers.md and peers.png from peers.json")
    a = ap.parse_args()
    if a.report_only:
        data = json.loads((a.out / "peers.json").read_text())
        (a.out / "peers.md").write_text(markdown(data))
        plot(data, a.out / "peers.png")
        return
    threads = [int(t) for t in a.threads.split(",")]
    try:
        import mediapipe

        mp_version = mediapipe.__version__
    except ImportError:
        mp_version = None
    import PIL

    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        frames = make_frames(Path(tmp))
        lever_rows = levers(frames, a.rounds)
        results = [run_model(m, threads, frames, a.rounds, print) for m in models(a.bundle)]
    data = {"machine": machine.summary(), "python": platform.python_version(), "numpy": np.__version__,
            "pillow": PIL.__version__, "mediapipe": mp_version, "edgecls": __version__,
            "date": time.strftime("%Y-%m-%d"), "rounds": a.rounds,
            "levers": lever_rows, "load": [load_before, " ".join(f"{x:.1f}" for x in os.getloadavg())], "bundle": a.bundle, "results": results}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "peers.json").write_text(json.dumps(data, indent=2) + "\n")
    text = markdown(data)
    (a.out / "peers.md").write_text(text)
    plot(data, a.out / "peers.png")
    print(text)


if __name__ == "__main__":
    main()
