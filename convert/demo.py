"""``edgecls demo``: the whole path offline, on the handwritten digits that scikit-learn ships
inside its wheel (1,797 8x8 images, 10 classes): build a folder-per-class dataset, train a
MobileNet from scratch, convert it to an int8 bundle, classify held-out digits, verify the
golden photos and benchmark the bundle. Nothing is downloaded."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.cli.args import nonneg_int, positive_int
from edge_runtime.errors import EdgeclsError, MissingExtra

MARKER = ".edgecls-demo"  # only a directory the demo made itself is ever replaced
# The training recipe: from scratch, a cosine learning rate (peak 4e-3 after one warm-up epoch)
# reaches in 20 epochs what 30 epochs at a constant 2e-3 reached (benchmarks/results/demo_time.md).
EPOCHS, PEAK_LR, SCHEDULE = 20, 4e-3, "cosine"
# An epoch of the demo takes about 3 s and committing a checkpoint about 0.5 s: commit every 30 s
# (and after the last epoch) instead of after every epoch. A killed demo is rerun, not resumed.
CHECKPOINT_EVERY = 30.0


def make_digits(root: Path) -> int:
    """Write scikit-learn's digits as 8x8 grayscale PNGs, one folder per digit."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise MissingExtra("the demo", "train", "scikit-learn") from e
    from PIL import Image

    digits = load_digits()
    for i, (img, target) in enumerate(zip(digits.images, digits.target)):
        d = root / str(int(target))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(img * 255 / 16).astype(np.uint8)).save(d / f"digit-{i:04d}.png")
    return len(digits.images)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the whole path offline: train, convert, classify, verify, bench (needs edgecls[train])",
        description="Train a MobileNet V1 from scratch on scikit-learn's handwritten digits (shipped inside its "
                    "wheel, so nothing is downloaded), convert it to a full-int8 bundle, classify held-out digits, "
                    "verify the golden photos and benchmark the bundle. About 2 to 3 CPU-minutes on a 2-core x86 "
                    "machine (benchmarks/results/demo_time.md). Without --seed it is seeded with 0 but uses "
                    "TensorFlow's faster, non-deterministic kernels.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="directory for the dataset, the run and the bundle")
    p.add_argument("--epochs", type=positive_int, default=EPOCHS, help="training epochs (early stopping may end sooner)")
    p.add_argument("--size", type=positive_int, default=64, help="model input size in pixels")
    p.add_argument("--seed", type=nonneg_int, default=None,
                   help="seed for data order, augmentation and weight initialisation, and deterministic TensorFlow ops "
                        "(same seed, same machine: same result; the deterministic ops cost a few percent of speed, so "
                        "without --seed the demo uses seed 0 and TensorFlow's faster kernels)")
    p.add_argument("--verbose", action="store_true", help="also show what TensorFlow's C++ side logs")
    p.set_defaults(func=cmd_demo)


def cmd_demo(a: argparse.Namespace) -> int:
    from train.quiet import native_logs_filtered

    with native_logs_filtered(a.verbose):
        return _demo(a)


def _demo(a: argparse.Namespace) -> int:
    from train import _tf  # noqa: F401  (names the extra on a runtime-only install)

    out = Path(a.out)
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise EdgeclsError(f"{out}: exists and was not made by edgecls demo; pass another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by edgecls demo; replaced by the next run\n")
    summary = run_demo(out, a.epochs, a.size, 0 if a.seed is None else a.seed, deterministic=a.seed is not None)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    return 0 if summary["verify_ok"] else 1


