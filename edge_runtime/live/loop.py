"""The live loop every backend feeds: capture runs in its own thread and hands over only the
newest frame (a camera's stale frames are dropped and counted; a file's frames wait their turn);
scoring runs in the calling thread, as fast as the model allows, and every classified frame goes
to the same sinks (the output lines, the web view, the actions, mining, the summary).

What scores a frame is a ``Scorer``: ``ModelScorer`` runs a ``Classifier`` here (CPU, GPU, Edge
TPU); ``imx500.SensorScorer`` reads the scores the AI Camera's sensor computed for the frame."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from edge_runtime.bundle.classifier import Classifier
from edge_runtime.errors import EdgeclsError
from edge_runtime.live.frames import Source, SourceError
from edge_runtime.live.zones import Planned, ZoneSet
from edge_runtime.model.postprocess import Class, top_k


class Latest:
    """A one-frame mailbox: ``put`` replaces an unread frame (counted as dropped) or, for a
    source that must not drop, waits until it was read."""

    def __init__(self, drop: bool):
        self.drop = drop
        self.frame: Any = None  # (Frame, model input, preprocess ms)
        self.dropped = 0
        self.closed = False
        self.cv = threading.Condition()

    def put(self, f: Any, stop: threading.Event) -> None:
        with self.cv:
            while not self.drop and self.frame is not None and not stop.is_set():
                self.cv.wait(0.1)
            if self.frame is not None:
                self.dropped += 1
            self.frame = f
            self.cv.notify_all()

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def take(self, timeout: float = 0.5) -> Any:
        with self.cv:
            if self.frame is None and not self.closed:
                self.cv.wait(timeout)
            f, self.frame = self.frame, None
            self.cv.notify_all()
            return f


class Scorer:
    """What turns a frame into class scores. ``prepare`` runs in the capture thread (so it overlaps
    the previous frame's scoring); ``score`` runs in the loop and returns the frame's scores (None
    for a frame that carries none) and its stage times in ms."""

    labels: list[str]

    def prepare(self, rgb: np.ndarray) -> Any:
        return None

    def score(self, frame: Any, x: Any) -> tuple[np.ndarray | None, dict[str, float]]:
        raise NotImplementedError

    def between_frames(self) -> bool:
        """Called in the loop before each frame: a scorer that changes its model (live/swap.py)
        does so here, and says True; the loop then starts its smoothing afresh (the classes may differ)."""
        return False


class ModelScorer(Scorer):
    """A model run here by a ``Classifier``: resize and input conversion in ``prepare``, invoke in ``score``."""

    def __init__(self, clf: Classifier):
        self.clf, self.labels = clf, clf.labels

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        return self.clf.prepare(rgb)

    def score(self, frame: Any, x: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        t = time.perf_counter()
        raw = self.clf.infer(x)
        invoke_ms = (time.perf_counter() - t) * 1e3
        return self.clf.scores(raw), {"invoke": invoke_ms}


@dataclass
class Summary:
    source: str
    captured: int = 0
    classified: int = 0
    without_scores: int = 0  # frames a sensor sent without an output tensor (the IMX500)
    dropped: int = 0
    seconds: float = 0.0
    ended: str = "interrupted"  # "end of input", "interrupted", "max frames", or the camera's failure
    failed: bool = False
    errors: int = 0  # files of a folder source that could not be read (skipped)
    latency_ms: dict[str, float] = field(default_factory=dict)  # mean per stage
    actions: dict[str, Any] = field(default_factory=dict)  # Actions.stats(): sent, failed, dropped per sink
    zones: dict[str, dict[str, Any]] = field(default_factory=dict)  # per zone: classified, skipped, latency_ms

    @property
    def fps(self) -> float:
        return self.classified / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"summary": {"source": self.source, "captured": self.captured, "classified": self.classified,
                            **({"without_scores": self.without_scores} if self.without_scores else {}),
                            "dropped": self.dropped, "seconds": round(self.seconds, 3), "fps": round(self.fps, 2),
                            "ended": self.ended, "errors": self.errors, "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
                            **({"actions": self.actions} if self.actions else {}),
                            **({"zones": self.zones} if self.zones else {})}}


class Smoother:
    """Mean of the last ``k`` score vectors (k=1: no smoothing)."""

    def __init__(self, k: int):
        self.window: deque[np.ndarray] = deque(maxlen=max(1, k))

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        self.window.append(scores)
        return self.window[0] if len(self.window) == 1 else np.mean(self.window, axis=0)


def _capture(source: Source, box: Latest, stop: threading.Event, state: dict, retries: int,
             prepare: Callable[[np.ndarray], np.ndarray], on_error: Callable[[str], None] | None = None,
             prepare_frame: Callable[[Any], Any] | None = None) -> None:
    """Read frames and preprocess them (resize, input conversion) here, so that this work overlaps
    the previous frame's inference instead of adding to it. ``prepare_frame`` (zones) takes the
    whole ``Frame`` instead of its model-sized picture; its EdgeclsError (a zone outside the
    frame) ends the run."""
    failures = 0
    try:
        while not stop.is_set():
            try:
                f = source.read()
            except SourceError as e:
                failures += 1
                if not source.live or failures > retries:
                    state["ended"], state["failed"] = f"{e} (after {failures - 1} retries)", True
                    return
                time.sleep(0.5 * failures)
                try:
                    source.close()
                    source.open()
                except SourceError:
                    pass
                continue
            except EdgeclsError as e:  # not a SourceError: a file of a folder that cannot be decoded
                if source.live:
                    state["ended"], state["failed"] = str(e), True
                    return
                state["errors"] += 1  # one unreadable file of a folder: report it, go on, fail at the end
                if on_error is not None:
                    on_error(str(e))
                continue
            if f is None:
                state["ended"] = "end of input"
                return
            failures = 0
            state["captured"] += 1
            t = time.perf_counter()
            if prepare_frame is None:
                x = prepare(f.rgb)
            else:
                try:
                    x = prepare_frame(f)
                except EdgeclsError as e:
                    state["ended"], state["failed"] = str(e), True
                    return
            box.put((f, x, (time.perf_counter() - t) * 1e3), stop)
    finally:
        box.close()


class Watch:
    """What follows every classified frame besides the sinks (metrics, drift): ``frame`` runs in the
    loop after each classified frame and must take microseconds; ``run`` sets ``counts`` to read the
    capture side's totals (captured, dropped, errors) whenever the watcher is asked. With zones it
    runs once per classified zone, ``zone`` naming it (None: the whole frame)."""

    def __init__(self) -> None:
        self.counts: Callable[[], dict[str, int]] = lambda: {}

    def frame(self, f: Any, scores: np.ndarray, classes: list[Class], latency_ms: dict[str, float],
              zone: str | None = None) -> None:
        pass


@dataclass(frozen=True)
class Options:
    """What the loop reports and when it stops."""

    top: int = 3  # classes per frame
    threshold: float = 0.0  # report only classes scoring at least this
    on_change: bool = False  # report a frame only when its top label differs from the last one's
    smooth: int = 1  # average the scores of the last K frames
    max_frames: int | None = None  # stop after this many classified frames
    retries: int = 3  # reopen a failing camera this often before giving up


class _Loop:
    """The inference side: one classified frame per ``step``, its report, the running totals."""

    def __init__(self, scorer: Scorer, emit: Callable[[dict], None], opts: Options, summary: Summary,
                 view: Any, actions: Any, miner: Any = None, watch: Watch | None = None):
        self.scorer, self.emit, self.opts, self.summary = scorer, emit, opts, summary
        self.view, self.actions, self.miner, self.watch = view, actions, miner, watch
        self.smoother = Smoother(opts.smooth)
        self.totals: dict[str, float] = {}
        self.last_label: int | None = None
        self.t0 = time.perf_counter()

    @property
    def labels(self) -> list[str]:
        return self.scorer.labels  # a swapped model brings its own (live/swap.py)

    def swapped(self) -> None:
        """The scorer runs another model from this frame on: its scores are not averaged with the
        old one's, nor compared with its last label."""
        self.smoother = Smoother(self.opts.smooth)
        self.last_label = None

    def step(self, f: Any, x: np.ndarray, prep_ms: float) -> bool:
        """Classify one prepared frame, report it; False once ``max_frames`` are done."""
        raw_scores, stages = self.scorer.score(f, x)
        if raw_scores is None:
            self.summary.without_scores += 1
            return True
        t2 = time.perf_counter()
        scores = self.smoother(raw_scores)
        classes: list[Class] = top_k(scores, self.labels, self.opts.top, self.opts.threshold)
        if self.actions is not None:
            self.actions.observe(f.n, f.t, classes)  # never blocks: the actions run in their own threads
        if self.miner is not None:  # mining.Miner: queues uncertain frames, never blocks
            self.miner.observe(f, top_k(scores, self.labels, max(self.opts.top, 2)))
        lat = {"preprocess": prep_ms, **stages, "postprocess": (time.perf_counter() - t2) * 1e3,
               "age": (time.time() - f.t) * 1e3}  # age: capture to result
        self.summary.classified += 1
        for k, v in lat.items():
            self.totals[k] = self.totals.get(k, 0.0) + v
        if self.watch is not None:  # metrics and drift: the unsmoothed scores
            self.watch.frame(f, raw_scores, classes, lat)
        if self.view is not None:
            self.view.update(f, classes, lat, self.summary.classified / max(time.perf_counter() - self.t0, 1e-9))
        self._report(f, classes, lat)
        return not (self.opts.max_frames and self.summary.classified >= self.opts.max_frames)

    def _report(self, f: Any, classes: list[Class], lat: dict[str, float]) -> None:
        label = classes[0].index if classes else None
        if (not self.opts.on_change or label != self.last_label) and (classes or not self.opts.threshold):
            self.emit({"t": round(f.t, 6), "frame": f.n,
                       "classes": [{"index": c.index, "label": c.label, "score": round(c.score, 6)} for c in classes],
                       "latency_ms": {k: round(v, 3) for k, v in lat.items()}})
        self.last_label = label


class _ZoneLoop(_Loop):
    """The inference side with zones: per frame, each zone the trigger picked is classified on its
    own, with its own smoothing, ``--on-change`` and action state; the others are counted skipped."""

    def __init__(self, scorer: Scorer, emit: Callable[[dict], None], opts: Options, summary: Summary,
                 view: Any, actions: Any, miner: Any, zones: ZoneSet, watch: Watch | None = None):
        super().__init__(scorer, emit, opts, summary, view, actions, miner, watch)
        self.zones = zones
        self.smoothers = {n: Smoother(opts.smooth) for n in zones.names()}
        self.last_labels: dict[str, int | None] = {}
        self.zone_totals: dict[str, dict[str, float]] = {n: {} for n in zones.names()}
        if view is not None:
            view.zones_ref = self.status

    def step(self, f: Any, planned: list[Planned], prep_ms: float) -> bool:
        frame_lat: dict[str, float] = {}  # this frame's work, all zones together (the web view's charts)
        for p in planned:
            if p.x is None:
                p.state.skipped += 1
            else:
                for k, v in self._classify(f, p).items():
                    frame_lat[k] = max(frame_lat.get(k, 0.0), v) if k == "age" else frame_lat.get(k, 0.0) + v
        self.summary.classified += 1  # frames: --max-frames counts frames, zones count classifications
        if self.view is not None:
            self.view.update(f, [], frame_lat, self.summary.classified / max(time.perf_counter() - self.t0, 1e-9))
        return not (self.opts.max_frames and self.summary.classified >= self.opts.max_frames)

    def _classify(self, f: Any, p: Planned) -> dict[str, float]:
        name = p.state.zone.name
        raw_scores, stages = self.scorer.score(f, p.x)
        t2 = time.perf_counter()
        scores = self.smoothers[name](raw_scores)
        p.state.settle(int(np.argmax(scores)), p.moved)
        classes = top_k(scores, self.labels, self.opts.top, self.opts.threshold)
        if self.actions is not None:
            self.actions.observe(f.n, f.t, classes, zone=name)
        if self.miner is not None:  # the zone's crop is what the classifier saw, and what review sorts
            self.miner.observe(replace(f, rgb=p.crop, display=None), top_k(scores, self.labels, max(self.opts.top, 2)),
                               zone=name)
        lat = {"preprocess": p.prep_ms, **stages, "postprocess": (time.perf_counter() - t2) * 1e3,
               "age": (time.time() - f.t) * 1e3}
        if self.watch is not None:  # metrics and drift, per zone: the unsmoothed scores
            self.watch.frame(f, raw_scores, classes, lat, zone=name)
        p.state.classified += 1
        p.state.last = {"frame": f.n, "classes": [{"index": c.index, "label": c.label, "score": c.score}
                                                  for c in classes]}
        totals = self.zone_totals[name]
        for k, v in lat.items():
            totals[k] = totals.get(k, 0.0) + v
            self.totals[k] = self.totals.get(k, 0.0) + v
        label = classes[0].index if classes else None
        if (not self.opts.on_change or label != self.last_labels.get(name, -1)) and (classes or not self.opts.threshold):
            self.emit({"t": round(f.t, 6), "frame": f.n, "zone": name,
                       "classes": [{"index": c.index, "label": c.label, "score": round(c.score, 6)} for c in classes],
                       "latency_ms": {k: round(v, 3) for k, v in lat.items()}})
        self.last_labels[name] = label
        return lat

    def status(self) -> dict[str, Any]:
        """Per zone, for the web view: its box, counts and newest result."""
        out = {}
        for s in self.zones.states:
            out[s.zone.name] = {"box": list(s.box) if s.box else None, "picture": list(self.zones.size or ()),
                                **s.counts(), **s.last}
        return out

    def report(self) -> dict[str, dict[str, Any]]:
        """Per zone, for the summary: classified, skipped, mean latency per stage."""
        out = {}
        for s in self.zones.states:
            totals = self.zone_totals[s.zone.name]
            lat = {k: round(v / s.classified, 3) for k, v in totals.items()} if s.classified else {}
            out[s.zone.name] = {**s.counts(), "latency_ms": lat}
        return out

    def swapped(self) -> None:
        super().swapped()
        self.smoothers = {n: Smoother(self.opts.smooth) for n in self.smoothers}
        self.last_labels = {}


def run(scorer: Scorer | Classifier, source: Source, emit: Callable[[dict], None], options: Options | None = None, *,
        stop: threading.Event | None = None, view: Any = None, actions: Any = None, miner: Any = None,
        on_error: Callable[[str], None] | None = None, zones: ZoneSet | None = None,
        watch: Watch | None = None) -> Summary:
    """Classify ``source``'s frames until it ends, ``max_frames``, ``stop`` or Ctrl-C. ``emit`` gets
    one dict per reported frame: ``{"t", "frame", "classes", "latency_ms"}``. ``view`` (a web view)
    shows every frame; ``actions`` (an ``actions.Actions``) observes every classified frame and, like
    the source, is closed at the end. A file of a folder source that cannot be read is skipped,
    counted in ``Summary.errors`` and passed to ``on_error`` (from the capture thread). A
    ``Classifier`` is run here (``ModelScorer``). With ``zones`` each zone the trigger picks is
    classified on its own and ``emit`` gets one dict per zone, with ``"zone": NAME``. ``watch``
    (metrics, drift) sees every classified frame, or with zones every classified zone."""
    scorer = ModelScorer(scorer) if isinstance(scorer, Classifier) else scorer
    opts = options or Options()
    stop = stop or threading.Event()
    box = Latest(drop=source.live)
    state: dict[str, Any] = {"captured": 0, "ended": "interrupted", "failed": False, "errors": 0}
    summary = Summary(source.name)
    if zones is None:
        loop = _Loop(scorer, emit, opts, summary, view, actions, miner, watch)
        prepare_frame = None
    else:
        loop = _ZoneLoop(scorer, emit, opts, summary, view, actions, miner, zones, watch)
        prepare_frame = lambda f: zones.prepare(f, scorer.prepare)  # noqa: E731
    reason = None  # why the inference side stopped, if it did
    thread = threading.Thread(target=_capture, args=(source, box, stop, state, opts.retries, scorer.prepare, on_error,
                                                     prepare_frame), daemon=True, name="edgecls-capture")
    if view is not None:
        view.dropped_ref = lambda: box.dropped
        view.errors_ref = lambda: state["errors"]
        view.actions_ref = actions.stats if actions is not None else None
    if watch is not None:
        watch.counts = lambda: {"captured": state["captured"], "dropped": box.dropped, "errors": state["errors"]}
    thread.start()
    try:
        while not stop.is_set():
            item = box.take()
            if item is None:
                if box.closed and box.frame is None:
                    break
                continue
            if scorer.between_frames():
                loop.swapped()
            if not loop.step(*item):
                reason = "max frames"
                break
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        stop.set()
        thread.join(timeout=5)
        source.close()
        summary.seconds = time.perf_counter() - loop.t0  # before the actions' shutdown, which may wait for a webhook
        summary.actions = actions.close() if actions is not None else {}
    summary.captured, summary.dropped, summary.errors = state["captured"], box.dropped, state["errors"]
    summary.ended, summary.failed = (reason, False) if reason else (state["ended"], state["failed"])
    if isinstance(loop, _ZoneLoop):
        summary.zones = loop.report()
        done = sum(z["classified"] for z in summary.zones.values())
        summary.latency_ms = {k: v / done for k, v in loop.totals.items()} if done else {}
    else:
        summary.latency_ms = {k: v / summary.classified for k, v in loop.totals.items()} if summary.classified else {}
    return summary
