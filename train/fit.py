"""The fit loop: phase 1 trains the head on cached backbone features, phase 2 fine-tunes the top
of the backbone on augmented photos. Every finished epoch is committed to ``checkpoint/`` so
that ``resume`` continues a run killed at any moment from its last finished epoch.

A checkpoint is a directory ``checkpoint/e-<phase>-<epoch>/`` holding the model (with its
optimizer state), the best weights so far and ``state.json``; the file ``checkpoint/LATEST``
names the committed one and is replaced atomically, so a kill leaves either the old or the
new checkpoint, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edge_runtime.errors import EdgeclsError

from ._tf import keras, tf
from .model import Built

LATEST = "LATEST"


class Diverged(EdgeclsError):
    """The loss became NaN (or infinite): the weights are lost, the last good checkpoint is kept."""


@dataclass
class PhaseConfig:
    epochs: int
    learning_rate: float
    patience: int
    checkpoint_every: float = 0.0  # seconds between commits (0: after every epoch); the last epoch always


@dataclass
class State:
    """What a checkpoint says about progress; ``history`` has one row per finished epoch."""

    phase: int = 1  # 1, 2, or 3 = training finished
    epoch: int = 0  # finished epochs in this phase
    best_val_loss: float = math.inf
    best_epoch: int = 0
    wait: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def from_json(d: dict[str, Any]) -> "State":
        s = State(**d)
        s.best_val_loss = math.inf if d["best_val_loss"] is None else d["best_val_loss"]
        return s

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["best_val_loss"] = None if math.isinf(self.best_val_loss) else self.best_val_loss
        return d


# --- checkpoints ---------------------------------------------------------------------------


def _is_chief() -> bool:
    cfg = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = cfg.get("task", {})
    return task.get("type", "chief") == "chief" or (task.get("type") == "worker" and task.get("index", 0) == 0
                                                   and "chief" not in cfg.get("cluster", {}))


def read_checkpoint(ckpt_dir: Path) -> tuple[State, Path] | None:
    """The committed checkpoint's state and directory, or None."""
    try:
        name = (ckpt_dir / LATEST).read_text().strip()
    except FileNotFoundError:
        return None
    d = ckpt_dir / name
    return State.from_json(json.loads((d / "state.json").read_text())), d


def commit_checkpoint(ckpt_dir: Path, state: State, model: Any, best_weights: Path | None) -> Path:
    """Write a new checkpoint directory, then switch ``LATEST`` to it, then drop the old ones.
    Returns the new checkpoint directory."""
    if not _is_chief():  # MultiWorkerMirroredStrategy: every worker saves, only the chief keeps it
        ckpt_dir = ckpt_dir.parent / f".worker-{os.getpid()}"
    name = f"e-{state.phase}-{state.epoch:04d}"
    tmp = ckpt_dir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.keras")
    if best_weights is not None and best_weights != tmp / "best.weights.h5":
        shutil.copyfile(best_weights, tmp / "best.weights.h5")
    (tmp / "state.json").write_text(json.dumps(state.to_json(), indent=1))
    final = ckpt_dir / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer = ckpt_dir / f".{LATEST}.tmp"
    pointer.write_text(name + "\n")
    os.replace(pointer, ckpt_dir / LATEST)  # the commit point
    for old in ckpt_dir.iterdir():
        if old.name not in (name, LATEST):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    return final


