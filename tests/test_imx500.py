"""The Raspberry Pi AI Camera on the device side, against tests/standins/picamera2 (built from
picamera2's imx500.py: the same sysfs search, output tensors and their shapes through the request
metadata): ranking with the bundle's labels, frames without a tensor, KPI, errors, doctor."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import CORAL, assert_one_line_error, json_lines, run_edgecls

from edge_runtime import write_bundle
from edge_runtime.cli.doctor import imx500_check
from edge_runtime.live import imx500

STANDINS = Path(__file__).parent / "standins"
LABELS = ["zero", "one", "two", "three", "four"]
CAMERA_ID = "/base/axi/pcie@120000/rp1/i2c@88000/imx500@1a"


def fake_sysfs(root: Path, sensors: dict[int, str]) -> Path:
    """/sys/class/video4linux/v4l-subdevN/device as a Pi 5 shows them (links only: picamera2 reads
    the link targets, never follows them)."""
    for n, model in sensors.items():
        dev = root / "devices" / f"10-00{n}a"
        dev.mkdir(parents=True)
        (dev / "driver").mkdir()
        (dev / "driver" / "module").symlink_to(f"../../../../module/{model}")
        (dev / "of_node").symlink_to(f"../../../firmware/devicetree/base/axi/pcie@120000/rp1/i2c@88000/{model}@1a")
        sub = root / "class" / "video4linux" / f"v4l-subdev{n}"
        sub.mkdir(parents=True)
        (sub / "device").symlink_to(f"../../../devices/10-00{n}a")
    return root


def make_bundle(dest: Path, kind: str = "probabilities", rpk: bool = True, expected=None) -> Path:
    """A 5-class bundle with an IMX500 section as convert --imx500 writes it (the CPU model is one
    of Coral's: the imx500 backend never loads it)."""
    expected = expected if expected is not None else [[0.05, 0.85, 0.05, 0.05, 0.0], [0.0, 0.0, 0.1, 0.3, 0.6]]
    golden = {"tolerance": 2 / 256, "photos": [{"file": None, "scores": s, "top1": int(np.argmax(s)),
                                                "label": LABELS[int(np.argmax(s))]} for s in expected]}
    meta = {"name": "tiny", "input": {"height": 128, "width": 128, "channels": 3, "color_order": "RGB",
                                      "resize": "bilinear", "crop": "none"},
            "output": {"kind": "probabilities", "classes": 5},
            "imx500": {"converted": True, "network": "tiny", "packer": "imx500/packerOut.zip",
                       "rpk": "imx500/network.rpk", "golden": "imx500/golden.json",
                       "input": {"width": 128, "height": 128},
                       "output": {"kind": kind, "classes": 5, "dtype": "uint8", "scale": 1 / 256}}}
    b = write_bundle(dest, {"model.tflite": CORAL / "mobilenet_v1_0.25_128_quant.tflite",
                            "labels.txt": "".join(f"{l}\n" for l in LABELS).encode(),
                            "imx500/packerOut.zip": b"PK\x05\x06" + bytes(18),
                            "imx500/golden.json": json.dumps(golden).encode()}, meta)
    if rpk:
        (b / "imx500" / "network.rpk").write_bytes(b"9464")  # made on the Pi by imx500-package
    return b


def camera(tmp_path: Path, bundle: Path, frames: list, *args: str):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"camera_id": CAMERA_ID, "input_size": [128, 128], "frames": frames}))
    sysfs = fake_sysfs(tmp_path / "sys", {3: "imx500", 4: "imx708"})
    env = {"PYTHONPATH": os.pathsep.join([str(STANDINS), os.environ.get("PYTHONPATH", "")]),
           "EDGECLS_TEST_IMX500_SCRIPT": str(script), "EDGECLS_TEST_SYSFS": str(sysfs), "EDGECLS_SYSFS": str(sysfs)}
    return run_edgecls("camera", bundle, "--backend", "imx500", *args, env=env, timeout=120)


def test_find_devices_takes_only_the_imx500(tmp_path):
    sysfs = fake_sysfs(tmp_path, {2: "imx708", 5: "imx500"})
    devs = imx500.find_devices(sysfs)
    assert [(d.subdev, d.device_id) for d in devs] == [("/dev/v4l-subdev5", "10-005a")]
    assert devs[0].of_node.endswith("imx500@1a")
    status, found, _ = imx500_check(sysfs)
    assert status in ("ok", "warn") and "/dev/v4l-subdev5" in found
    assert imx500_check(tmp_path / "nothing")[0] == "missing"


