"""Zones and triggers (issue 34): a synthetic two-zone scene whose zones change at known frames,
classified by Coral's MobileNet V2 through ``edgecls camera --zone``: every change reported in its
zone, none invented, and with ``--trigger motion`` almost no inference on a static scene; bad
specs refused in one line; a topic and a Home Assistant entity per zone on a real broker."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mosquitto
import numpy as np
import pytest
from conftest import CORAL, ROOT, assert_one_line_error, json_lines, run_edgecls
from PIL import Image

from edge_runtime.live.zones import Trigger, Zone, ZoneSet, ZoneState, changed_fraction, motion_image, parse_zones

V2 = CORAL / "mobilenet_v2_1.0_224_quant.tflite"
LABELS = CORAL / "imagenet_labels.txt"
W, H = 640, 480
N = 40
# door: 240x240 pixels at (40, 60); spot: fractions, 256x216 pixels at (320, 240)
ZONES = ["--zone", "door=40,60,240,240", "--zone", "spot=0.5,0.5,0.4,0.45"]
BOXES = {"door": (40, 60, 280, 300), "spot": (320, 240, 576, 456)}
# what each zone shows, from which frame on
SCRIPT = {"door": [(0, "cat.bmp"), (15, "parrot.jpg"), (30, "cat.bmp")],
          "spot": [(0, "bird.bmp"), (25, "cat.bmp")]}
EXPECTED = {"cat.bmp": "Egyptian cat", "parrot.jpg": "macaw", "bird.bmp": "chickadee"}


def shown(zone: str, n: int) -> str:
    return [name for start, name in SCRIPT[zone] if start <= n][-1]


def scene(n: int) -> np.ndarray:
    """Frame n: a grey background, a white square moving outside both zones (motion that must not
    wake them), and each zone's photo of the moment."""
    img = np.full((H, W, 3), 110, np.uint8)
    x = 300 + (n * 7) % 240
    img[20:120, x:x + 80] = 250
    for zone, (x0, y0, x1, y1) in BOXES.items():
        photo = Image.open(CORAL / shown(zone, n)).convert("RGB").resize((x1 - x0, y1 - y0), Image.BILINEAR)
        img[y0:y1, x0:x1] = np.asarray(photo)
    return img


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    cv2 = pytest.importorskip("cv2")
    path = tmp_path_factory.mktemp("zones") / "scene.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    for n in range(N):
        w.write(np.ascontiguousarray(scene(n)[:, :, ::-1]))
    w.release()
    return path


def changes(rows: list[dict], zone: str) -> list[tuple[int, str]]:
    """(frame, label) each time the zone's top label differs from its previous line's."""
    out: list[tuple[int, str]] = []
    for r in rows:
        if r.get("zone") == zone and (not out or out[-1][1] != r["classes"][0]["label"]):
            out.append((r["frame"], r["classes"][0]["label"]))
    return out


def truth(zone: str) -> list[tuple[int, str]]:
    return [(start, EXPECTED[name]) for start, name in SCRIPT[zone]]


def camera(video: Path, *args: str):
    p = run_edgecls("camera", V2, "--labels", LABELS, "--backend", "cpu", "--source", video, "--json",
                    "--top-k", "1", *ZONES, *args, timeout=300)
    assert p.returncode == 0, p.stderr
    rows = json_lines(p.stdout)
    return rows[:-1], rows[-1]["summary"], p


def assert_found(rows: list[dict], zone: str, within: int = 2) -> None:
    """Every change of the zone reported within ``within`` frames, with its label; none invented."""
    found, want = changes(rows, zone), truth(zone)
    assert [label for _, label in found] == [label for _, label in want], (zone, found)
    for (seen, _), (start, _) in zip(found, want):
        assert start <= seen <= start + within, (zone, found, want)


def test_always_classifies_each_zone_of_every_frame_from_the_full_frame(video):
    rows, summary, p = camera(video)
    assert {(r["frame"], r["zone"]) for r in rows} == {(n, z) for n in range(N) for z in BOXES}
    for zone in BOXES:
        assert changes(rows, zone) == truth(zone)  # at the very frame
    assert summary["zones"]["door"]["classified"] == N and summary["zones"]["door"]["skipped"] == 0
    assert summary["zones"]["spot"]["latency_ms"]["invoke"] > 0 and summary["classified"] == N
    assert "zones in the 640x480 frame: door 240x240 at (40, 60), spot 256x216 at (320, 240)" in p.stderr
    on_change = [r for r in camera(video, "--on-change")[0]]
    assert sorted((r["frame"], r["zone"], r["classes"][0]["label"]) for r in on_change) == sorted(
        (start, zone, label) for zone in BOXES for start, label in truth(zone))