class _Checkpointer(keras.callbacks.Callback):
    """After each epoch: history row, early-stopping bookkeeping, best weights, commit. An epoch
    whose loss is NaN or infinite is not committed: training stops and ``diverged`` says at
    which epoch (1-based, in this phase)."""

    def __init__(self, ckpt_dir: Path, state: State, patience: int, best_from: Path | None, epochs: int = 0,
                 every: float = 0.0):
        super().__init__()
        self.ckpt_dir, self.state, self.patience = ckpt_dir, state, patience
        self.epochs, self.every = epochs, every
        self.committed = time.monotonic()
        self.best_file = best_from
        self.diverged = 0
        self.stopped = ""  # the early stop's reason, for the log after the progress line
        self.t0 = time.perf_counter()
        ckpt_dir.mkdir(parents=True, exist_ok=True)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not _finite((logs or {}).get("loss", 0.0)):
            self.model.stop_training = True  # the rest of the epoch cannot bring the weights back

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if not all(_finite(logs[k]) for k in ("loss", "val_loss") if k in logs):
            self.diverged = epoch + 1
            self.model.stop_training = True
            return
        s = self.state
        s.epoch = epoch + 1
        row = {"phase": s.phase, "epoch": s.epoch, "seconds": round(time.perf_counter() - self.t0, 2)}
        row.update({k: float(v) for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")})
        s.history.append(row)
        val_loss = float(logs.get("val_loss", logs.get("loss", math.inf)))
        staging = self.ckpt_dir / ".best.weights.h5"
        if val_loss < s.best_val_loss:
            s.best_val_loss, s.best_epoch, s.wait = val_loss, s.epoch, 0
            self.model.save_weights(staging)
            self.best_file = staging
        else:
            s.wait += 1
        if s.wait >= self.patience:
            self.stopped = (f"  early stop: val_loss has not improved for {s.wait} epochs (best "
                            f"{s.best_val_loss:.4f} at epoch {s.best_epoch})")
            self.model.stop_training = True
        last = s.epoch >= self.epochs or self.model.stop_training
        if self.every and not last and time.monotonic() - self.committed < self.every:
            return  # committed with a later epoch (history and best weights included)
        self.best_file = commit_checkpoint(self.ckpt_dir, s, self.model, self.best_file) / "best.weights.h5"
        self.committed = time.monotonic()


def _finite(x: Any) -> bool:
    return math.isfinite(float(x))


class _Progress(keras.callbacks.Callback):
    """One line per epoch with loss, accuracy and time left; on a terminal it is one line that
    updates in place (carriage return), also between batches."""

    def __init__(self, stream: Any = None):
        super().__init__()
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.epoch, self.done, self.t_train, self.t_epoch = 0, 0, 0.0, 0.0
        self.t_batch, self.step_time, self.steps_timed, self.tail = 0.0, 0.0, 0, 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.t_train = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch, self.t_epoch = epoch + 1, time.perf_counter()
        self.t_batch = self.t_epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now = time.perf_counter()
        if self.done or batch:  # the very first step also traces the graphs: not a step's pace
            self.step_time += now - self.t_batch
            self.steps_timed += 1
        self.t_batch = now
        steps = self.params.get("steps") or 0
        if self.tty and steps:
            self._show(f"batch {batch + 1}/{steps}", logs or {}, self._left(partial=(batch + 1) / steps))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.done += 1
        self.tail = time.perf_counter() - self.t_batch  # the validation after the last step
        self._show(f"{time.perf_counter() - self.t_epoch:.1f} s", logs or {}, self._left(), end="" if self.tty else "\n")

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.tty and self.done:
            print(file=self.stream, flush=True)

    def _left(self, partial: float = 0.0) -> float:
        """Seconds left to the phase's last epoch (early stopping may end it sooner): the epochs
        to go at the pace of the steps so far (the very first step, which also traces the graphs,
        left out: it would make the estimate after epoch 1 several times too long) plus the last
        epoch's validation."""
        steps = self.params.get("steps") or 0
        remaining = self.params.get("epochs", self.epoch) - self.epoch + (1 - partial if partial else 0)
        if steps and self.steps_timed:
            return (self.step_time / self.steps_timed * steps + self.tail) * remaining
        done = self.done + partial
        return (time.perf_counter() - self.t_train) / done * remaining if done else math.nan

    def _show(self, where: str, logs: dict, left: float, end: str = "") -> None:
        parts = [f"Epoch {self.epoch}/{self.params.get('epochs', '?')}", where]
        for k, name in (("loss", "loss"), ("accuracy", "accuracy"), ("val_loss", "val loss"),
                        ("val_accuracy", "val accuracy")):
            if k in logs:
                v = float(logs[k])
                parts.append(f"{name} {v:.1%}" if "accuracy" in k else f"{name} {v:.4f}")
        if math.isfinite(left):
            parts.append(f"{_duration(left)} left")
        line = "  ".join(parts)
        print(("\r" + line + "\x1b[K") if self.tty else line, end=end, file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def run_phase(model: Any, train: Any, val: Any, cfg: PhaseConfig, state: State, ckpt_dir: Path,
              best_from: Path | None, log: Callable[[str], None], steps: int | None = None) -> Path | None:
    """Fit ``model`` from ``state.epoch`` up to ``cfg.epochs`` (or an early stop), committing a
    checkpoint after every epoch (or, with ``cfg.checkpoint_every``, at most that often, and always
    after the last). Returns the best weights file; raises ``Diverged`` when the
    loss becomes NaN (the last good checkpoint stays committed)."""
    if state.epoch >= cfg.epochs or (state.wait >= cfg.patience and state.epoch > 0):
        return best_from
    cb = _Checkpointer(ckpt_dir, state, cfg.patience, best_from, cfg.epochs, cfg.checkpoint_every)
    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _build_from_local_batch(model)
    model.fit(train, validation_data=val, epochs=cfg.epochs, initial_epoch=state.epoch, callbacks=[_Progress(), cb],
              verbose=0, steps_per_epoch=steps, shuffle=False)  # the dataset shuffles
    if cb.diverged:
        raise Diverged(_diverged_message(ckpt_dir, state.phase, cb.diverged))
    if cb.stopped:
        log(cb.stopped)
    return cb.best_file


def _diverged_message(ckpt_dir: Path, phase: int, epoch: int) -> str:
    found = read_checkpoint(ckpt_dir)
    if found:
        s, where = found
        at = f"phase {s.phase - 1} done" if s.epoch == 0 and s.phase > 1 else f"phase {s.phase}, epoch {s.epoch}"
        kept = f"the last good checkpoint ({at}) is kept in {where}"
    else:
        kept = "no epoch had finished, so there is no checkpoint"
    return (f"the loss became NaN at epoch {epoch} (phase {phase}); {kept}; start a new run with a lower learning "
            "rate (--lr for phase 1, --fine-tune-lr for phase 2)")


# --- data pipelines ------------------------------------------------------------------------


def augmenter(flip: bool, seed: int = 0) -> Any:
    """Random crop/zoom, rotation, brightness and contrast on 0..255 pixels; flips only when
    asked (they change the meaning of some classes: hands, digits, arrows)."""
    layers = [
        keras.layers.RandomZoom((-0.2, 0.1), fill_mode="reflect", seed=seed),
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 1),
        keras.layers.RandomRotation(0.04, fill_mode="reflect", seed=seed + 2),  # about +-15 degrees
        keras.layers.RandomBrightness(0.2, value_range=(0, 255), seed=seed + 3),
        keras.layers.RandomContrast(0.2, value_range=(0, 255), seed=seed + 4),
    ]
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 5))
    return keras.Sequential(layers, name="augment")