def test_camera_ranks_the_output_tensor_with_the_bundle_labels(tmp_path):
    b = make_bundle(tmp_path / "b")
    expected = json.loads((b / "imx500" / "golden.json").read_text())["photos"]
    frames = [{"outputs": [expected[0]["scores"]], "shapes": [[5]], "kpi": [4100, 900]},
              None,  # a frame the sensor sent without a tensor
              {"outputs": [expected[1]["scores"]], "shapes": [[5, 1, 1]], "kpi": [4300, 1100]}]
    p = camera(tmp_path, b, frames, "--json", "--max-frames", "2", "--top-k", "2")
    assert p.returncode == 0, p.stderr[-3000:]
    lines = json_lines(p.stdout)
    got = [l for l in lines if "classes" in l]
    assert [[c["label"] for c in g["classes"]] for g in got] == [["one", "zero"], ["four", "three"]]
    assert got[0]["classes"][0]["score"] == pytest.approx(0.85, abs=1e-6)  # as it came: no softmax
    assert got[1]["classes"][1]["score"] == pytest.approx(0.3, abs=1e-6)
    assert (got[0]["latency_ms"]["invoke"], got[0]["latency_ms"]["dsp"]) == (4.1, 0.9)  # the sensor's DNN and DSP
    s = lines[-1]["summary"]
    assert (s["classified"], s["without_scores"]) == (2, 1) and s["captured"] >= 3  # capture may read one ahead
    assert s["latency_ms"]["invoke"] == pytest.approx(4.2)
    assert "IMX500" in p.stderr and "5 classes" in p.stderr


def test_logits_get_a_softmax_probabilities_do_not(tmp_path):
    b = make_bundle(tmp_path / "b", kind="logits")
    net = imx500.network(b)
    s = imx500.scores([np.array([2.0, 0.0, 0.0, 0.0, 1.0], dtype=np.float32)], net)
    e = np.exp([2.0, 0, 0, 0, 1.0])
    np.testing.assert_allclose(s, e / e.sum(), rtol=1e-6)
    assert imx500.scores(None, net) is None
    net = imx500.network(make_bundle(tmp_path / "p"))
    np.testing.assert_array_equal(imx500.scores([np.full((5,), 0.2, np.float32)], net), np.full(5, 0.2, np.float32))


def test_another_network_on_the_camera_is_a_one_line_error(tmp_path):
    b = make_bundle(tmp_path / "b")
    p = camera(tmp_path, b, [{"outputs": [[0.001] * 1000], "shapes": [[1000]], "kpi": [1, 1]}], "--max-frames", "1")
    assert_one_line_error(p, "returned 1000 values", "5 labels", "network.rpk")


def test_missing_rpk_says_how_to_make_it(tmp_path):
    b = make_bundle(tmp_path / "b", rpk=False)
    p = camera(tmp_path, b, [None], "--max-frames", "1")
    assert_one_line_error(p, "network.rpk", "imx500-package -i", "imx500-tools")


def test_bundle_without_an_imx500_network(tmp_path, coral_bundle):
    p = camera(tmp_path, coral_bundle, [None], "--max-frames", "1")
    assert_one_line_error(p, "no IMX500 network", "--imx500")


def test_no_ai_camera_is_a_one_line_error(tmp_path):
    b = make_bundle(tmp_path / "b")
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"camera_id": CAMERA_ID, "frames": [None]}))
    env = {"PYTHONPATH": str(STANDINS), "EDGECLS_TEST_IMX500_SCRIPT": str(script),
           "EDGECLS_TEST_SYSFS": str(tmp_path / "empty")}
    p = run_edgecls("camera", b, "--backend", "imx500", "--max-frames", "1", env=env)
    assert_one_line_error(p, "no Raspberry Pi AI Camera")


def test_auto_prefers_the_imx500_only_with_camera_and_network(tmp_path, coral_bundle):
    b = make_bundle(tmp_path / "b")
    sysfs = fake_sysfs(tmp_path / "sys", {3: "imx500"})
    assert imx500.prefer(b, sysfs)
    assert not imx500.prefer(b, tmp_path / "none")
    assert not imx500.prefer(coral_bundle, sysfs)
    assert not imx500.prefer(make_bundle(tmp_path / "norpk", rpk=False), sysfs)