def test_motion_finds_every_change_and_costs_almost_nothing_on_a_static_scene(video):
    rows, summary, p = camera(video, "--trigger", "motion")
    for zone in BOXES:
        assert_found(rows, zone)
        classified = sorted(r["frame"] for r in rows if r["zone"] == zone)
        assert summary["zones"][zone] | {"latency_ms": None} == {
            "classified": len(classified), "skipped": N - len(classified), "latency_ms": None}
        # static: from 4 frames after a change (or the start) until the next; the white square keeps
        # moving outside the zones all the time
        starts = [s for s, _ in truth(zone)]
        static = [n for n in range(N) if all(not (s <= n < s + 4) for s in starts)]
        for i in range(len(static) - 9):
            window = static[i:i + 10]
            if window[-1] - window[0] == 9:  # ten consecutive static frames
                assert sum(window[0] <= n <= window[-1] for n in classified) <= 1, (zone, classified)
        assert len(classified) <= 4 * len(starts), (zone, classified)
    assert "door" in p.stderr and "skipped" in p.stderr


def test_motion_with_smoothing_and_on_change_reports_each_change_once(video):
    rows, _, _ = camera(video, "--trigger", "motion", "--smooth", "2", "--on-change")
    for zone in BOXES:
        assert [(r["frame"], r["classes"][0]["label"]) for r in rows if r["zone"] == zone] == changes(rows, zone)
        assert_found(rows, zone)


def test_every_seconds_classifies_the_first_frame_then_on_the_timer(video):
    rows, summary, _ = camera(video, "--trigger", "every:3600")
    assert [(r["frame"], r["zone"]) for r in rows] == [(0, "door"), (0, "spot")]
    assert summary["zones"]["door"] == {"classified": 1, "skipped": N - 1, "latency_ms": summary["zones"]["door"]["latency_ms"]}


# --- the trigger's own logic, without a model ----------------------------------------------------


def test_motion_image_ignores_noise_and_sees_a_change():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    noisy = np.clip(a.astype(int) + rng.integers(-6, 7, a.shape), 0, 255).astype(np.uint8)
    assert motion_image(a).shape == (37, 50)
    assert changed_fraction(motion_image(a), motion_image(noisy)) == 0.0
    b = a.copy()
    b[:150] = 255 - b[:150]
    assert changed_fraction(motion_image(a), motion_image(b)) > 0.3


def test_motion_trigger_runs_until_the_label_is_stable_then_sleeps():
    s = ZoneState(Zone("door", 0, 0, 1, 1, True), Trigger("motion"), 0.05, every=10.0)
    still, moved = np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 200, np.uint8)
    assert s.wants(still, 0.0) == (True, True)  # the first frame: its state is known from the start
    s.settle(1, True)
    assert s.wants(still, 0.1) == (True, False)  # the first result is not confirmed yet
    s.settle(1, False)
    assert [s.wants(still, 0.2 + i / 10)[0] for i in range(5)] == [False] * 5
    assert s.wants(moved, 1.0) == (True, True)
    s.settle(2, True)
    assert s.wants(moved, 1.1) == (True, False)
    s.settle(3, False)  # the label still moves: go on
    assert s.wants(moved, 1.2) == (True, False)
    s.settle(3, False)
    assert s.wants(moved, 1.3) == (False, False)
    assert s.wants(moved, 11.25) == (True, False)  # the heartbeat