def dataset(x: np.ndarray, y: np.ndarray, batch: int, shuffle: bool = False, augment: Any = None,
            seed: int = 0) -> Any:
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(x), np.asarray(y)))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch)
    if augment is not None:
        ds = ds.map(lambda a, b: (tf.clip_by_value(augment(tf.cast(a, tf.float32), training=True), 0, 255), b),
                    num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b))
    return ds.prefetch(tf.data.AUTOTUNE)


def steps(n: int, batch: int) -> int:
    """Batches in an epoch of ``n`` examples."""
    return max(1, -(-n // batch))


def learning_rate(peak: float, schedule: str, epochs: int, steps_per_epoch: int) -> Any:
    """``peak`` throughout ("constant"), or "cosine": a linear warm-up from peak/10 over the first
    epoch, then cosine decay to 1% of the peak at the last one. From scratch, the cosine schedule
    reaches the constant one's accuracy in about two thirds of the epochs (the demo's digits). The
    step count lives in the optimizer's state, so a resumed run continues the same curve."""
    if schedule not in ("constant", "cosine"):  # train.run.SCHEDULES, checked before a run starts
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; valid: constant, cosine")
    if schedule == "constant" or epochs < 2:
        return peak
    return keras.optimizers.schedules.CosineDecay(peak / 10, decay_steps=(epochs - 1) * steps_per_epoch, alpha=0.01,
                                                  warmup_target=peak, warmup_steps=steps_per_epoch)


def compile_model(model: Any, learning_rate: Any) -> None:
    """Adam on cross-entropy, accuracy reported as ``accuracy``. The metric's and the optimizer's
    variables are made here, eagerly: made inside the first training step (Keras's default for
    a metric named by a string and an optimizer not yet built) they make TensorFlow trace that
    step twice, about 9 of the demo's 18 seconds of tracing on a 2-core machine."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    model.optimizer.build(model.trainable_variables)


@contextlib.contextmanager
def worker_scratch(out: str | os.PathLike[str]) -> Iterator[str | os.PathLike[str]]:
    """Multi-machine training (TF_CONFIG): every worker runs the whole of ``train`` (the
    collectives need them all), but only the chief writes the run directory; any other worker
    works in a temporary directory, removed at the end. Yields the directory to train in."""
    if not os.environ.get("TF_CONFIG") or _is_chief():
        yield out
        return
    scratch = tempfile.mkdtemp(prefix="edgecls-worker-")
    try:
        yield os.path.join(scratch, "run")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _build_from_local_batch(model: Any) -> None:
    """Keras 3 (3.15 included) builds a model before ``fit`` from one batch that it averages
    across replicas with ``strategy.reduce``, which fails under MultiWorkerMirroredStrategy
    (keras-team/keras#20585). Building only needs shapes: use this worker's own part of the batch."""
    def build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None:
            for _, _, it in iterator:
                local = self.distribute_strategy.experimental_local_results
                data_batch = tf.nest.map_structure(
                    lambda x: local(x)[0] if isinstance(x, tf.distribute.DistributedValues) else x, next(it))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(build, model)
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "edgecls_multi_worker", False):
        return
    original = trainer.reduce_per_replica

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        # The same bug for the step's logs: scalars "averaged" along an axis 0 they do not have.
        if reduction in ("mean", "auto") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.edgecls_multi_worker = True  # type: ignore[attr-defined]
    trainer.reduce_per_replica = reduce_per_replica


def pick_strategy() -> Any:
    """MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster, MirroredStrategy over
    several visible GPUs, else TensorFlow's default (one device)."""
    if os.environ.get("TF_CONFIG"):
        s = tf.distribute.MultiWorkerMirroredStrategy()
        task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
        print(f"multi-worker training: {task.get('type', 'chief')} {task.get('index', 0)}"
              f"{' (chief)' if _is_chief() else ''}, {s.num_replicas_in_sync} replicas in sync",
              file=sys.stderr, flush=True)
        return s
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([g.name for g in gpus])
    return tf.distribute.get_strategy()


def features_of(built: Built, x: np.ndarray, batch: int) -> np.ndarray:
    return built.features.predict(dataset(x, np.zeros(len(x), np.int32), batch), verbose=0)
