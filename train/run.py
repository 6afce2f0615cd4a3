"""``edgecls train``: a folder of photos in, a run directory out.

    runs/NAME/
      config.json        what was asked (``--resume`` reads it back)
      dataset.json       classes, counts per split, fingerprint, warnings
      splits/            train.txt, val.txt, test.txt, skipped.txt (file <TAB> reason)
      labels.txt         one label a line
      preprocessing.json the input contract convert/ writes into the bundle
      checkpoint/        the last finished epoch (see fit.py)
      cache/             decoded pixels and phase-1 features
      model.keras        the trained model (best validation loss)
      history.json, metrics.json, report.md, curves.png, confusion.png
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edge_runtime.errors import EdgeclsError
from edge_runtime.model.contract import InputContract

from . import data

PREPROCESSING = "preprocessing.json"
RESIZE = "bilinear"  # TensorFlow 2's tf.image.resize, bit-exact in the runtime
SCHEDULES = ("constant", "cosine")  # fit.learning_rate
DECODE = "draft"  # JPEGs at least twice the model's size decode DCT-scaled, here and on the device


class RunError(EdgeclsError):
    """A run directory that cannot be started or resumed."""


@dataclass
class TrainConfig:
    data: str
    arch: str = "mobilenet_v1"
    alpha: float = 0.25
    size: int = 128
    weights: str | None = "imagenet"
    epochs: int = 30  # phase 1: the head on cached features (cheap)
    fine_tune_epochs: int = 25  # phase 2: the top of the backbone on augmented photos
    fine_tune_layers: int = -1  # backbone layers unfrozen in phase 2; -1 = all
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 2e-4
    patience: int = 6
    batch: int = 32
    dropout: float = 0.2
    flip: bool = False
    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    deterministic: bool = False  # TensorFlow's deterministic ops (train/seeding.py); --seed turns them on
    lr_schedule: str = "constant"  # or "cosine": one warm-up epoch, then cosine decay (fit.learning_rate)
    checkpoint_every: float = 0.0  # seconds between checkpoint commits; 0: after every epoch

    @staticmethod
    def load(path: Path) -> "TrainConfig":
        d = json.loads(path.read_text())
        known = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in d.items() if k in known})


def _progress(what: str) -> Callable[[int, int], None]:
    tty = sys.stderr.isatty()
    step = 0

    def report(i: int, n: int) -> None:
        nonlocal step
        if tty:
            print(f"\r{what} {i}/{n}", end="\n" if i == n else "", file=sys.stderr, flush=True)
        elif i == n or i * 4 // n > step:
            step = i * 4 // n
            print(f"{what} {i}/{n}", file=sys.stderr, flush=True)
    return report


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Clock:
    """Wall and CPU seconds per named stage (``with clock("decode"): ...``); a stage entered
    twice adds up. CPU seconds count every thread of the process, so on a shared machine they
    say what a stage costs when wall seconds say mostly how busy the machine was."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        w, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[stage] = self.wall.get(stage, 0.0) + time.perf_counter() - w
            self.cpu[stage] = self.cpu.get(stage, 0.0) + time.process_time() - c

    def to_json(self) -> dict[str, dict[str, float]]:
        return {k: {"wall": round(v, 2), "cpu": round(self.cpu[k], 2)} for k, v in self.wall.items()}


def open_run(out: Path, cfg: TrainConfig, resume: bool) -> TrainConfig:
    """The settings of the run in ``out``: ``cfg``, or on ``resume`` the stored ones. Refuses to
    overwrite a run unless resuming. Writes nothing (``start_run`` does, once the data checks out)."""
    if resume:
        if not (out / "config.json").exists():
            raise RunError(f"{out}: no run to resume here (no config.json); start it without --resume")
        stored = TrainConfig.load(out / "config.json")
        log(f"resuming {out} ({stored.arch} alpha {stored.alpha:g} at {stored.size} px on {stored.data})")
        return stored
    if out.exists() and any(out.iterdir()) and not _never_started(out):
        raise RunError(f"{out}: already holds a run; continue it with --resume, or pass another --out")
    return cfg