# --- bad specs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, fragments", [
    (["--zone", "door=1,2,3"], ["--zone 'door=1,2,3'", "four numbers X,Y,W,H"]),
    (["--zone", "=0,0,1,1"], ["no name"]),
    (["--zone", "front door=0,0,1,1"], ["letters, digits"]),
    (["--zone", "door=0.5,0,0.6,1"], ["X+W and Y+H must be at most 1"]),
    (["--zone", "door=0,0,0,1"], ["W and H above 0"]),
    (["--zone", "door=10,10,20.5,30"], ["whole numbers"]),
    (["--zone", "door=0,0,1,1", "--zone", "door=0,0,0.5,0.5"], ["--zone door", "two zones with this name"]),
    (["--zone", "door=600,400,100,100"], ["--zone door=600,400,100,100", "outside the 640x480 frame"]),
    (["--zone", "door=0,0,0.001,0.5"], ["at least 8x8"]),
    (["--zone", "door=0,0,1,1", "--trigger", "sometimes"], ["--trigger 'sometimes'", "always, motion or every"]),
    (["--zone", "door=0,0,1,1", "--trigger", "every:0"], ["every:SECONDS takes a number"]),
    (["--zone", "door=0,0,1,1", "--every", "5"], ["--every is the heartbeat of --trigger motion"]),
    (["--trigger", "motion"], ["--trigger", "add --zone"]),
    (["--zone", "door=0,0,1,1", "--zone", "spot=0,0,1,1", "--gpio", "17=cat"], ["--gpio 17=cat", "door:cat"]),
    (["--zone", "door=0,0,1,1", "--backend", "imx500"], ["--zone", "imx500"]),
])
def test_bad_zone_specs_are_one_line_errors_before_the_camera_starts(video, args, fragments):
    p = run_edgecls("camera", V2, "--labels", LABELS, "--source", video, *args, timeout=120)
    assert_one_line_error(p, *fragments)
    assert p.stdout == ""  # nothing classified


def test_a_zone_outside_a_frame_known_only_in_the_loop_fails_at_the_first_frame(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "00.png").write_bytes(b"not a picture")  # the pre-check cannot read it: the loop checks
    Image.fromarray(scene(0)).save(folder / "01.png")
    p = run_edgecls("camera", V2, "--labels", LABELS, "--source", folder, "--zone", "door=600,400,100,100",
                    timeout=120)
    assert_one_line_error(p, "--zone door=600,400,100,100", "outside the 640x480 frame")


def test_zone_parsing_in_pixels_and_fractions():
    door, spot = parse_zones(["door=40,60,240,240", "spot=0.5,0.5,0.4,0.45"])
    assert (door.fractions, spot.fractions) == (False, True)
    assert door.box(W, H) == BOXES["door"] and spot.box(W, H) == BOXES["spot"]
    zs = ZoneSet([door, spot])
    assert zs.names() == ["door", "spot"]


# --- actions per zone --------------------------------------------------------------------------------


@pytest.mark.mqtt
def test_mqtt_publishes_a_state_topic_and_a_home_assistant_entity_per_zone(broker, video):
    prefix = "test/garage"
    sub = mosquitto.Subscriber(broker.port, [f"{prefix}/#", "homeassistant/#"])
    try:
        rows, summary, p = camera(video, "--trigger", "motion", "--mqtt", f"{broker.url}/{prefix}",
                                  "--mqtt-interval", "0", "--ha-binary", "Egyptian cat", "--ha-binary", "spot:chickadee")
        sub.wait_for(lambda m: any(x.payload == b"offline" for x in m))
        for zone in BOXES:
            states = [m.json() for m in sub.on(f"{prefix}/{zone}/state")]
            assert [(s["zone"], s["label"]) for s in states] == [(zone, label) for _, label in truth(zone)]
            assert [s["frame"] for s in states] == [f for f, _ in changes(rows, zone)]
        assert not sub.on(f"{prefix}/state")  # no whole-frame state with zones
        assert summary["actions"]["changes"] == 5 and summary["actions"]["mqtt"]["sent"] == 5
        configs = {m.topic: m.json() for m in sub.messages if m.topic.startswith("homeassistant/")}
        node = "test_garage"
        assert set(configs) == {f"homeassistant/sensor/{node}/door/config", f"homeassistant/sensor/{node}/spot/config",
                                f"homeassistant/binary_sensor/{node}/door_Egyptian_cat/config",
                                f"homeassistant/binary_sensor/{node}/spot_Egyptian_cat/config",
                                f"homeassistant/binary_sensor/{node}/spot_chickadee/config"}
        door = configs[f"homeassistant/sensor/{node}/door/config"]
        assert door["state_topic"] == f"{prefix}/door/state" and door["name"] == "door"
        assert len({c["unique_id"] for c in configs.values()}) == 5
        assert len({json.dumps(c["device"]) for c in configs.values()}) == 1  # one device, an entity per zone
        spot_bird = configs[f"homeassistant/binary_sensor/{node}/spot_chickadee/config"]
        assert spot_bird["state_topic"] == f"{prefix}/spot/state" and "chickadee" in spot_bird["value_template"]
    finally:
        sub.close()


