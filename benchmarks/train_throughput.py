"""Training throughput (images/s) on the sign-language photos, MobileNet V1 0.25 at 128 px with
the shared ImageNet weights, measured in one run:

- phase 1 as edgecls runs it: the frozen backbone's features computed once, then head epochs
  on the cached features;
- phase 1 the plain way: every epoch pushes every photo through the frozen backbone;
- phase 2: fine-tuning the whole backbone on augmented photos.

The ratio is the phase-1 wall time for E epochs, plain / cached (the one-off feature pass
included), for the E of the default configuration.

usage: python benchmarks/train_throughput.py [--epochs 30] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edge_runtime.system import machine
from train import data, fit, model
from train._tf import keras, tf

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
SIGN = ASSETS / "datasets" / "sign_language_digits"
WEIGHTS = ASSETS / "keras_weights" / "mobilenet_2_5_224_tf_no_top.h5"


def timed_epoch(m, ds, n: int) -> float:
    """images/s of the second of two epochs (the first one traces the graph)."""
    m.fit(ds, epochs=1, verbose=0, shuffle=False)
    t = time.perf_counter()
    m.fit(ds, epochs=1, verbose=0, shuffle=False)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30, help="phase-1 epochs the ratio is computed for")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()

    ds = data.scan(SIGN)
    train = ds.split("train")
    x = data.decode(train, 128, 128)
    y = np.array([s.label for s in train], np.int32)
    n = len(x)
    built = model.build("mobilenet_v1", len(ds.classes), 128, 0.25, str(WEIGHTS))

    fit.features_of(built, x[: a.batch], a.batch)  # trace first, as timed_epoch does for the others
    t = time.perf_counter()
    feats = fit.features_of(built, x, a.batch)
    extract_s = time.perf_counter() - t
    head = model.head(built.feature_dim, len(ds.classes))
    fit.compile_model(head, 1e-3)
    head_ips = timed_epoch(head, fit.dataset(feats, y, a.batch, shuffle=True), n)

    model.set_trainable(built, 0)  # backbone frozen: phase 1 without the cache
    fit.compile_model(built.model, 1e-3)
    frozen_ips = timed_epoch(built.model, fit.dataset(x, y, a.batch, shuffle=True), n)

    model.set_trainable(built, -1)
    model.freeze_batchnorm(built)
    fit.compile_model(built.model, 2e-4)
    tune_ips = timed_epoch(built.model, fit.dataset(x, y, a.batch, shuffle=True, augment=fit.augmenter(False)), n)

    cached_s = extract_s + a.epochs * n / head_ips
    plain_s = a.epochs * n / frozen_ips
    r = {"model": "mobilenet_v1 alpha 0.25, 128 px, ImageNet weights", "train_images": n, "batch": a.batch,
         "feature_extraction_images_per_s": round(n / extract_s, 1),
         "phase1_cached_head_images_per_s": round(head_ips, 1),
         "phase1_frozen_backbone_images_per_s": round(frozen_ips, 1),
         "phase2_finetune_augmented_images_per_s": round(tune_ips, 1),
         "phase1_epochs": a.epochs, "phase1_seconds_cached": round(cached_s, 2),
         "phase1_seconds_plain": round(plain_s, 2), "phase1_speedup": round(plain_s / cached_s, 1),
         "machine": {**machine.summary(),
                     "tensorflow": tf.__version__, "keras": keras.__version__}}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "train_throughput.json").write_text(json.dumps(r, indent=2) + "\n")
    md = ["# Training throughput: sign-language photos", "",
          f"{r['model']}, {n} training photos, batch {a.batch}; {r['machine']['cpu']}, {r['machine']['cores']} cores, "
          f"TensorFlow {tf.__version__}. Produced by `python benchmarks/train_throughput.py`.", "",
          "| stage | images/s |", "| --- | --- |",
          f"| backbone feature pass (once, phase 1 as edgecls runs it) | {r['feature_extraction_images_per_s']} |",
          f"| phase 1 epoch on cached features (head only) | {r['phase1_cached_head_images_per_s']} |",
          f"| phase 1 epoch through the frozen backbone (no cache) | {r['phase1_frozen_backbone_images_per_s']} |",
          f"| phase 2 epoch, fine-tuning on augmented photos | {r['phase2_finetune_augmented_images_per_s']} |", "",
          f"Phase 1 over {a.epochs} epochs: {r['phase1_seconds_plain']} s through the frozen backbone vs "
          f"{r['phase1_seconds_cached']} s with features cached (the feature pass included): "
          f"**{r['phase1_speedup']}x**.", ""]
    (a.out / "train_throughput.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
