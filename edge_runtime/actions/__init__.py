"""Act on what the camera sees: MQTT (with Home Assistant discovery), webhooks, commands and GPIO.

The camera loop calls ``Actions.observe(frame, t, classes)`` once per classified frame. That call
only compares the top label with the current one and, on a change, puts the new state in each
sink's bounded queue: it never waits for a network, a process or a pin. A label becomes current
when it has led for ``hold`` seconds (frame time) with a score of at least ``min_score``; below
``min_score`` the current label is None ("none"). Each sink (``Sink``: ``start``, ``handle``,
``stop``) runs in its own thread, drops the oldest queued change when it falls behind, and counts
what it sent, what failed and what it dropped: ``stats()``.

    acts = Actions(ActionOptions(mqtt="mqtt://broker/kitchen", ha_binary=["cat"]), labels).start()
    ... acts.observe(frame.n, frame.t, classes) ...
    acts.close()
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Sequence

from edge_runtime.actions.base import Log, Sink, State, stderr_log
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
                 log: Log = stderr_log):
        o = self.options = options
        if o.hold < 0:
            raise ValueError("--hold must be 0 seconds or more")
        if not 0 <= o.min_score <= 1:
            raise ValueError("--min-score must be from 0 to 1")
        if o.mqtt_interval < 0:
            raise ValueError("--mqtt-interval must be 0 (only on changes) or more seconds")
        if o.ha_binary and not o.mqtt:
            raise ValueError("--ha-binary needs --mqtt (Home Assistant discovers its sensors through MQTT)")
        for label in o.ha_binary:
            _check_label("--ha-binary", label, labels)
        self.log = log
        self.sinks: list[Sink] = []
        self.current: str | None = None
        self.changes = 0
        self._state: State | None = None  # the current label with the newest frame (one assignment a frame)
        self._pending: tuple[str | None, float] | None = None  # a challenger and when it took the lead
        self._closed = False
        self._lock = threading.Lock()
        from edge_runtime.actions import gpio  # no optional import at module level: gpiozero loads in GpioSink.open
        pins = [gpio.parse(spec) for spec in o.gpio]
        for _, label in pins:
            _check_label("--gpio", label, labels)
        if o.mqtt:
            from edge_runtime.actions.mqtt import MqttSink
            self.sinks.append(MqttSink(o.mqtt, snapshot=self.snapshot, ca=o.mqtt_ca, interval=o.mqtt_interval,
                                       ha_prefix=o.ha_prefix, ha_binary=o.ha_binary, model=model, log=log))
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
        return self._state

    def observe(self, frame: int, t: float, classes: Sequence[Class]) -> None:
        """One classified frame (``t``: capture time, seconds). Never blocks."""
        top = classes[0] if classes else None
        lead = top.label if top is not None and top.score >= self.options.min_score else None
        if lead == self.current:
            self._pending = None
        else:
            if self._pending is None or self._pending[0] != lead:
                self._pending = (lead, t)
            if t - self._pending[1] >= self.options.hold:
                previous, self.current, self._pending = self.current, lead, None
                self.changes += 1
                self._state = change = State(lead, frame, t, classes, previous)
                for s in self.sinks:
                    s.offer(change)
                return
        self._state = State(self.current, frame, t, classes)

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


def format_stats(stats: dict[str, Any]) -> str:
    """One line for the camera summary: ``3 label changes; mqtt 5 sent, 0 failed, 0 dropped; ...``."""
    parts = [f"{stats.get('changes', 0)} label changes"]
    for name, s in stats.items():
        if isinstance(s, dict):
            parts.append(f"{name} {s['sent']} sent, {s['failed']} failed, {s['dropped']} dropped")
    return "; ".join(parts)