# --- collect per zone ----------------------------------------------------------------------------------


def test_collect_with_a_zone_saves_the_zone_crop_the_camera_will_classify(video, tmp_path):
    p = run_edgecls("collect", tmp_path / "photos", "--source", video, "--label", "cat", "--count", "3",
                    "--every", "0", "--zone", "door=40,60,240,240", timeout=120)
    assert p.returncode == 0, p.stderr
    saved = sorted((tmp_path / "photos" / "cat").iterdir())
    assert len(saved) == 3
    crop = np.asarray(Image.open(saved[0]).convert("RGB"), dtype=np.int16)
    assert crop.shape == (240, 240, 3)
    x0, y0, x1, y1 = BOXES["door"]
    assert np.abs(crop - scene(0)[y0:y1, x0:x1]).mean() < 8  # the zone, not the frame squeezed (JPEG twice)
    p = run_edgecls("collect", tmp_path / "photos", "--source", video, "--label", "cat", "--count", "1",
                    "--zone", "door=600,400,100,100", timeout=120)
    assert_one_line_error(p, "--zone door=600,400,100,100", "outside the 640x480 frame")


def test_the_collect_page_outlines_the_zone_its_photos_save(video, tmp_path):
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "collect", str(tmp_path / "photos"), "--source",
                             str(video), "--serve", "127.0.0.1:0", "--zone", "door=40,60,240,240"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.time() + 60
        while time.time() < deadline and url is None:
            m = re.search(r"on (http://\S+/)", proc.stderr.readline())
            url = m.group(1) if m else None
        assert url, "no collect page"
        zone = None
        while time.time() < deadline and zone is None:
            with urllib.request.urlopen(url + "collect.json", timeout=5) as r:
                zone = json.loads(r.read())["zone"]
            time.sleep(0.2)
        assert zone == {"name": "door", "box": [40, 60, 280, 300], "picture": [640, 480]}
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_gpio_follows_the_zone_its_rule_names():
    gpiozero = pytest.importorskip("gpiozero")
    from gpiozero.pins.mock import MockFactory

    from edge_runtime.actions import ActionOptions, Actions
    from edge_runtime.model.postprocess import Class

    labels = ["open", "closed", "car", "empty"]
    old, gpiozero.Device.pin_factory = gpiozero.Device.pin_factory, MockFactory()
    try:
        pin = gpiozero.Device.pin_factory.pin
        acts = Actions(ActionOptions(gpio=["17=door:open", "27=spot:car"]), labels, zones=["door", "spot"]).start()

        def levels(expect: tuple[bool, bool]) -> tuple[bool, ...]:
            end = time.monotonic() + 5
            while (got := tuple(bool(pin(n).state) for n in (17, 27))) != expect and time.monotonic() < end:
                time.sleep(0.01)
            return got

        acts.observe(0, 0.0, [Class(0, "open", 0.9)], zone="door")
        assert levels((True, False)) == (True, False)
        acts.observe(0, 0.0, [Class(3, "empty", 0.9)], zone="spot")  # another zone leaves pin 17 alone
        assert levels((True, False)) == (True, False)
        acts.observe(1, 0.1, [Class(2, "car", 0.9)], zone="spot")
        assert levels((True, True)) == (True, True)
        acts.observe(2, 0.2, [Class(1, "closed", 0.9)], zone="door")
        assert levels((False, True)) == (False, True)
        assert acts.close()["changes"] == 4
    finally:
        gpiozero.Device.pin_factory = old


