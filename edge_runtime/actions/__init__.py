"""Act on what the camera sees: MQTT (with Home Assistant discovery), webhooks, commands and GPIO.

The camera loop calls ``Actions.observe(frame, t, classes)`` once per classified frame. That call
only compares the top label with the current one and, on a change, puts the new state in each
sink's bounded queue: it never waits for a network, a process or a pin. A label becomes current
when it has led for ``hold`` seconds (frame time) with a score of at least ``min_score``; below
``min_score`` the current label is None ("none"). Each sink (``Sink``: ``start``, ``handle``,
``stop``) runs in its own thread, drops the oldest queued change when it falls behind, and counts
what it sent, what failed and what it dropped: ``stats()``.

With zones (``Actions(..., zones=["door", "spot"])``) the loop calls ``observe(..., zone=NAME)`` for
each zone it classified; every zone has its own current label, hold and changes, and each change it
hands the sinks is a ``State`` with its ``zone`` (MQTT: one state topic and one Home Assistant
entity per zone; GPIO: ``PIN=ZONE:LABEL``; webhook JSON and ``EDGECLS_ZONE`` for exec).

    acts = Actions(ActionOptions(mqtt="mqtt://broker/kitchen", ha_binary=["cat"]), labels).start()
    ... acts.observe(frame.n, frame.t, classes) ...
    acts.close()
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Sequence

from edge_runtime.actions.base import Log, Sink, State, binary_rules, stderr_log
from edge_runtime.model.postprocess import Class

__all__ = ["ActionOptions", "Actions", "Sink", "State", "format_stats"]


@dataclass
class ActionOptions:
    """The ``edgecls camera`` options that set up actions (the same names as the CLI's)."""

    mqtt: str | None = None
    mqtt_ca: str | None = None
    mqtt_interval: float = 30.0
    ha_prefix: str = "homeassistant"
    ha_binary: list[str] = field(default_factory=list)
    webhook: str | None = None
    webhook_timeout: float = 2.0
    exec: str | None = None
    exec_timeout: float = 10.0
    gpio: list[str] = field(default_factory=list)
    hold: float = 0.0
    min_score: float = 0.0

    @classmethod
    def from_namespace(cls, ns: Any) -> "ActionOptions":
        """From an argparse namespace (missing attributes keep their defaults)."""
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls) if getattr(ns, f.name, None) is not None})

    @property
    def wanted(self) -> bool:
        return bool(self.mqtt or self.webhook or self.exec or self.gpio)


def _check_label(option: str, label: str, labels: Sequence[str]) -> None:
    if label not in labels:
        shown = ", ".join(labels[:8]) + (f", ... ({len(labels)} in all)" if len(labels) > 8 else "")
        raise ValueError(f"{option} {label!r}: not a label of this model (labels are: {shown}); "
                         "labels are matched exactly, spaces and case included")


