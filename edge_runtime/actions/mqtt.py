"""MQTT with Home Assistant discovery.

Topics, for ``--mqtt mqtt://host/PREFIX`` (PREFIX defaults to ``edgecls/HOSTNAME``):

- ``PREFIX/state``: the state JSON (``State.to_json``), retained, on every label change, every
  ``--mqtt-interval`` seconds and after every (re)connect;
- ``PREFIX/availability``: ``online`` (retained) once connected; ``offline`` on a clean exit and,
  as the MQTT last will, when the connection dies without one (the process killed, the Pi unplugged);
- ``HA/sensor/NODE/label/config`` and ``HA/binary_sensor/NODE/SLUG/config`` (HA: the discovery
  prefix, ``homeassistant``; NODE: PREFIX with every character outside ``[a-zA-Z0-9_-]`` made
  ``_``), retained: Home Assistant's MQTT discovery, single-component form
  (``<discovery_prefix>/<component>/[<node_id>/]<object_id>/config``) with the keys its MQTT sensor
  and binary sensor pages document. One sensor whose state is the label (score, frame and top-k as
  attributes) and one binary sensor per ``--ha-binary LABEL``, ``ON`` while LABEL is current.

With zones (``--zone NAME=...``) each zone has its own state topic, ``PREFIX/NAME/state``, and its
own sensor (``HA/sensor/NODE/NAME/config``, named after the zone); ``--ha-binary LABEL`` makes a
binary sensor per zone (``ZONE:LABEL``: in that zone only), object id ``NAME_LABEL``. Zone names are
already ``[A-Za-z0-9_-]``, so they are topic levels and object ids as they are.

paho-mqtt's network thread reconnects with a growing delay (1 s doubling to 30 s) when the broker
goes away; each (re)connect republishes availability, discovery and the current state. Home
Assistant's own birth message (``online`` on ``HA/status``) also triggers a republish, so a
restarted Home Assistant finds the entities even if the broker lost its retained messages."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from edge_runtime._version import __version__
from edge_runtime.actions.base import Log, Sink, State, binary_rules, stderr_log
from edge_runtime.errors import MissingExtra

URL_HELP = "give --mqtt as mqtt://[USER:PASSWORD@]HOST[:PORT][/PREFIX] (mqtts:// for TLS)"


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    prefix: str  # topic prefix, no leading or trailing '/'

    @classmethod
    def parse(cls, url: str) -> "Broker":
        u = urlsplit(url)
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
            raise ValueError(f"--mqtt {url!r}: {URL_HELP}")
        try:
            port = u.port or (8883 if u.scheme == "mqtts" else 1883)
        except ValueError:
            raise ValueError(f"--mqtt {url!r}: the port is not a number from 1 to 65535; {URL_HELP}") from None
        prefix = unquote(u.path).strip("/") or f"edgecls/{slug(socket.gethostname())}"
        if any(ch in prefix for ch in "+#\0") or "//" in prefix:
            raise ValueError(f"--mqtt {url!r}: the topic prefix {prefix!r} may not contain '+', '#' or an empty level")
        return cls(u.hostname, port, u.scheme == "mqtts", unquote(u.username) if u.username else None,
                   unquote(u.password) if u.password else None, prefix)


def slug(text: str) -> str:
    """An MQTT discovery id: only [a-zA-Z0-9_-] (Home Assistant's rule for node and object ids)."""
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", text).strip("_") or "x"


def state_topic(prefix: str, zone: str | None) -> str:
    return f"{prefix}/state" if zone is None else f"{prefix}/{zone}/state"


def discovery(b: Broker, ha_prefix: str, binary: list[str], model: str,
              zones: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Home Assistant discovery configs by topic: one sensor (the label), one binary sensor per label;
    with ``zones``, one sensor per zone and the binary sensors of each zone."""
    if zones:
        configs: dict[str, dict[str, Any]] = {}
        rules = binary_rules(binary, zones)
        for zone in zones:
            configs.update(_discovery(b, ha_prefix, [lb for z, lb in rules if z == zone], model, zone))
        return configs
    return _discovery(b, ha_prefix, binary, model, None)


def _discovery(b: Broker, ha_prefix: str, binary: list[str], model: str, zone: str | None) -> dict[str, dict[str, Any]]:
    node = slug(b.prefix)
    state, avail = state_topic(b.prefix, zone), f"{b.prefix}/availability"
    common = {
        "state_topic": state,
        "availability_topic": avail, "payload_available": "online", "payload_not_available": "offline",
        "device": {"identifiers": [f"edgecls_{node}"], "name": f"edgecls {b.prefix.rsplit('/', 1)[-1]}",
                   "manufacturer": "edgecls", "model": model, "sw_version": __version__},
        "origin": {"name": "edgecls", "sw_version": __version__},
    }
    sensor = "label" if zone is None else zone
    configs = {f"{ha_prefix}/sensor/{node}/{sensor}/config": {
        "name": "Label" if zone is None else zone, "unique_id": f"edgecls_{node}_{sensor}", "icon": "mdi:cctv",
        "value_template": "{{ value_json.label if value_json.label is not none else 'none' }}",
        "json_attributes_topic": state,
        "json_attributes_template": "{{ {'score': value_json.score, 'frame': value_json.frame, "
                                    "'top_k': value_json.top_k} | tojson }}",
        **common}}
    used: set[str] = set()
    for label in binary:
        obj = slug(label) if zone is None else f"{zone}_{slug(label)}"
        while obj in used or obj == "label":
            obj += "_"
        used.add(obj)
        configs[f"{ha_prefix}/binary_sensor/{node}/{obj}/config"] = {
            "name": label if zone is None else f"{zone} {label}", "unique_id": f"edgecls_{node}_{obj}", "device_class": "occupancy",
            "value_template": "{{ 'ON' if value_json.label == %s else 'OFF' }}" % json.dumps(label),
            "payload_on": "ON", "payload_off": "OFF", **common}
    return configs


class MqttSink(Sink):
    name = "mqtt"

    def __init__(self, url: str, *, snapshot: Callable[[], list[State]], ca: str | None = None,
                 interval: float = 30.0, ha_prefix: str = "homeassistant", ha_binary: list[str] | None = None,
                 model: str = "classifier", log: Log = stderr_log, reconnect: tuple[int, int] = (1, 30),
                 connect_wait: float = 3.0, zones: list[str] | None = None):
        super().__init__(log, maxlen=8, interval=interval if interval > 0 else None)
        self.broker = b = Broker.parse(url)
        if ha_prefix and (any(ch in ha_prefix for ch in "+#") or ha_prefix.strip("/") != ha_prefix):
            raise ValueError(f"--ha-prefix {ha_prefix!r}: a topic without '+', '#' or leading/trailing '/'")
        if ca and not os.path.isfile(ca):
            raise ValueError(f"--mqtt-ca {ca}: no such file; give the PEM file of the CA that signed the broker's "
                             "certificate")
        if ca and not b.tls:
            raise ValueError(f"--mqtt-ca needs an mqtts:// broker URL (got {url!r})")
        try:
            import paho.mqtt.client as paho
        except ImportError:
            raise MissingExtra("--mqtt", "mqtt", "paho-mqtt") from None
        self.paho = paho
        self.snapshot = snapshot
        self.state_topic, self.avail_topic = f"{b.prefix}/state", f"{b.prefix}/availability"
        self.ha_prefix = ha_prefix
        self.configs = discovery(b, ha_prefix, list(dict.fromkeys(ha_binary or [])), model, zones) if ha_prefix else {}
        self.extra: dict[str, Callable[[], Any]] = {}  # add_sensor's figures
        self.connected = False
        self.connects = 0
        self._lock = threading.Lock()
        self._last_error = ""
        self._up = threading.Event()
        self.connect_wait = connect_wait
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"edgecls-{slug(b.prefix)}-{os.getpid()}",
                        protocol=paho.MQTTv311)
        c.will_set(self.avail_topic, "offline", qos=1, retain=True)
        if b.username is not None:
            c.username_pw_set(b.username, b.password)
        if b.tls:
            c.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
        c.reconnect_delay_set(*reconnect)
        c.max_queued_messages_set(64)
        c.on_connect, c.on_disconnect, c.on_connect_fail = self._on_connect, self._on_disconnect, self._on_fail
        c.on_message = self._on_message
        self.client = c

    # -- paho's network thread -------------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if reason.is_failure:
            self._note(f"the broker {self.broker.host}:{self.broker.port} refused the connection: {reason}")
            return
        self.connected = True
        self.connects += 1
        self._up.set()
        self._last_error = ""
        self.log(f"mqtt: connected to {self.broker.host}:{self.broker.port}, publishing on {self.broker.prefix}/")
        self.announce()
        if self.ha_prefix:
            client.subscribe(f"{self.ha_prefix}/status", qos=1)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        was, self.connected = self.connected, False
        if was and not self.stopping.is_set():
            self.log(f"mqtt: lost the connection to {self.broker.host}:{self.broker.port} ({reason}); reconnecting")

    def _on_fail(self, client: Any, userdata: Any) -> None:
        self._note(f"cannot connect to {self.broker.host}:{self.broker.port}; retrying")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic == f"{self.ha_prefix}/status" and msg.payload == b"online":
            self.announce()  # Home Assistant (re)started: tell it about us again

    def _note(self, msg: str) -> None:
        if msg != self._last_error:  # once per distinct problem, not once per retry
            self._last_error = msg
            self.log(f"mqtt: {msg}")

    def add_sensor(self, key: str, name: str, value: Callable[[], Any], icon: str = "mdi:chart-bell-curve") -> None:
        """One more figure in every state message (``key``: ``value()``, read when it is published)
        and, with discovery, a Home Assistant sensor for it (a measurement, so HA keeps its history)."""
        self.extra[key] = value
        if self.ha_prefix and self.configs:
            first = next(iter(self.configs.values()))
            common = {k: first[k] for k in ("state_topic", "availability_topic", "payload_available",
                                            "payload_not_available", "device", "origin")}
            node = slug(self.broker.prefix)
            self.configs[f"{self.ha_prefix}/sensor/{node}/{slug(key)}/config"] = {
                "name": name, "unique_id": f"edgecls_{node}_{slug(key)}", "icon": icon, "state_class": "measurement",
                "value_template": "{{ value_json.%s }}" % slug(key), **common}

    def announce(self) -> None:
        """Availability, discovery and the current state: after every (re)connect."""
        self.client.publish(self.avail_topic, "online", qos=1, retain=True)
        for topic, config in self.configs.items():
            self.client.publish(topic, json.dumps(config), qos=1, retain=True)
        for s in self.snapshot():
            self.publish(s)

    # -- the sink's thread -------------------------------------------------------------------------
    def publish(self, s: State) -> None:
        topic = state_topic(self.broker.prefix, s.zone)
        message = {**s.to_json(), **{k: f() for k, f in self.extra.items()}}
        ok = self.connected and self.client.publish(topic, json.dumps(message), qos=0,
                                                    retain=True).rc == self.paho.MQTT_ERR_SUCCESS
        with self._lock:
            if ok:
                self.sent += 1
            else:
                self.failed += 1

    def handle(self, state: State) -> None:
        self.publish(state)

    def tick(self) -> None:
        for s in self.snapshot():
            self.publish(s)

    def open(self) -> None:
        """Connect in the background; wait up to ``connect_wait`` seconds for the first connection so
        that the first label is not lost to a slow handshake (the camera starts either way)."""
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        if not self._up.wait(self.connect_wait):
            self.log(f"mqtt: not connected to {self.broker.host}:{self.broker.port} yet; starting anyway, "
                     "retrying in the background")

    def close(self) -> None:
        if self.connected:
            info = self.client.publish(self.avail_topic, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=1.0)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        release_sockets(self.client)

    def extra_stats(self) -> dict[str, Any]:
        return {"connected": self.connected, "connects": self.connects}


def release_sockets(client: Any) -> None:
    """Close the sockets a paho client still holds after ``disconnect()`` and ``loop_stop()``: the
    self-pipe ``loop_start()`` made to wake its network thread (a socket pair) and the connection,
    where the thread ended before it closed it. paho closes them only in ``Client.__del__``
    (eclipse-paho/paho.mqtt.python#627), and a client in a reference cycle (its callbacks are bound
    methods of the object that holds it) waits for the cycle collector, which may finalize the
    sockets before the client: "ResourceWarning: unclosed socket", and file descriptors held until
    then. paho 1.x and 2.x have ``_reset_sockets`` for this and no public method."""
    reset = getattr(client, "_reset_sockets", None)
    if reset is not None:
        reset()
