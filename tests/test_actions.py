"""Actions on the current label: debounce, bounded queues that drop the oldest, MQTT with Home
Assistant discovery against a real mosquitto broker (restarted mid-run, the client killed), a
webhook against local HTTP servers (one that answers, one that returns 500, one that hangs), a
command, and GPIO pins on gpiozero's mock pin factory."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mosquitto
import pytest
from conftest import CORAL, assert_one_line_error, json_lines, run_edgecls

from edge_runtime import Class, MissingExtra
from edge_runtime.actions import ActionOptions, Actions, Sink, State

V2 = CORAL / "mobilenet_v2_1.0_224_quant.tflite"
LABELS = CORAL / "imagenet_labels.txt"
PHOTOS = {"cat.bmp": "Egyptian cat", "parrot.jpg": "macaw", "bird.bmp": "chickadee"}
LABEL_LIST = ["cat", "dog", "bird"]

# The configuration variables Home Assistant documents for MQTT discovery of a sensor and a binary
# sensor (its "MQTT Sensor" and "MQTT Binary sensor" integration pages), the device and origin maps.
HA_COMMON = {"availability", "availability_mode", "availability_template", "availability_topic", "device",
             "enabled_by_default", "encoding", "entity_category", "entity_picture", "expire_after", "force_update",
             "icon", "json_attributes_template", "json_attributes_topic", "name", "object_id", "default_entity_id",
             "payload_available", "payload_not_available", "platform", "qos", "state_topic", "unique_id",
             "value_template", "origin"}
HA_SENSOR = HA_COMMON | {"device_class", "last_reset_value_template", "options", "suggested_display_precision",
                         "state_class", "unit_of_measurement"}
HA_BINARY_SENSOR = HA_COMMON | {"device_class", "off_delay", "payload_off", "payload_on"}
HA_DEVICE = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id",
             "name", "serial_number", "suggested_area", "sw_version", "via_device"}
HA_ORIGIN = {"name", "sw_version", "support_url"}
HA_BINARY_DEVICE_CLASSES = {"occupancy", "presence", "motion"}  # the ones that fit "LABEL is in view"


def cls(label: str, score: float = 0.9) -> list[Class]:
    return [Class(LABEL_LIST.index(label), label, score)]


class Recorder(Sink):
    name = "recorder"

    def __init__(self, block: threading.Event | None = None, maxlen: int = 16):
        super().__init__(maxlen=maxlen)
        self.seen: list[State] = []
        self.block = block
        self.busy = threading.Event()

    def handle(self, state: State) -> None:
        self.busy.set()
        if self.block is not None:
            self.block.wait(10)
        self.seen.append(state)
        self.sent += 1


def feed(acts: Actions, labels: list[str | None], dt: float = 0.1, score: float = 0.9) -> None:
    for n, label in enumerate(labels):
        acts.observe(n, 1000.0 + n * dt, cls(label, score) if label else [])


# --- debounce and queues ---------------------------------------------------------------------------


def test_hold_fires_only_after_a_label_led_that_long_and_flicker_never_fires():
    acts = Actions(ActionOptions(hold=0.5), LABEL_LIST)
    rec = Recorder()
    acts.sinks.append(rec)
    acts.start()
    # cat for 1 s, a 0.3 s flicker of dog, bird from frame 13 on (0.1 s a frame)
    feed(acts, ["cat"] * 10 + ["dog"] * 3 + ["bird"] * 10)
    stats = acts.close()
    assert [(s.label, s.previous, s.frame) for s in rec.seen] == [("cat", None, 5), ("bird", "cat", 18)]
    assert stats["changes"] == 2 and stats["recorder"] == {"sent": 2, "failed": 0, "dropped": 0}


def test_min_score_makes_the_label_none_below_it():
    acts = Actions(ActionOptions(min_score=0.6), LABEL_LIST)
    rec = Recorder()
    acts.sinks.append(rec)
    acts.start()
    for n, (label, score) in enumerate([("cat", 0.9), ("cat", 0.5), ("dog", 0.55), ("dog", 0.7)]):
        acts.observe(n, float(n), cls(label, score))
    acts.close()
    assert [(s.label, s.frame) for s in rec.seen] == [("cat", 0), (None, 1), ("dog", 3)]
    assert rec.seen[1].to_json()["label"] is None and rec.seen[1].to_json()["top_k"] == [{"label": "cat", "score": 0.5}]


def test_a_slow_sink_drops_the_oldest_and_observe_never_waits():
    block = threading.Event()
    acts = Actions(ActionOptions(), LABEL_LIST)
    rec = Recorder(block, maxlen=4)
    acts.sinks.append(rec)
    acts.start()
    acts.observe(0, 0.0, cls("cat"))
    assert rec.busy.wait(5)  # stuck on the first change, 39 more come
    t = time.perf_counter()
    for n in range(1, 40):
        acts.observe(n, n / 10, cls(["cat", "dog"][n % 2]))
    assert time.perf_counter() - t < 0.05
    time.sleep(0.1)
    block.set()
    stats = acts.close()["recorder"]
    assert stats == {"sent": 5, "failed": 0, "dropped": 35}
    assert [s.frame for s in rec.seen] == [0, 36, 37, 38, 39]  # the first (in hand), then the newest four


# --- MQTT against mosquitto -------------------------------------------------------------------------


def photo_folder(root: Path, per_photo: int) -> Path:
    d = root / "frames"
    d.mkdir()
    i = 0
    for name in PHOTOS:
        for _ in range(per_photo):
            os.symlink(CORAL / name, d / f"{i:04d}{Path(name).suffix}")
            i += 1
    return d


def check_discovery(configs: dict[str, dict], prefix: str) -> None:
    node = prefix.replace("/", "_")
    sensor = configs[f"homeassistant/sensor/{node}/label/config"]
    binary = configs[f"homeassistant/binary_sensor/{node}/Egyptian_cat/config"]
    assert set(configs) == {f"homeassistant/sensor/{node}/label/config",
                            f"homeassistant/binary_sensor/{node}/Egyptian_cat/config"}
    for c, documented in ((sensor, HA_SENSOR), (binary, HA_BINARY_SENSOR)):
        assert set(c) <= documented, set(c) - documented
        assert c["state_topic"] == f"{prefix}/state" and c["availability_topic"] == f"{prefix}/availability"
        assert (c["payload_available"], c["payload_not_available"]) == ("online", "offline")
        assert set(c["device"]) <= HA_DEVICE and c["device"]["identifiers"] == [f"edgecls_{node}"]
        assert set(c["origin"]) <= HA_ORIGIN and c["origin"]["name"] == "edgecls"
    assert sensor["unique_id"] != binary["unique_id"]
    assert "value_json.label" in sensor["value_template"] and "value_json.score" in sensor["json_attributes_template"]
    assert binary["value_template"] == "{{ 'ON' if value_json.label == \"Egyptian cat\" else 'OFF' }}"
    assert (binary["payload_on"], binary["payload_off"]) == ("ON", "OFF")
    assert binary["device_class"] in HA_BINARY_DEVICE_CLASSES


@pytest.mark.mqtt
def test_mqtt_state_follows_the_frames_with_home_assistant_discovery(broker, tmp_path):
    prefix = "test/cam"
    sub = mosquitto.Subscriber(broker.port, [f"{prefix}/#", "homeassistant/#"])
    try:
        p = run_edgecls("camera", V2, "--labels", LABELS, "--source", photo_folder(tmp_path, 4), "--json",
                        "--top-k", "2", "--mqtt", f"{broker.url}/{prefix}", "--ha-binary", "Egyptian cat",
                        "--mqtt-interval", "0", timeout=120)
        assert p.returncode == 0, p.stderr
        frames = {r["frame"]: r for r in json_lines(p.stdout) if "frame" in r}
        summary = json_lines(p.stdout)[-1]["summary"]
        sub.wait_for(lambda m: any(x.payload == b"offline" for x in m))
        states = [m.json() for m in sub.on(f"{prefix}/state")]
        # one state a label change, each naming the frame it came from, with that frame's top-k
        assert [(s["label"], s["frame"]) for s in states] == [("Egyptian cat", 0), ("macaw", 4), ("chickadee", 8)]
        for s in states:
            top = frames[s["frame"]]["classes"]
            assert s["top_k"] == [{"label": c["label"], "score": c["score"]} for c in top]
            assert s["score"] == top[0]["score"] and abs(s["time"] - frames[s["frame"]]["t"]) < 1e-3
        assert [m.payload for m in sub.on(f"{prefix}/availability")] == [b"online", b"offline"]
        assert summary["actions"]["mqtt"] | {"connected": None} == {"sent": 3, "failed": 0, "dropped": 0,
                                                                    "connected": None, "connects": 1}
        assert "edgecls: actions: 3 label changes; mqtt 3 sent, 0 failed, 0 dropped" in p.stderr
    finally:
        sub.close()
    # what Home Assistant finds when it subscribes later: the retained configs, state and availability
    late = mosquitto.Subscriber(broker.port, ["#"])
    try:
        msgs = late.wait_for(lambda m: len(m) >= 4)
        retained = {m.topic: m for m in msgs if m.retain}
        assert retained[f"{prefix}/availability"].payload == b"offline"
        assert retained[f"{prefix}/state"].json()["label"] == "chickadee"
        check_discovery({t: m.json() for t, m in retained.items() if t.startswith("homeassistant/")}, prefix)
    finally:
        late.close()


@pytest.mark.mqtt
def test_mqtt_survives_a_broker_restart_and_its_last_will_says_offline(broker, tmp_path):
    prefix = "test/restart"
    sub = mosquitto.Subscriber(broker.port, [f"{prefix}/#", "homeassistant/#"])
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "camera", str(V2), "--labels", str(LABELS),
                             "--source", str(photo_folder(tmp_path, 200)), "--fps", "10", "--top-k", "1",
                             "--mqtt", f"{broker.url}/{prefix}", "--mqtt-interval", "0.3", "--ha-binary",
                             "Egyptian cat"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        sub.wait_for(lambda m: len(sub.on(f"{prefix}/state")) >= 3, 60)
        broker.stop()
        time.sleep(1.5)  # states while the broker is away fail; the client keeps reconnecting
        broker.start()
        t_back = time.monotonic()
        sub.wait_for(lambda m: len([x for x in sub.on(f"{prefix}/state") if x.t > t_back]) >= 3, 30)
        after = [m for m in sub.messages if m.t > t_back]
        # the restarted broker forgot every retained message: edgecls published them again
        assert [m.payload for m in after if m.topic == f"{prefix}/availability"] == [b"online"]
        assert {m.topic for m in after if m.topic.startswith("homeassistant/")} == {
            f"homeassistant/sensor/{prefix.replace('/', '_')}/label/config",
            f"homeassistant/binary_sensor/{prefix.replace('/', '_')}/Egyptian_cat/config"}
        assert all(m.json()["label"] == "Egyptian cat" for m in after if m.topic == f"{prefix}/state")
        proc.send_signal(signal.SIGKILL)  # no clean exit: only the last will can say offline
        proc.wait(10)
        msgs = sub.wait_for(lambda m: m[-1].topic == f"{prefix}/availability" and m[-1].payload == b"offline")
        assert [m.payload for m in msgs if m.topic == f"{prefix}/availability" and m.t > t_back] == [b"online",
                                                                                                    b"offline"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        sub.close()


@pytest.mark.mqtt
def test_a_closed_mqtt_sink_holds_no_socket(broker):
    """paho's disconnect() and loop_stop() leave the socket pair that wakes its network thread open
    until the client is garbage-collected (a ResourceWarning when the cycle collector gets to the
    sockets first); close() closes them: no file descriptor outlives the sink."""
    from edge_runtime.actions.mqtt import MqttSink

    before = set(os.listdir("/proc/self/fd"))
    sink = MqttSink(f"{broker.url}/test/fds", snapshot=lambda: [], log=lambda m: None, connect_wait=20)
    sink.open()
    assert sink.connected
    sink.close()
    assert set(os.listdir("/proc/self/fd")) - before == set()


# --- webhook ----------------------------------------------------------------------------------------


class Hook(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int = 200, hang: bool = False):
        self.bodies: list[dict] = []
        self.status, self.hang = status, hang
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                if server.hang:
                    server.release.wait(10)
                    return
                self.send_response(server.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


@pytest.fixture
def hook():
    servers: list[Hook] = []

    def make(**kw) -> Hook:
        servers.append(Hook(**kw))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_webhook_posts_each_change_with_the_previous_label(hook):
    h = hook()
    acts = Actions(ActionOptions(webhook=h.url), LABEL_LIST).start()
    feed(acts, ["cat", "cat", "dog", "dog", "bird"])
    stats = acts.close()["webhook"]
    assert stats == {"sent": 3, "failed": 0, "dropped": 0}
    assert [(b["label"], b["previous"], b["frame"]) for b in h.bodies] == [("cat", None, 0), ("dog", "cat", 2),
                                                                           ("bird", "dog", 4)]
    assert h.bodies[0]["top_k"] == [{"label": "cat", "score": 0.9}] and h.bodies[0]["score"] == 0.9


def test_webhook_retries_a_500_then_counts_it_failed(hook):
    h = hook(status=500)
    logs: list[str] = []
    acts = Actions(ActionOptions(webhook=h.url), LABEL_LIST, log=logs.append).start()
    feed(acts, ["cat"])
    time.sleep(2.5)  # three tries: now, +0.5 s, +1 s
    stats = acts.close()["webhook"]
    assert stats == {"sent": 0, "failed": 1, "dropped": 0}
    assert len(h.bodies) == 3 and {b["label"] for b in h.bodies} == {"cat"}
    assert logs == [f"webhook: POST {h.url} failed after 3 tries (HTTP 500 Internal Server Error)"]


def test_a_hanging_webhook_never_slows_observe_and_drops_the_oldest(hook):
    h = hook(hang=True)
    logs: list[str] = []
    acts = Actions(ActionOptions(webhook=h.url, webhook_timeout=0.3), LABEL_LIST, log=logs.append).start()
    worst = 0.0
    for n in range(60):  # 60 changes, 30 frames a second
        t = time.perf_counter()
        acts.observe(n, float(n), cls(["cat", "dog"][n % 2]))
        worst = max(worst, time.perf_counter() - t)
        time.sleep(1 / 30)
    t = time.perf_counter()
    stats = acts.close(timeout=1.0)["webhook"]
    assert time.perf_counter() - t < 1.5  # close is bounded too
    assert worst < 0.05, worst  # a POST blocks for 0.3 s; a GIL hand-over takes up to 5 ms
    assert stats["sent"] == 0 and stats["failed"] >= 1 and stats["dropped"] >= 60 - 16 - 4
    assert any("timed out" in line for line in logs), logs


# --- exec ------------------------------------------------------------------------------------------

SCRIPT = """import json, os, sys, time
t0 = time.time()
if os.environ["EDGECLS_LABEL"] == "dog":
    time.sleep(0.3)
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({k: v for k, v in os.environ.items() if k.startswith("EDGECLS_")} | {"t0": t0, "t1": time.time()}) + "\\n")
sys.exit(3 if os.environ["EDGECLS_LABEL"] == "bird" else 0)
"""


def test_exec_runs_one_command_at_a_time_with_the_label_in_its_environment(tmp_path):
    script, out = tmp_path / "hook.py", tmp_path / "calls.jsonl"
    script.write_text(SCRIPT)
    logs: list[str] = []
    cmd = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {shlex.quote(str(out))}"
    acts = Actions(ActionOptions(exec=cmd), LABEL_LIST, log=logs.append).start()
    feed(acts, ["cat", "dog", "bird"])
    stats = acts.close(timeout=10)["exec"]
    calls = json_lines(out.read_text())
    assert [(c["EDGECLS_LABEL"], c["EDGECLS_PREVIOUS_LABEL"], c["EDGECLS_FRAME"], c["EDGECLS_SCORE"]) for c in calls] \
        == [("cat", "", "0", "0.900000"), ("dog", "cat", "1", "0.900000"), ("bird", "dog", "2", "0.900000")]
    assert all(a["t1"] <= b["t0"] for a, b in zip(calls, calls[1:]))  # never two at once
    assert stats == {"sent": 2, "failed": 1, "dropped": 0}
    assert logs == [f"exec: {cmd!r} exited with status 3 (label 'bird')"]


def test_exec_kills_a_command_past_its_timeout(tmp_path):
    logs: list[str] = []
    cmd = f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(30)'"
    acts = Actions(ActionOptions(exec=cmd, exec_timeout=0.3), LABEL_LIST, log=logs.append).start()
    feed(acts, ["cat"])
    time.sleep(0.8)
    assert acts.close()["exec"] == {"sent": 0, "failed": 1, "dropped": 0}
    assert logs == [f"exec: {cmd!r} still ran after 0.3 s; killed"]


# --- GPIO ------------------------------------------------------------------------------------------


def test_gpio_pin_is_high_while_its_label_is_current():
    gpiozero = pytest.importorskip("gpiozero")
    from gpiozero.pins.mock import MockFactory

    old, gpiozero.Device.pin_factory = gpiozero.Device.pin_factory, MockFactory()
    try:
        pin = gpiozero.Device.pin_factory.pin
        acts = Actions(ActionOptions(gpio=["17=cat", "GPIO27=dog", "22=cat"], min_score=0.5), LABEL_LIST).start()

        def levels(expect: tuple[bool, bool, bool]) -> tuple[bool, ...]:
            end = time.monotonic() + 5
            while (got := tuple(bool(pin(n).state) for n in (17, 27, 22))) != expect and time.monotonic() < end:
                time.sleep(0.01)
            return got

        assert levels((False, False, False)) == (False, False, False)
        acts.observe(0, 0.0, cls("cat"))
        assert levels((True, False, True)) == (True, False, True)
        acts.observe(1, 0.1, cls("dog"))
        assert levels((False, True, False)) == (False, True, False)
        acts.observe(2, 0.2, cls("dog", 0.3))  # below --min-score: no label, every pin low
        assert levels((False, False, False)) == (False, False, False)
        acts.observe(3, 0.3, cls("cat"))
        assert levels((True, False, True)) == (True, False, True)
        assert acts.close()["gpio"] == {"sent": 4, "failed": 0, "dropped": 0}
        assert tuple(bool(pin(n).state) for n in (17, 27, 22)) == (False, False, False)  # low once stopped
    finally:
        gpiozero.Device.pin_factory.close()
        gpiozero.Device.pin_factory = old


# --- options and missing extras -------------------------------------------------------------------


@pytest.mark.parametrize("module, option, extra", [("paho", {"mqtt": "mqtt://127.0.0.1"}, "edgecls[mqtt]"),
                                                   ("gpiozero", {"gpio": ["17=cat"]}, "edgecls[gpio]")])
def test_a_missing_extra_names_it(monkeypatch, module, option, extra):
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MissingExtra, match=extra.replace("[", r"\[").replace("]", r"\]")):
        Actions(ActionOptions(**option), LABEL_LIST).start()


@pytest.mark.parametrize("args, fragments", [
    (["--ha-binary", "cat"], ["--ha-binary needs --mqtt"]),
    (["--mqtt", "mqtt://127.0.0.1:1/x", "--ha-binary", "kitten"], ["--ha-binary 'kitten'", "not a label"]),
    (["--gpio", "17"], ["--gpio '17'", "PIN=LABEL"]),
    (["--mqtt", "http://broker"], ["--mqtt 'http://broker'", "mqtt://"]),
    (["--exec", "no-such-command-here --flag"], ["--exec", "'no-such-command-here' is not an executable"]),
])
def test_bad_action_options_are_one_line_errors(tmp_path, args, fragments):
    p = run_edgecls("camera", V2, "--labels", LABELS, "--source", CORAL / "cat.bmp", *args)
    assert_one_line_error(p, *fragments)


def test_camera_runs_a_command_and_a_webhook_and_reports_them(hook, tmp_path):
    h = hook()
    out = tmp_path / "labels.txt"
    script = tmp_path / "hook.py"
    script.write_text("import os, sys\nopen(sys.argv[1], 'a').write(os.environ['EDGECLS_FRAME'] + ' ' + "
                      "os.environ['EDGECLS_LABEL'] + '\\n')\n")
    p = run_edgecls("camera", V2, "--labels", LABELS, "--source", photo_folder(tmp_path, 3), "--json", "--top-k", "1",
                    "--webhook", h.url, "--exec", f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {out}",
                    timeout=120)
    assert p.returncode == 0, p.stderr
    expected = [("0", "Egyptian cat"), ("3", "macaw"), ("6", "chickadee")]
    assert [tuple(line.split(" ", 1)) for line in out.read_text().splitlines()] == expected
    assert [(str(b["frame"]), b["label"]) for b in h.bodies] == expected
    actions = json_lines(p.stdout)[-1]["summary"]["actions"]
    assert actions == {"changes": 3, "webhook": {"sent": 3, "failed": 0, "dropped": 0},
                       "exec": {"sent": 3, "failed": 0, "dropped": 0}}


def test_the_web_view_status_counts_the_actions(hook, tmp_path):
    from edge_runtime import Classifier
    from edge_runtime.live import loop as camera
    from edge_runtime.live import sources
    from edge_runtime.web import server as webview

    h = hook()
    view = webview.View()
    with Classifier(V2, labels=LABELS, backend="cpu") as clf:
        src, _ = sources.open_source(str(photo_folder(tmp_path, 2)), (clf.width, clf.height))
        src.open()
        acts = Actions(ActionOptions(webhook=h.url), clf.labels).start()
        s = camera.run(clf, src, lambda d: None, camera.Options(top=1), view=view, actions=acts)
    assert s.actions == {"changes": 3, "webhook": {"sent": 3, "failed": 0, "dropped": 0}}
    status = json.loads(json.dumps(view.status))  # what /status.json serves
    assert status["actions"]["changes"] == 3 and set(status["actions"]["webhook"]) == {"sent", "failed", "dropped"}
    assert s.to_dict()["summary"]["actions"] == s.actions