def _script(tmp_path: Path, frames: list, **more) -> Path:
    """The stand-in's script (``more``: e.g. fail="start")."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"camera_id": CAMERA_ID, "input_size": [128, 128], "frames": frames, **more}))
    return script


def _env(tmp_path: Path, frames: list, **more) -> dict:
    script = _script(tmp_path, frames, **more)
    sysfs = fake_sysfs(tmp_path / "sys", {3: "imx500"})
    return {"PYTHONPATH": os.pathsep.join([str(STANDINS), os.environ.get("PYTHONPATH", "")]),
            "EDGECLS_TEST_IMX500_SCRIPT": str(script), "EDGECLS_TEST_SYSFS": str(sysfs)}


def test_bench_reports_the_sensors_rate_and_dnn_time(tmp_path):
    b = make_bundle(tmp_path / "b")
    frames = [{"outputs": [[0.1, 0.6, 0.1, 0.1, 0.1]], "shapes": [[5]], "kpi": [4000, 800]}, None,
              {"outputs": [[0.1, 0.1, 0.6, 0.1, 0.1]], "shapes": [[5]], "kpi": [6000, 900]}]
    out = tmp_path / "bench.json"
    p = run_edgecls("bench", b, "--backend", "imx500", "--runs", "4", "--warmup", "0", "--in-process", "--save", out,
                    env=_env(tmp_path, frames), timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    (row,) = json.loads(out.read_text())["results"]
    assert row["status"] == "ok" and row["backend"] == "imx500"
    s = row["invoke_ms"]
    assert s["count"] == 4 and s["min"] == pytest.approx(4.0) and s["max"] == pytest.approx(6.0)
    assert row["imx500"]["without_tensor"] >= 1 and row["imx500"]["classified"] == 4
    assert "imx500" in p.stdout


def test_verify_on_the_imx500_says_what_it_could_not_check(tmp_path):
    b = make_bundle(tmp_path / "b")
    p = run_edgecls("verify", b, "--backend", "imx500", env=_env(tmp_path, [None]))
    assert_one_line_error(p, "network.rpk", "were not checked", "--backend cpu")


@pytest.mark.parametrize("option", [["--threads", "2"], ["--isp-resize", "off"], ["--interpreter", "tflite_runtime"]])
def test_options_that_need_a_model_run_here_are_refused_by_name(tmp_path, option):
    p = camera(tmp_path, make_bundle(tmp_path / "b"), [None], *option)
    assert_one_line_error(p, option[0], "sensor", "--backend cpu")


def test_auto_with_threads_runs_the_model_here_and_says_why(tmp_path):
    b = make_bundle(tmp_path / "b")
    env = _env(tmp_path, [None])
    p = run_edgecls("camera", b, "--threads", "1", "--json", env={**env, "EDGECLS_SYSFS": env["EDGECLS_TEST_SYSFS"]},
                    timeout=120)
    assert "--threads applies only to a model run on this machine" in p.stderr, p.stderr[-2000:]


@pytest.mark.mqtt
def test_auto_on_an_ai_camera_feeds_the_one_loop_and_every_sink(broker, tmp_path):
    """--backend auto on an AI Camera with --serve, --labels, --mqtt, --save-uncertain and --json:
    each works as on the CPU path; SIGTERM ends it with the summary."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    import mosquitto

    b = make_bundle(tmp_path / "b")
    names = tmp_path / "names.txt"
    names.write_text("".join(f"{n}\n" for n in ("cat", "dog", "bird", "fish", "empty")))
    frames = [{"outputs": [[0.05, 0.85, 0.05, 0.05, 0.0]], "shapes": [[5]], "kpi": [4100, 900]},
              {"outputs": [[0.0, 0.0, 0.1, 0.3, 0.6]], "shapes": [[5]], "kpi": [4300, 1100]}]  # unsure: 0.6 < 0.7
    env = {**os.environ, **_env(tmp_path, frames)}
    env["EDGECLS_SYSFS"] = env["EDGECLS_TEST_SYSFS"]
    port = mosquitto.free_port()
    sub = mosquitto.Subscriber(broker.port, ["ai/cam/#"])
    mined = tmp_path / "mined"
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "camera", str(b), "--serve", f"127.0.0.1:{port}",
                             "--labels", str(names), "--mqtt", f"{broker.url}/ai/cam", "--mqtt-interval", "0",
                             "--save-uncertain", str(mined), "--uncertain-score", "0.7", "--save-per-minute", "100",
                             "--json", "--fps", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        status = None
        for _ in range(100):
            time.sleep(0.2)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=2) as r:
                    status = json.loads(r.read())
                if (status.get("frame") or 0) >= 6 and list(mined.glob("*.jpg")):
                    break
            except OSError:
                continue
        assert status is not None and status["frame"] >= 6, status
        assert status["info"]["backend"] == "imx500"
        assert status["classes"][0]["label"] in ("dog", "empty")  # the names from --labels
        sub.wait_for(lambda m: any(x.topic == "ai/cam/state" and x.json()["label"] == "empty" for x in m))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
    assert proc.returncode == 0, err[-3000:]
    lines = json_lines(out)
    summary = lines[-1]["summary"]
    assert summary["source"] == "imx500" and summary["ended"] == "interrupted"
    assert summary["classified"] >= 6 and summary["actions"]["mqtt"]["sent"] >= 2
    got = [l["classes"][0]["label"] for l in lines if "classes" in l]
    assert set(got) == {"dog", "empty"} and len(got) == summary["classified"]
    index = [json.loads(x) for x in (mined / "index.jsonl").read_text().splitlines()]
    assert index and all(r["label"] == "empty" for r in index)  # only the unsure frames were kept
    assert all((mined / r["file"]).is_file() for r in index)
    assert "IMX500" in err and "frames classified" in err