def run_demo(out: Path, epochs: int, size: int, seed: int = 0, deterministic: bool = False) -> dict:
    """Every step of the demo in ``out``; returns the summary (with wall and CPU seconds per stage)."""
    from train.run import Clock, TrainConfig, log, train

    clock = Clock()
    t0 = time.perf_counter()
    with clock("make dataset"):
        n = make_digits(out / "data")
    log(f"demo: wrote {n} digit images to {out / 'data'}")
    cfg = TrainConfig(data=str(out / "data"), arch="mobilenet_v1", alpha=0.25, size=size, weights=None,
                      fine_tune_epochs=epochs, learning_rate=PEAK_LR, lr_schedule=SCHEDULE, batch=32, seed=seed,
                      deterministic=deterministic, checkpoint_every=CHECKPOINT_EVERY)
    with clock("train"):
        metrics = train(out / "run", cfg)
    t_train = time.perf_counter() - t0
    with clock("convert"):
        from convert.run import Options, convert

        conv = convert(out / "run", out / "bundle", Options())
    t_convert = time.perf_counter() - t0 - t_train
    examples, ok, b = _try_bundle(out, clock)
    stages = {"make dataset": clock.to_json()["make dataset"],
              **{f"train: {k}": v for k, v in metrics["seconds_this_session"].items()},
              **{f"convert: {k}": v for k, v in conv.seconds.items()},
              **{k: v for k, v in clock.to_json().items() if k in ("classify", "verify", "bench")}}
    return {
        "images": n, "classes": 10, "seed": seed, "deterministic": deterministic, "gate": conv.metrics["gate"]["reason"],
        "repair_step": conv.metrics["gate"]["passed_step"], "model": f"mobilenet_v1 alpha 0.25, {size} px, from scratch",
        "keras_test_top1": metrics["test"]["top1"], "float_test_top1": conv.metrics["float_top1"],
        "int8_test_top1": conv.metrics["int8_top1"], "int8_float_agreement": conv.metrics["int8_float_agreement"],
        "test_images": conv.metrics["test_images"], "int8_bytes": conv.metrics["size_bytes"]["int8"],
        "float_bytes": conv.metrics["size_bytes"]["float"], "examples": examples, "verify_ok": ok,
        "invoke_ms_p50": round(b["invoke_ms"]["p50"], 3), "end_to_end_ms": {k: round(v, 3) for k, v in
                                                                           b["end_to_end_ms"].items()},
        "threads": b["threads"], "machine": _machine(),
        "interpreter": f"{b['interpreter']} {b['interpreter_version']}",
        "seconds": {"train": round(t_train, 1), "convert": round(t_convert, 1),
                    "total": round(time.perf_counter() - t0, 1)},
        "stages": stages, "epochs": metrics["epochs"][2],
        "bundle": str(out / "bundle"),
    }


def _try_bundle(out: Path, clock: Any) -> tuple[list[dict], bool, dict]:
    """Classify five held-out digits, verify the golden photos, benchmark the bundle."""
    from edge_runtime.bench import measure as bench
    from edge_runtime.bundle.classifier import Classifier
    from edge_runtime.bundle.verify import verify

    test = [r for r in (out / "run" / "splits" / "test.txt").read_text().split("\n") if r]
    picks = [test[i] for i in np.linspace(0, len(test) - 1, 5).astype(int)]
    examples = []
    with clock("classify"), Classifier(out / "bundle", backend="cpu") as clf:
        for rel in picks:
            r = clf.classify(out / "data" / rel, top=1)
            examples.append({"image": rel, "true": rel.split("/")[0], "predicted": r.classes[0].label,
                             "score": round(r.classes[0].score, 3)})
    with clock("verify"):
        rep = verify(out / "bundle", backend="cpu")
    with clock("bench"):
        b = bench.measure(bench.Config(str(out / "bundle"), "cpu", runs=200, warmup=10,
                                       input=str(out / "data" / picks[0])))
    return examples, rep.ok, b


def _machine() -> str:
    from edge_runtime.bench import measure as bench

    return bench.machine()["arch"]


def format_summary(s: dict) -> str:
    lines = [f"edgecls demo: {s['images']} handwritten digits, {s['model']}",
             f"  test top-1 on {s['test_images']} held-out digits: Keras {s['keras_test_top1']:.1%}, "
             f"float TFLite {s['float_test_top1']:.1%}, int8 {s['int8_test_top1']:.1%} "
             f"(int8 agrees with float on {s['int8_float_agreement']:.1%})",
             f"  int8 gate: {s['gate']}",
             f"  int8 model {s['int8_bytes'] / 1024:.0f} KiB ({s['int8_bytes'] / s['float_bytes']:.0%} of float)",
             "  held-out examples: " + ", ".join(f"{e['image']} -> {e['predicted']} ({e['score']:.2f})"
                                                 for e in s["examples"]),
             f"  golden photos on this machine: {'all bit-identical' if s['verify_ok'] else 'MISMATCH'}",
             f"  latency ({s['interpreter']}, {s['threads']} threads, {s['machine']}): invoke p50 "
             f"{s['invoke_ms_p50']:.2f} ms; end to end " + ", ".join(f"{k} {v:.2f}" for k, v in s["end_to_end_ms"].items())
             + " ms",
             f"  time: train {s['seconds']['train']:.0f} s, convert {s['seconds']['convert']:.0f} s, total "
             f"{s['seconds']['total']:.0f} s",
             f"  bundle: {s['bundle']}  (try: edgecls classify {s['bundle']} {s['bundle']}/golden)"]
    return "\n".join(lines)


