"""A real MQTT broker on 127.0.0.1 for the actions tests: Debian's mosquitto as a child process
with a temporary config (anonymous, no persistence: a restart forgets retained messages), on a
free port; ``stop`` and ``start`` again keep the port. And a paho subscriber that records
everything it receives and resubscribes after a reconnect."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, home: Path):
        self.home, self.port = home, free_port()
        self.conf = home / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                             f"log_dest file {home / 'mosquitto.log'}\n")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: "
                                   + (self.home / "mosquitto.log").read_text(errors="replace"))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    t: float

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """Records every message on ``topics`` (resubscribing after each reconnect)."""

    port: int
    topics: list[str]
    messages: list[Message] = field(default_factory=list)
    cv: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        import paho.mqtt.client as paho

        self.client = c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{id(self)}")
        self.subscribed = threading.Event()
        c.on_connect = lambda cl, *_: cl.subscribe([(t, 1) for t in self.topics])
        c.on_subscribe = lambda *_: self.subscribed.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 1)
        c.connect_async("127.0.0.1", self.port)
        c.loop_start()
        if not self.subscribed.wait(10):
            self.close()
            raise RuntimeError(f"the subscriber did not subscribe to 127.0.0.1:{self.port} in 10 s")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.cv:
            self.messages.append(Message(msg.topic, msg.payload, bool(msg.retain), time.monotonic()))
            self.cv.notify_all()

    def on(self, topic: str, retain: bool | None = None) -> list[Message]:
        with self.cv:
            return [m for m in self.messages if m.topic == topic and (retain is None or m.retain == retain)]

    def wait_for(self, pred, timeout: float = 20.0) -> list[Message]:
        """Wait until ``pred(messages)`` is truthy; returns the messages so far."""
        end = time.monotonic() + timeout
        with self.cv:
            while not pred(self.messages):
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; got {[(m.topic, m.payload[:80]) for m in self.messages]}")
                self.cv.wait(left)
            return list(self.messages)

    def close(self) -> None:
        """Disconnect and close every socket now (paho leaves them to the garbage collector, where an
        unclosed socket is a ResourceWarning, an error under this suite's filterwarnings)."""
        from edge_runtime.actions.mqtt import release_sockets

        self.client.disconnect()
        self.client.loop_stop()
        release_sockets(self.client)