class Actions:
    """The sinks that ``options`` ask for, fed by ``observe`` from the camera loop."""

    def __init__(self, options: ActionOptions, labels: Sequence[str], *, model: str = "classifier",
                 log: Log = stderr_log, zones: Sequence[str] = ()):
        o = self.options = options
        if o.hold < 0:
            raise ValueError("--hold must be 0 seconds or more")
        if not 0 <= o.min_score <= 1:
            raise ValueError("--min-score must be from 0 to 1")
        if o.mqtt_interval < 0:
            raise ValueError("--mqtt-interval must be 0 (only on changes) or more seconds")
        if o.ha_binary and not o.mqtt:
            raise ValueError("--ha-binary needs --mqtt (Home Assistant discovers its sensors through MQTT)")
        for _, label in binary_rules(o.ha_binary, zones):
            _check_label("--ha-binary", label, labels)
        self.log = log
        self.sinks: list[Sink] = []
        self.zones = list(zones)
        self._by_zone: dict[str | None, _Tracker] = {}
        self._trackers: list[_Tracker] = []  # replaced, never mutated: the sinks' threads read it
        for z in self.zones:
            self._by_zone[z] = _Tracker(z, o.min_score, o.hold)
        self._trackers = list(self._by_zone.values())
        self._closed = False
        self._lock = threading.Lock()
        from edge_runtime.actions import gpio  # no optional import at module level: gpiozero loads in GpioSink.open
        pins = []
        for spec in o.gpio:
            pin, rule = gpio.parse(spec)
            zone, label = zoned(rule, self.zones, f"--gpio {pin}=")
            _check_label("--gpio", label, labels)
            pins.append((pin, label, zone))
        if o.mqtt:
            from edge_runtime.actions.mqtt import MqttSink
            self.sinks.append(MqttSink(o.mqtt, snapshot=self.snapshots, ca=o.mqtt_ca, interval=o.mqtt_interval,
                                       ha_prefix=o.ha_prefix, ha_binary=o.ha_binary, model=model, log=log,
                                       zones=self.zones))
        if o.webhook:
            from edge_runtime.actions.webhook import WebhookSink
            self.sinks.append(WebhookSink(o.webhook, timeout=o.webhook_timeout, log=log))
        if o.exec:
            from edge_runtime.actions.command import ExecSink
            self.sinks.append(ExecSink(o.exec, timeout=o.exec_timeout, log=log))
        if pins:
            self.sinks.append(gpio.GpioSink(pins, log=log))

    def start(self) -> "Actions":
        started: list[Sink] = []
        try:
            for s in self.sinks:
                s.start()
                started.append(s)
        except BaseException:
            for s in started:
                s.stop(time.monotonic() + 1)
            raise
        return self

    def add_sensor(self, key: str, name: str, value: Callable[[], Any]) -> None:
        """A figure beside the label in MQTT's state messages, and its Home Assistant sensor (before ``start``)."""
        for s in self.sinks:
            if s.name == "mqtt":
                s.add_sensor(key, name, value)  # type: ignore[attr-defined]

    def snapshot(self) -> State | None:
        """The current state of the whole frame (no zones), or of the first zone."""
        return self._trackers[0].state if self._trackers else None

    def snapshots(self) -> list[State]:
        """The current state of every zone (or of the whole frame) that has seen a frame."""
        return [t.state for t in self._trackers if t.state is not None]

    @property
    def current(self) -> str | None:
        return self._trackers[0].current if self._trackers else None

    @property
    def changes(self) -> int:
        return sum(t.changes for t in self._trackers)

    def observe(self, frame: int, t: float, classes: Sequence[Class], zone: str | None = None) -> None:
        """One classified frame (``t``: capture time, seconds), or one zone of it. Never blocks."""
        tracker = self._by_zone.get(zone)
        if tracker is None:
            tracker = self._by_zone[zone] = _Tracker(zone, self.options.min_score, self.options.hold)
            self._trackers = [*self._trackers, tracker]
        change = tracker.observe(frame, t, classes)
        if change is not None:
            for s in self.sinks:
                s.offer(change)

    def stats(self) -> dict[str, Any]:
        """``{"changes": N, SINK: {"sent", "failed", "dropped", ...}, ...}``"""
        return {"changes": self.changes, **{s.name: s.stats() for s in self.sinks}}

    def close(self, timeout: float = 3.0) -> dict[str, Any]:
        """Give the sinks ``timeout`` seconds in all to finish what is queued, then stop them (MQTT
        says ``offline``, pins go low). Returns ``stats()``."""
        with self._lock:
            if not self._closed:
                self._closed = True
                deadline = time.monotonic() + timeout
                for s in self.sinks:
                    s.stopping.set()
                for s in self.sinks:
                    s.stop(deadline)
        return self.stats()

    def __enter__(self) -> "Actions":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Tracker:
    """One zone's (or the whole frame's) debounced label: a label becomes current when it has led
    for ``hold`` seconds with at least ``min_score``."""

    def __init__(self, zone: str | None, min_score: float, hold: float):
        self.zone, self.min_score, self.hold = zone, min_score, hold
        self.current: str | None = None
        self.changes = 0
        self.state: State | None = None  # the current label with the newest frame (one assignment a frame)
        self._pending: tuple[str | None, float] | None = None  # a challenger and when it took the lead

    def observe(self, frame: int, t: float, classes: Sequence[Class]) -> State | None:
        """The new state when the current label changes with this frame, else None."""
        top = classes[0] if classes else None
        lead = top.label if top is not None and top.score >= self.min_score else None
        if lead == self.current:
            self._pending = None
        else:
            if self._pending is None or self._pending[0] != lead:
                self._pending = (lead, t)
            if t - self._pending[1] >= self.hold:
                previous, self.current, self._pending = self.current, lead, None
                self.changes += 1
                self.state = change = State(lead, frame, t, classes, previous, self.zone)
                return change
        self.state = State(self.current, frame, t, classes, zone=self.zone)
        return None


def zoned(rule: str, zones: Sequence[str], option: str) -> tuple[str | None, str]:
    """``ZONE:LABEL`` or ``LABEL`` -> (zone, label). Without zones, the rule is a label (colons
    included). With one zone, a bare label means that zone; with several, naming one is required."""
    if not zones:
        return None, rule
    zone, sep, label = rule.partition(":")
    if sep and zone in zones:
        return zone, label
    if len(zones) == 1:
        return zones[0], rule
    raise ValueError(f"{option}{rule}: several zones ({', '.join(zones)}); say which one, as ZONE:LABEL "
                     f"(e.g. {option}{zones[0]}:{rule})")


def format_stats(stats: dict[str, Any]) -> str:
    """One line for the camera summary: ``3 label changes; mqtt 5 sent, 0 failed, 0 dropped; ...``."""
    parts = [f"{stats.get('changes', 0)} label changes"]
    for name, s in stats.items():
        if isinstance(s, dict):
            parts.append(f"{name} {s['sent']} sent, {s['failed']} failed, {s['dropped']} dropped")
    return "; ".join(parts)
