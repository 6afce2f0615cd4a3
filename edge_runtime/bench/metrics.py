"""Prometheus metrics of a running camera, and its drift: what ``/metrics`` serves.

``Monitor`` follows the loop (``live.loop.Watch``): per classified frame it feeds the drift window
and, with ``prometheus-client`` installed, observes the per-frame histograms and counters (a few
microseconds in all). Everything another part already counts (frames dropped, unreadable files,
actions, mined frames, the board's temperature) is read when Prometheus scrapes, by a collector,
never per frame. Each Monitor has its own ``CollectorRegistry`` (not the library's global one),
so two cameras in one process, or the tests, never share a counter.

The metrics (``edgecls_`` prefix; with ``--zone`` the per-frame ones, made in ``_PerFrame``, and
the drift gauges carry a ``zone`` label: each zone is classified, counted and drifts on its own):

    frames_total, frames_dropped_total, frames_captured_total, errors_total
    inference_seconds, preprocess_seconds (histograms), top_score (histogram of the top-1 score)
    label_total{label}            classified frames by their top-1 label (frames below --threshold: none)
    drift_score                   live/drift.py's statistic (absent without a reference or before it has frames)
    drift_top1_psi, drift_margin_psi, drift_label_shift, drift_window_frames
    actions_total{kind,outcome}   per sink (mqtt, webhook, exec, gpio): sent, failed, dropped
    mined_total                   uncertain frames saved (--save-uncertain)
    bundle_info{name,version,sha256,backend,edgecls}   1
    cpu_temperature_celsius, cpu_throttled{flag}        where the board reports them

``prometheus-client`` is optional (``edgecls[metrics]``): without it the camera still runs, drift
included, and ``/metrics`` answers 501 with ``HINT``; the library is imported only here, when a
Monitor is made."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edge_runtime import __version__
from edge_runtime.bundle.deployed import manifest_sha256
from edge_runtime.live.drift import STATISTIC, Drift, DriftScore, describe
from edge_runtime.live.loop import Watch
from edge_runtime.model.postprocess import Class
from edge_runtime.system import machine

HINT = "/metrics needs the prometheus-client package: pip install 'edgecls[metrics]'"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: from an Edge TPU's 2 ms to a Pi Zero's second.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0)


def bundle_identity(bundle: Any) -> dict[str, str]:
    """name, version (the deploy's version directory, else the bundle's folder) and sha256 (of the
    bundle's file list with their sha256s: the manifest ``edgecls deploy`` names versions by)."""
    if bundle is None:
        return {"name": "", "version": "", "sha256": ""}
    return {"name": bundle.name, "version": Path(bundle.path).resolve().name,
            "sha256": manifest_sha256(bundle.meta.get("files", {}))}


class Monitor(Watch):
    """Drift and, where ``prometheus-client`` is installed, the metrics of one camera.

    ``info``: the bundle identity and backend for ``edgecls_bundle_info``; ``drift``: the drift
    window (None: the bundle has no reference), or with zones one window per zone name (each zone
    is its own view of the scene, so each drifts on its own); ``zones``: the zone names, which
    give the per-frame metrics a ``zone`` label; ``actions``: ``Actions.stats``; ``mined``: the
    number of frames mining saved so far."""

    def __init__(self, info: dict[str, str], drift: Drift | Mapping[str, Drift] | None = None,
                 actions: Callable[[], dict[str, Any]] | None = None, mined: Callable[[], int] | None = None,
                 board: Callable[[], dict[str, Any]] = machine.board_state, zones: Sequence[str] = ()):
        super().__init__()
        self.info, self.actions, self.mined, self.board = info, actions, mined, board
        self.zones = tuple(zones)
        self.drifts: dict[str | None, Drift] = ({} if drift is None else {None: drift} if isinstance(drift, Drift)
                                                else dict(drift))
        if self.zones and self.drifts and set(self.drifts) != set(self.zones):
            raise ValueError(f"one drift window per zone: zones {list(self.zones)}, windows {list(self.drifts)}")
        try:
            self.prom: _PerFrame | None = _PerFrame(self)
            self.unavailable: str | None = None
        except ImportError:
            self.prom, self.unavailable = None, HINT

    def frame(self, f: Any, scores: np.ndarray, classes: list[Class], latency_ms: dict[str, float],
              zone: str | None = None) -> None:
        d = self.drifts.get(zone)
        if d is not None:
            d.observe(scores)
        if self.prom is not None:
            self.prom.frame(scores, classes, latency_ms, zone)

    def drift_scores(self) -> dict[str | None, DriftScore | None]:
        """Each window's score (None while it warms up), keyed by zone (None: the whole frame)."""
        return {z: d.score() for z, d in self.drifts.items()}

    def drift_json(self) -> dict[str, Any] | None:
        """The drift for the status JSON: None without a reference; ``score`` None while warming up.
        With zones, ``zones`` holds each zone's and ``score`` is the highest of them."""
        if not self.drifts:
            return None
        out = {z: s.to_json() if s is not None else {"score": None, "statistic": STATISTIC,
                                                     "frames": len(self.drifts[z].recent)}
               for z, s in self.drift_scores().items()}
        if None in out:
            return out[None]
        ready = [d["score"] for d in out.values() if d["score"] is not None]
        return {"score": max(ready) if ready else None, "statistic": STATISTIC, "zones": out}

    def describe_drift(self) -> list[str]:
        """The summary's drift lines: one, or one per zone."""
        return [describe(s) if z is None else f"zone {z}: {describe(s)}" for z, s in self.drift_scores().items()]

    def exposition(self) -> bytes:
        """The text format; ImportError (with ``HINT``) without prometheus-client."""
        if self.prom is None:
            raise ImportError(HINT)
        from prometheus_client import generate_latest

        return generate_latest(self.prom.registry)


class _PerFrame:
    """The registry: per-frame histograms and counters (with a ``zone`` label under zones), and a
    collector for the rest."""

    def __init__(self, monitor: Monitor):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = r = CollectorRegistry(auto_describe=True)
        zl = ["zone"] if monitor.zones else []
        frames = Counter("edgecls_frames", "Frames classified (with zones: classifications of the zone)", zl,
                         registry=r)
        inference = Histogram("edgecls_inference_seconds", "Model invoke time per frame", zl, registry=r,
                              buckets=LATENCY_BUCKETS)
        preprocess = Histogram("edgecls_preprocess_seconds", "Resize and input conversion time per frame", zl,
                               registry=r, buckets=LATENCY_BUCKETS)
        top_score = Histogram("edgecls_top_score", "Top-1 score of each classified frame (unsmoothed)", zl,
                              registry=r, buckets=SCORE_BUCKETS)
        self.label = Counter("edgecls_label", "Classified frames by top-1 label", zl + ["label"], registry=r)
        # The children, looked up once (labels() takes a lock and builds a key each time).
        metrics = (frames, inference, preprocess, top_score)
        self.per_zone: dict[str | None, tuple[Any, ...]] = (
            {z: tuple(m.labels(zone=z) for m in metrics) for z in monitor.zones} if monitor.zones else {None: metrics})
        self.children: dict[tuple[str | None, str], Any] = {}  # (zone, label) -> its counter
        r.register(_Scraped(monitor))

    def frame(self, scores: np.ndarray, classes: list[Class], lat: dict[str, float], zone: str | None = None) -> None:
        frames, inference, preprocess, top_score = self.per_zone[zone]
        frames.inc()
        if "invoke" in lat:
            inference.observe(lat["invoke"] / 1e3)
        if "preprocess" in lat:
            preprocess.observe(lat["preprocess"] / 1e3)
        top_score.observe(float(scores.max()))
        if classes:
            key = (zone, classes[0].label)
            child = self.children.get(key)
            if child is None:
                child = self.children[key] = (self.label.labels(label=key[1]) if zone is None
                                              else self.label.labels(zone=zone, label=key[1]))
            child.inc()


class _Scraped:
    """What is read at scrape time: counts kept elsewhere, drift, the bundle, the board."""

    def __init__(self, monitor: Monitor):
        self.m = monitor

    def describe(self) -> list:
        return []  # names vary with what the camera has (actions, a board): no duplicate checks at register

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, InfoMetricFamily

        m = self.m
        counts = m.counts()
        for name, key, text in (("edgecls_frames_dropped", "dropped", "Camera frames dropped because inference was "
                                 "busy (the newest frame wins)"),
                                ("edgecls_frames_captured", "captured", "Frames read from the source"),
                                ("edgecls_errors", "errors", "Frames the source could not read (skipped files)")):
            yield CounterMetricFamily(name, text, value=counts.get(key, 0))
        actions = CounterMetricFamily("edgecls_actions", "Action events by sink and outcome", labels=["kind", "outcome"])
        for kind, s in (m.actions() if m.actions else {}).items():
            if isinstance(s, dict):
                for outcome in ("sent", "failed", "dropped"):
                    actions.add_metric([kind, outcome], s.get(outcome, 0))
        yield actions
        yield CounterMetricFamily("edgecls_mined", "Uncertain frames saved for review (--save-uncertain)",
                                  value=m.mined() if m.mined else 0)
        yield InfoMetricFamily("edgecls_bundle", "The bundle this camera runs",
                               value={**m.info, "edgecls": __version__})
        yield from _drift(m)
        yield from _board(m.board())


def _drift(m: Monitor) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    scores = {z: s for z, s in m.drift_scores().items() if s is not None}
    if not scores:
        return
    labels = ["zone"] if m.zones else []
    for name, field, text in (
            ("edgecls_drift_score", "score", "Drift of the live top-1 scores and margins from the bundle's reference "
             "(bias-corrected population stability index; above 0.25: significant)"),
            ("edgecls_drift_top1_psi", "top1_psi", "PSI of the top-1 scores (bias-corrected)"),
            ("edgecls_drift_margin_psi", "margin_psi", "PSI of the top-1 minus top-2 margins (bias-corrected)"),
            ("edgecls_drift_label_shift", "label_shift", "Total variation distance of the predicted-label shares, 0..1"),
            ("edgecls_drift_window_frames", "frames", "Live frames in the drift window")):
        g = GaugeMetricFamily(name, text, labels=labels)
        for z, s in scores.items():
            g.add_metric([z] if z is not None else [], getattr(s, field))
        yield g


def _board(state: dict[str, Any]) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    if state.get("temperature_c") is not None:
        yield GaugeMetricFamily("edgecls_cpu_temperature_celsius", "SoC temperature", value=state["temperature_c"])
    if state.get("throttled") is not None:
        g = GaugeMetricFamily("edgecls_cpu_throttled", "Raspberry Pi firmware throttling flags (vcgencmd "
                              "get_throttled): 1 while set", labels=["flag"])
        current = set(state.get("throttle_flags") or [])
        for flag in machine.THROTTLE_BITS.values():
            g.add_metric([flag], 1.0 if flag in current else 0.0)
        yield g


# What a page's reader returns per metric: name, help, "gauge" or "counter", its label's name (None:
# unlabelled), and the values ({label value: value}; unlabelled: {"": value}).
PageMetric = tuple[str, str, str, "str | None", dict[str, float]]


def page_metrics(page: str, read: Callable[[], list[PageMetric]],
                 board: Callable[[], dict[str, Any]] = machine.board_state) -> Callable[[], tuple[bytes, str]]:
    """``/metrics`` of the collect and review pages (a web view's ``metrics_ref``): what ``read``
    reports of the dataset they fill, ``edgecls_page_info`` and the board, all read when Prometheus
    scrapes. The registry is made at the first scrape; without prometheus-client that scrape
    raises ImportError with ``HINT`` (the server answers 501) and the page works on."""
    made: list[Any] = []

    def expose() -> tuple[bytes, str]:
        try:
            from prometheus_client import CollectorRegistry, generate_latest
        except ImportError:
            raise ImportError(HINT) from None
        if not made:
            r = CollectorRegistry(auto_describe=False)
            r.register(_Page(page, read, board))
            made.append(r)
        return generate_latest(made[0]), CONTENT_TYPE

    return expose


class _Page:
    def __init__(self, page: str, read: Callable[[], list[PageMetric]], board: Callable[[], dict[str, Any]]):
        self.page, self.read, self.board = page, read, board

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        yield InfoMetricFamily("edgecls_page", "The page this process serves", value={"page": self.page,
                                                                                       "edgecls": __version__})
        for name, text, kind, label, values in self.read():
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                name, text, labels=[label] if label else [])
            for key, value in values.items():
                family.add_metric([key] if label else [], value)
            yield family
        yield from _board(self.board())
