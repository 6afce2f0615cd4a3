"""``edgecls train`` (registered through the ``edgecls.commands`` entry point, so the runtime's
command line never imports the workstation packages). TensorFlow is imported only when the
command runs; without it the command says which extra to install."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_runtime.cli.args import nonneg_float, nonneg_int, positive_float, positive_int


def _fraction(text: str) -> float:
    x = float(text)
    if not 0 <= x < 1:
        raise argparse.ArgumentTypeError("must be in [0, 1)")
    return x


def register(sub: argparse._SubParsersAction) -> None:
    from .run import SCHEDULES, TrainConfig  # no TensorFlow at import

    d = TrainConfig(data="")
    p = sub.add_parser(
        "train", help="train a MobileNet on a folder of photos (workstation; needs edgecls[train])",
        description="Train a MobileNet on DATA_DIR (one sub-folder of photos per class) into the run directory "
                    "--out. Phase 1 trains the classifier head on backbone features computed once; phase 2 "
                    "fine-tunes the backbone on augmented photos. Every epoch is checkpointed: after Ctrl-C or "
                    "a crash, run the same command with --resume.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("data", metavar="DATA_DIR", help="folder with one sub-folder of images per class")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to create (e.g. runs/NAME)")
    p.add_argument("--arch", default=d.arch, choices=("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small",
                                                      "mobilenet_v3_large"),
                   help="the backbone (its ImageNet weights: see --weights)")
    p.add_argument("--alpha", type=positive_float, default=d.alpha, help="width multiplier")
    p.add_argument("--size", type=positive_int, default=d.size, help="input height and width in pixels")
    p.add_argument("--weights", default=d.weights,
                   help="'imagenet' (Keras downloads them), a local weights file of the backbone without its "
                        "top, or 'none' to train from scratch")
    p.add_argument("--epochs", type=nonneg_int, default=d.epochs, help="phase 1 (head) epochs")
    p.add_argument("--fine-tune-epochs", type=nonneg_int, default=d.fine_tune_epochs, help="phase 2 epochs (0 skips it)")
    p.add_argument("--fine-tune-layers", type=int, default=d.fine_tune_layers,
                   help="top backbone layers unfrozen in phase 2 (-1: all)")
    p.add_argument("--lr", type=positive_float, default=d.learning_rate, help="phase 1 learning rate")
    p.add_argument("--fine-tune-lr", type=positive_float, default=d.fine_tune_learning_rate, help="phase 2 learning rate")
    p.add_argument("--patience", type=positive_int, default=d.patience,
                   help="early stop after this many epochs without a better validation loss")
    p.add_argument("--batch", type=positive_int, default=d.batch, help="batch size")
    p.add_argument("--checkpoint-every", type=nonneg_float, default=d.checkpoint_every, metavar="S",
                   help="commit a checkpoint at most every S seconds, and after the last epoch of each phase "
                        "(default 0: after every epoch; --resume after a kill then repeats up to S seconds of "
                        "training; saves time where an epoch takes about as long as a checkpoint)")
    p.add_argument("--dropout", type=_fraction, default=d.dropout,
                   help="fraction of the features dropped before the classifier head while training")
    p.add_argument("--flip", action="store_true", help="augment with horizontal flips (only where a mirror "
                   "image keeps its class)")
    p.add_argument("--val", type=_fraction, default=d.val, help="fraction of each class for validation")
    p.add_argument("--test", type=_fraction, default=d.test, help="fraction of each class for the test split")
    p.add_argument("--lr-schedule", choices=SCHEDULES, default=d.lr_schedule,
                   help="learning rate over a phase: constant, or cosine (one warm-up epoch, then decay to 1%%)")
    p.add_argument("--seed", type=nonneg_int, default=None,
                   help=f"seed for data order, augmentation and weight initialisation, and deterministic TensorFlow "
                        f"ops (same seed, same machine: same metrics; the deterministic ops cost a few percent of "
                        f"speed, so without --seed the run uses seed {d.seed} and TensorFlow's faster kernels)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished "
                   "epoch (its stored settings are used)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON at the end")
    p.add_argument("--verbose", action="store_true", help="also show what TensorFlow's C++ side logs")
    p.set_defaults(func=cmd_train)


def cmd_train(a: argparse.Namespace) -> int:
    from .quiet import native_logs_filtered

    with native_logs_filtered(a.verbose):
        return _train(a)


def _train(a: argparse.Namespace) -> int:
    from . import _tf  # noqa: F401  (fails early, naming the extra, on a runtime-only install)
    from .run import TrainConfig, train

    d = TrainConfig(data="")
    weights = None if a.weights in (None, "none") else a.weights
    cfg = TrainConfig(data=a.data, arch=a.arch, alpha=a.alpha, size=a.size, weights=weights, epochs=a.epochs,
                      fine_tune_epochs=a.fine_tune_epochs, fine_tune_layers=a.fine_tune_layers,
                      learning_rate=a.lr, fine_tune_learning_rate=a.fine_tune_lr, patience=a.patience,
                      batch=a.batch, dropout=a.dropout, flip=a.flip, val=a.val, test=a.test,
                      seed=d.seed if a.seed is None else a.seed, deterministic=a.seed is not None,
                      lr_schedule=a.lr_schedule, checkpoint_every=a.checkpoint_every)
    from .fit import worker_scratch

    try:
        with worker_scratch(a.out) as out:  # a TF_CONFIG worker that is not the chief writes nothing in --out
            m = train(out, cfg, resume=a.resume)
    except KeyboardInterrupt:
        print(f"edgecls: interrupted; the last finished epoch is kept - continue with: "
              f"edgecls train {a.data} --out {a.out} --resume", file=sys.stderr)
        return 130
    if out != a.out:
        print(f"edgecls: this worker took part in the training; the chief writes {a.out}", file=sys.stderr)
    elif a.json:
        print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "confusion"} if isinstance(v, dict) else v
                          for k, v in m.items()}))
    if out == a.out and not a.json:
        line = f"test top-1 {m['test']['top1']:.2%} ({m['test']['count']} images)"
        if "val" in m:
            line += f", validation {m['val']['top1']:.2%}"
        print(f"{Path(a.out) / 'model.keras'}: {line}; report: {Path(a.out) / 'report.md'}")
    return 0