def test_status_json_and_mining_carry_each_zone(video, tmp_path):
    from edge_runtime import Classifier
    from edge_runtime.dataset.mining import Miner
    from edge_runtime.live import loop, sources
    from edge_runtime.web import server as webview

    view = webview.View()
    miner = Miner(tmp_path / "mined", score=1.0, margin=1.0, per_minute=100, wait=True)  # keep every classification
    zones = ZoneSet(parse_zones(["door=40,60,240,240", "spot=0.5,0.5,0.4,0.45"]), Trigger.parse("motion"))
    with Classifier(V2, labels=LABELS, backend="cpu") as clf:
        src, _ = sources.open_source(str(video), (clf.width, clf.height))
        src.open()
        s = loop.run(clf, src, lambda d: None, loop.Options(top=2), view=view, miner=miner, zones=zones)
    miner.close()
    status = json.loads(json.dumps(view.status))  # what /status.json serves
    assert set(status["zones"]) == {"door", "spot"}
    assert status["zones"]["door"]["box"] == list(BOXES["door"])
    assert status["zones"]["door"]["classes"][0]["label"] == "Egyptian cat"  # the newest: cat again from frame 30
    assert status["zones"]["spot"]["classified"] + status["zones"]["spot"]["skipped"] == N
    assert s.to_dict()["summary"]["zones"]["spot"]["classified"] == status["zones"]["spot"]["classified"]
    index = [json.loads(line) for line in (tmp_path / "mined" / "index.jsonl").read_text().splitlines()]
    assert {r["zone"] for r in index} == {"door", "spot"}
    for r in index:
        with Image.open(tmp_path / "mined" / r["file"]) as crop:
            size = crop.size
        x0, y0, x1, y1 = BOXES[r["zone"]]
        assert size == (x1 - x0, y1 - y0) and f"_{r['zone']}_" in r["file"]


# --- the live page ------------------------------------------------------------------------------------


@pytest.mark.browser
def test_live_page_draws_each_zone_with_its_label_and_score(tmp_path):
    """Screenshot: EDGECLS_DOCS_SCREENSHOTS=1 writes docs/live-page-zones.png for the README."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in range(0, N, 2):
        Image.fromarray(scene(n)).save(folder / f"{n:02d}.png")
    cmd = [sys.executable, "-m", "edge_runtime.cli", "camera", str(V2), "--labels", str(LABELS), "--source",
           str(folder), "--fps", "2", "--top-k", "1", *ZONES, "--trigger", "motion", "--serve", "127.0.0.1:0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.time() + 60
        while time.time() < deadline and url is None:
            line = proc.stderr.readline()
            m = re.search(r"web view on (http://\S+/)", line)
            url = m.group(1) if m else url
            if not line and proc.poll() is not None:
                break
        assert url, "no web view"
        time.sleep(1.5)
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=2000",
                              "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        boxes = dict(re.findall(r'class="zone" data-zone="(\w+)" style="([^"]+)"', dom))
        assert set(boxes) == {"door", "spot"}, dom[-3000:]
        door = {k.strip(): v.strip() for k, v in (x.split(":", 1) for x in boxes["door"].split(";") if ":" in x)}
        placed = {k: float(door[k].rstrip("%")) for k in ("left", "top", "width", "height")}
        assert placed == {"left": 6.25, "top": 12.5, "width": 37.5, "height": 50.0}  # 40,60,240,240 of 640x480
        assert re.search(r"door: (Egyptian cat|macaw) [01]\.\d\d</span>", dom) and re.search(r"spot: \w+", dom), \
            re.search(r'id="zones">(.*?)</div></div></section>', dom, re.S).group(1)[:1500]
        docs = ROOT / "docs" if os.environ.get("EDGECLS_DOCS_SCREENSHOTS") else tmp_path
        docs.mkdir(exist_ok=True)
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1280,800", "--virtual-time-budget=1500", f"--screenshot={docs / 'live-page-zones.png'}",
                        url], capture_output=True, timeout=120)
        assert (docs / "live-page-zones.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


# --- bench ----------------------------------------------------------------------------------------------


def test_bench_times_each_zone_of_the_image(tmp_path):
    image = tmp_path / "scene.png"
    Image.fromarray(scene(0)).save(image)
    p = run_edgecls("bench", V2, "--labels", LABELS, "--input", image, "--runs", "5", "--threads", "1", "--json",
                    "--in-process", *ZONES, timeout=300)
    assert p.returncode == 0, p.stderr
    row = json_lines(p.stdout)[0]
    z = row["zones_ms"]
    assert set(z) == {"door", "spot", "all"} and z["door"]["infer"] > 0 and z["door"]["crop_resize"] > 0
    assert z["all"]["total"] == pytest.approx(z["door"]["total"] + z["spot"]["total"])
    assert "bench: zones of" in p.stderr and "all zones" in p.stderr
    assert_one_line_error(run_edgecls("bench", V2, "--labels", LABELS, "--zone", "door=1,2"), "four numbers")