def _never_started(out: Path) -> bool:
    """Only a config.json: what a failed start of older versions left (it refused its dataset
    after writing the settings); nothing in it is worth keeping."""
    return [p.name for p in out.iterdir()] == ["config.json"]


def start_run(out: Path, cfg: TrainConfig) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".config.json.tmp"
    tmp.write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    os.replace(tmp, out / "config.json")


def check_inputs(cfg: TrainConfig) -> data.Dataset:
    """The weights file and the dataset, checked before anything is written: a typo in a path
    leaves no run folder behind."""
    if cfg.lr_schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {cfg.lr_schedule!r}; valid: {', '.join(SCHEDULES)}")
    if cfg.weights not in (None, "imagenet", "none") and not Path(cfg.weights).is_file():
        raise RunError(f"{cfg.weights}: no such weights file; pass a Keras weights file of the backbone "
                       "without its top, 'imagenet' (downloads) or 'none'")
    ds = data.scan(cfg.data, cfg.val, cfg.test, progress=_progress("checking images"))
    for name in ("train", "test"):
        if not ds.split(name):
            raise RunError(f"{cfg.data}: the {name} split is empty ({len(ds.samples)} usable images); add photos")
    return ds


@dataclass
class _Session:
    """One training session's state, handed from step to step."""

    out: Path
    cfg: TrainConfig
    ds: data.Dataset
    pixels: dict[str, np.ndarray | None]
    labels: dict[str, np.ndarray]
    weights: str | None
    state: Any = None  # fit.State
    ckpt_path: Path | None = None
    clock: Clock = field(default_factory=Clock)

    @property
    def ckpt(self) -> Path:
        return self.out / "checkpoint"


def train(out: str | os.PathLike[str], cfg: TrainConfig, resume: bool = False, strategy: Any = None) -> dict:
    """Train (or resume) the run in ``out``: check and split the dataset, phase 1 (the head on
    cached backbone features), phase 2 (fine-tune), evaluate and report. Returns its metrics."""
    out = Path(out)
    cfg = open_run(out, cfg, resume)
    clock = Clock()
    with clock("check photos"):
        ds = check_inputs(cfg)
    if not resume:
        start_run(out, cfg)
    with clock("decode photos"):
        session = load_dataset(out, cfg, ds)
    session.clock = clock

    with clock("start TensorFlow"):
        from . import fit, model as modelmod  # TensorFlow from here on
        from .seeding import seed_everything

        log(seed_everything(cfg.seed, cfg.deterministic))
        strategy = strategy or fit.pick_strategy()
    found = fit.read_checkpoint(session.ckpt)
    session.state, session.ckpt_path = found if found else (fit.State(), None)
    if resume and found:
        log(f"resuming after phase {session.state.phase} epoch {session.state.epoch} "
            f"({len(session.state.history)} epochs done)")
    t_start = time.perf_counter()
    with clock("build model"), strategy.scope():
        built = modelmod.build(cfg.arch, len(session.ds.classes), cfg.size, cfg.alpha, session.weights, cfg.dropout)
    if session.weights is None and session.state.phase == 1:
        session.state.phase = 2  # from scratch: nothing frozen to train a head on
    if session.state.phase == 1:
        with clock("phase 1 (head)"):
            train_head(session, built, strategy)
    if session.state.phase == 2:
        with clock("phase 2 (fine-tune)"):
            fine_tune(session, built, strategy)
    else:
        restore(built.model, session.ckpt_path / "model.keras")  # type: ignore[operator]
    return finish(session, built, time.perf_counter() - t_start)