def test_bench_ends_with_a_clear_error_when_no_frame_has_a_dnn_time(tmp_path):
    """Issue 28.9: frames with an output tensor but no CnnKpiInfo made `bench --backend imx500`
    read for ever; it gives up after STALL_FRAMES frames (or STALL_S seconds) and says why."""
    import time

    from edge_runtime.bench import imx500 as bench_imx500

    b = make_bundle(tmp_path / "b")
    frames = [{"outputs": [[0.1, 0.6, 0.1, 0.1, 0.1]], "shapes": [[5]]}, None]  # a tensor, never a KPI
    out = tmp_path / "bench.json"
    t = time.perf_counter()
    p = run_edgecls("bench", b, "--backend", "imx500", "--runs", "4", "--warmup", "0", "--in-process", "--save", out,
                    env=_env(tmp_path, frames), timeout=120)
    took = time.perf_counter() - t
    (row,) = json.loads(out.read_text())["results"]
    assert row["status"] == "unavailable", row
    assert f"{bench_imx500.STALL_FRAMES} frames" in row["reason"] and "no CnnKpiInfo" in row["reason"], row["reason"]
    assert took < bench_imx500.STALL_S + 60 and "Traceback" not in p.stderr


@pytest.fixture
def standin_picamera2(monkeypatch):
    """picamera2 importable in this process: the stand-in, taken out of sys.modules again after the test."""
    import sys

    monkeypatch.syspath_prepend(str(STANDINS))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name == "picamera2" or name.startswith("picamera2."):
            del sys.modules[name]


@pytest.mark.parametrize("step", ["configure", "start"])
def test_a_camera_that_fails_to_configure_or_start_is_closed_again(tmp_path, monkeypatch, standin_picamera2, step):
    """Issue 28.17: Session.open leaked the camera when configure/start raised, so the next open
    found it busy. The stand-in holds a camera from Picamera2() until close(), as libcamera does."""
    from edge_runtime.errors import BackendUnavailable

    b = make_bundle(tmp_path / "b")
    frame = {"outputs": [[0.1, 0.6, 0.1, 0.1, 0.1]], "shapes": [[5]], "kpi": [4000, 800]}
    env = _env(tmp_path, [frame], fail=step)
    for k in ("EDGECLS_TEST_IMX500_SCRIPT", "EDGECLS_TEST_SYSFS"):
        monkeypatch.setenv(k, env[k])
    net = imx500.network(b)
    with pytest.raises(BackendUnavailable, match=f"cannot start .*Failed to {step} camera"):
        imx500.Session(net).open()
    _script(tmp_path, [frame])  # the same camera, now without the fault
    session = imx500.Session(net).open()  # would be "Device or resource busy" had the first kept it
    try:
        scores, kpi = session.read()
        assert int(np.argmax(scores)) == 1 and kpi == (4.0, 0.8)
    finally:
        session.close()


def test_camera_command_closes_the_ai_camera_on_an_early_failure(tmp_path):
    """Issue 28.17: `camera --backend imx500` releases the camera when it fails after opening it
    (here --serve on a port that is taken) or while starting it."""
    import socket

    b = make_bundle(tmp_path / "b")
    log = tmp_path / "camera.log"
    frame = {"outputs": [[0.1, 0.6, 0.1, 0.1, 0.1]], "shapes": [[5]], "kpi": [4000, 800]}
    env = {**_env(tmp_path, [frame]), "EDGECLS_TEST_PICAMERA2_LOG": str(log)}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = run_edgecls("camera", b, "--backend", "imx500", "--serve", str(port), "--max-frames", "1", env=env,
                        timeout=120)
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
    assert log.read_text().split("\n")[:-1] == ["acquire 0", "release 0"]
    log.unlink()
    _script(tmp_path, [frame], fail="start")
    p = run_edgecls("camera", b, "--backend", "imx500", "--max-frames", "1", env=env, timeout=120)
    assert_one_line_error(p, "the AI Camera cannot start", "Failed to start camera")
    assert log.read_text().split("\n")[:-1] == ["acquire 0", "release 0"]