def load_dataset(out: Path, cfg: TrainConfig, ds: data.Dataset) -> _Session:
    """Write the run's dataset files for the scanned photos ``ds``, decode every split once."""
    for w in ds.warnings:
        log(f"warning: {w}")
    for rel, why in ds.skipped:
        log(f"skipped {rel}: {why}")
    data.write_lists(ds, out / "splits")
    (out / "dataset.json").write_text(json.dumps(ds.summary(), indent=2) + "\n")
    (out / "labels.txt").write_text("".join(c + "\n" for c in ds.classes), encoding="utf-8")
    (out / PREPROCESSING).write_text(json.dumps(preprocessing_spec(cfg).to_json(), indent=2) + "\n")
    splits = {name: ds.split(name) for name in data.SPLITS}
    log(f"{len(ds.classes)} classes, " + ", ".join(f"{len(v)} {k}" for k, v in splits.items())
        + f" images, {len(ds.skipped)} skipped")
    pixels = {name: data.cached_pixels(s, cfg.size, cfg.size, RESIZE, out / "cache", ds.fingerprint,
                                       progress=_progress(f"decoding {name}"), decode_mode=DECODE) if s else None
              for name, s in splits.items()}
    labels = {name: np.array([x.label for x in s], np.int32) for name, s in splits.items()}
    weights = None if cfg.weights in (None, "none") else cfg.weights
    return _Session(out, cfg, ds, pixels, labels, weights)


def train_head(s: _Session, built: Any, strategy: Any) -> None:
    """Phase 1: the classification head on backbone features computed once."""
    from . import fit
    from . import model as modelmod

    cfg, state = s.cfg, s.state
    feats = {k: _cached_features(built, v, s.out / "cache", cfg, k, s.ds.fingerprint)
             for k, v in s.pixels.items() if v is not None and k != "test"}
    with strategy.scope():
        if s.ckpt_path:
            head = keras_load(s.ckpt_path / "model.keras")
        else:
            head = modelmod.head(built.feature_dim, len(s.ds.classes), cfg.dropout)
            fit.compile_model(head, fit.learning_rate(cfg.learning_rate, cfg.lr_schedule, cfg.epochs,
                                                      fit.steps(len(feats["train"]), cfg.batch)))
    log(f"phase 1: training the head on {built.feature_dim} cached features, up to {cfg.epochs} epochs")
    tr = fit.dataset(feats["train"], s.labels["train"], cfg.batch, shuffle=True, seed=cfg.seed)
    va = fit.dataset(feats["val"], s.labels["val"], cfg.batch) if "val" in feats else None
    best = fit.run_phase(head, tr, va, fit.PhaseConfig(cfg.epochs, cfg.learning_rate, cfg.patience, cfg.checkpoint_every),
                         state, s.ckpt, s.ckpt_path and s.ckpt_path / "best.weights.h5", log)
    if best:
        head.load_weights(best)
    built.model.get_layer("predictions").set_weights(head.get_layer("predictions").get_weights())
    state.phase, state.epoch, state.wait, state.best_epoch = 2, 0, 0, 0
    state.best_val_loss = float("inf")
    s.ckpt_path = fit.commit_checkpoint(s.ckpt, state, built.model, None)


def fine_tune(s: _Session, built: Any, strategy: Any) -> None:
    """Phase 2: fine-tune the top of the backbone (all of it from scratch) on augmented photos."""
    from . import fit
    from . import model as modelmod

    cfg = s.cfg
    with strategy.scope():
        n = modelmod.set_trainable(built, cfg.fine_tune_layers if s.weights else -1)
        if s.weights:
            modelmod.freeze_batchnorm(built)
        lr = cfg.fine_tune_learning_rate if s.weights else cfg.learning_rate
        fit.compile_model(built.model, fit.learning_rate(lr, cfg.lr_schedule, cfg.fine_tune_epochs,
                                                         fit.steps(len(s.labels["train"]), cfg.batch)))
        if s.ckpt_path:
            restore(built.model, s.ckpt_path / "model.keras")
    log(f"phase 2: {'fine-tuning' if s.weights else 'training from scratch'} {n} backbone layers at "
        f"learning rate {lr:g}{' (cosine schedule)' if cfg.lr_schedule == 'cosine' else ''}, up to "
        f"{cfg.fine_tune_epochs} epochs")
    tr = fit.dataset(s.pixels["train"], s.labels["train"], cfg.batch, shuffle=True,
                     augment=fit.augmenter(cfg.flip, cfg.seed), seed=cfg.seed)
    va = fit.dataset(s.pixels["val"], s.labels["val"], cfg.batch) if s.pixels["val"] is not None else None
    best_prev = s.ckpt_path / "best.weights.h5" if s.ckpt_path and (s.ckpt_path / "best.weights.h5").exists() else None
    best = fit.run_phase(built.model, tr, va, fit.PhaseConfig(cfg.fine_tune_epochs, lr, cfg.patience, cfg.checkpoint_every),
                         s.state, s.ckpt, best_prev, log)
    if best:
        built.model.load_weights(best)
    s.state.phase, s.state.epoch = 3, 0
    fit.commit_checkpoint(s.ckpt, s.state, built.model, None)


def finish(s: _Session, built: Any, train_seconds: float) -> dict:
    """Evaluate on test and validation, save the model atomically, write the reports."""
    from . import report  # matplotlib

    with s.clock("evaluate"):
        metrics = {name: evaluate(built.model, s.pixels[name], s.labels[name], s.ds.classes, s.cfg.batch)
                   for name in ("test", "val") if s.pixels[name] is not None}
    metrics["train_seconds_this_session"] = round(train_seconds, 1)
    metrics["epochs"] = {p: sum(1 for r in s.state.history if r["phase"] == p) for p in (1, 2)}
    with s.clock("save and report"):
        built.model.save(s.out / ".model.keras.tmp.keras")
        os.replace(s.out / ".model.keras.tmp.keras", s.out / "model.keras")
        (s.out / "history.json").write_text(json.dumps(s.state.history, indent=1) + "\n")
        report.write(s.out, s.cfg, s.ds, s.state.history, metrics)
    metrics["seconds_this_session"] = s.clock.to_json()
    (s.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def preprocessing_spec(cfg: TrainConfig) -> InputContract:
    """The input contract of DESIGN.md for this run's model: raw pixels in, normalization in the graph."""
    return InputContract(cfg.size, cfg.size, resize=RESIZE, decode=DECODE,
                         normalization_in_graph="Rescaling(1/127.5, offset=-1) to [-1, 1]")


def _cached_features(built: Any, pixels: np.ndarray, cache: Path, cfg: TrainConfig, name: str, fp: str) -> np.ndarray:
    from . import fit

    path = cache / f"features-{name}-{cfg.arch}-{cfg.alpha:g}-{cfg.size}-{fp[:12]}.npy"
    if path.exists():
        return np.load(path)
    t = time.perf_counter()
    f = fit.features_of(built, pixels, cfg.batch)
    log(f"computed {len(f)} {name} feature vectors once ({len(f) / (time.perf_counter() - t):.0f} images/s)")
    np.save(path.with_suffix(".part.npy"), f)
    os.replace(path.with_suffix(".part.npy"), path)
    return f


def keras_load(path: Path) -> Any:
    from ._tf import keras

    return keras.models.load_model(path)


def restore(model: Any, path: Path) -> None:
    """Weights and optimizer state of a checkpoint into an identically built ``model`` (weights
    alone into a model not compiled, as a finished run's is when it is resumed again)."""
    saved = keras_load(path)
    model.set_weights(saved.get_weights())
    if getattr(model, "optimizer", None) is None:
        return
    if getattr(saved, "optimizer", None) is not None and saved.optimizer.variables:
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        if len(model.optimizer.variables) == len(saved.optimizer.variables):
            for mine, theirs in zip(model.optimizer.variables, saved.optimizer.variables):
                mine.assign(theirs)


def evaluate(model: Any, x: np.ndarray, y: np.ndarray, classes: list[str], batch: int) -> dict:
    """Top-1 overall and per class, and the confusion matrix (rows: true, columns: predicted)."""
    from .fit import dataset

    pred = np.argmax(model.predict(dataset(x, y, batch), verbose=0), axis=1)
    return summarize(pred, y, classes)


def summarize(pred: np.ndarray, y: np.ndarray, classes: list[str]) -> dict:
    n = len(classes)
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (y, pred), 1)
    per = {c: (round(float(cm[i, i] / cm[i].sum()), 4) if cm[i].sum() else None) for i, c in enumerate(classes)}
    return {"top1": round(float(np.mean(pred == y)), 4), "count": int(len(y)), "per_class": per,
            "confusion": cm.tolist()}
