"""Prometheus metrics and drift (issue 35): /metrics on a running camera, every metric moving, drift
low on in-distribution photos and high on darkened and blurred ones, the access rules, the
runtime without prometheus-client, and a real Prometheus scraping a camera."""

from __future__ import annotations

import base64
import json
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import CORAL, CORAL_RESIZE, ROOT, coral_bundle_meta, json_lines, run_edgecls
from PIL import Image, ImageEnhance, ImageFilter

from edge_runtime.bundle.reference import Reference
from edge_runtime.errors import BundleError
from edge_runtime.live.drift import Drift, psi

V2 = "mobilenet_v2_1.0_224_quant"
PHOTOS = ("cat.bmp", "parrot.jpg", "bird.bmp")
prom_parser = pytest.importorskip("prometheus_client.parser")


def crops(dest: Path, per_photo: int, seed: int, shift: bool = False) -> Path:
    """Random crops (70-100% of each side) of Coral's three photos; ``shift``: darkened to a
    quarter and blurred, as a fogged lens at dusk would show them."""
    rng = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        im = Image.open(CORAL / name).convert("RGB")
        w, h = im.size
        for i in range(per_photo):
            s = rng.uniform(0.7, 1.0)
            cw, ch = int(w * s), int(h * s)
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            c = im.crop((x, y, x + cw, y + ch))
            if shift:
                c = ImageEnhance.Brightness(c).enhance(0.25).filter(ImageFilter.GaussianBlur(6))
            c.save(dest / f"{i:03d}_{Path(name).stem}.png")
    return dest


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """Coral's MobileNet V2 as a bundle whose reference is 36 held-out crops of its three photos
    (what adopt --photos records, made here without TensorFlow)."""
    from edge_runtime import Classifier, write_bundle
    from edge_runtime.model.contract import InputContract

    root = tmp_path_factory.mktemp("metrics")
    meta = coral_bundle_meta(V2, CORAL_RESIZE)
    c = InputContract.from_json(meta["input"])
    held_out = crops(root / "held-out", 12, seed=0)
    with Classifier(CORAL / f"{V2}.tflite", labels=CORAL / "imagenet_labels.txt", backend="cpu", resize=c.resize,
                    crop=c.crop, normalization=c.normalization) as clf:
        scores = np.stack([clf.scores(clf.infer(clf.prepare(str(p)))) for p in sorted(held_out.iterdir())])
    meta["reference"] = Reference.from_scores(scores, "36 crops").to_json()
    return write_bundle(root / "v2", {"model.tflite": CORAL / f"{V2}.tflite",
                                      "labels.txt": CORAL / "imagenet_labels.txt"}, meta)


# --- the statistic, pure ------------------------------------------------------------------------


def test_psi_is_near_zero_for_two_samples_of_one_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    edges = Reference.from_scores(np.eye(2)).edges

    def hist(x):
        from edge_runtime.bundle.reference import histogram
        return histogram(np.clip(x, 0, 1), edges)

    ref = hist(rng.beta(8, 1, 300))
    same = [psi(ref, hist(rng.beta(8, 1, 200))) for _ in range(50)]
    shifted = psi(ref, hist(rng.beta(2, 2, 200)))
    assert np.mean(same) < 0.05 and max(same) < 0.15, same  # the sampling bias is taken out
    assert shifted > 1.0


def test_drift_window_slides_and_warns_once_per_crossing():
    ref = Reference.from_scores(np.tile([[0.97, 0.02, 0.01]], (50, 1)))
    said: list[str] = []
    d = Drift(ref, window=100, warn=0.25, log=said.append)
    confident, unsure = np.array([0.97, 0.02, 0.01]), np.array([0.4, 0.35, 0.25])
    for _ in range(49):
        d.observe(confident)
    assert d.score() is None  # fewer than 50 frames: no judgement
    for _ in range(100):
        d.observe(confident)
    assert d.score().score < 0.1 and not said
    for _ in range(100):
        d.observe(unsure)
    s = d.score()
    assert s.score > 1.0 and s.frames == 100 and len(said) == 1 and "--drift-warn 0.25" in said[0]
    for _ in range(100):
        d.observe(confident)
    assert d.score().score < 0.1 and len(said) == 2 and "back below" in said[1]


def test_a_bad_reference_is_one_error_naming_the_key(tmp_path, bundle):
    from edge_runtime import load_bundle

    meta = json.loads((bundle / "edgecls.json").read_text())
    ref = meta["reference"]
    Reference.from_json(ref, "x", 1001)
    with pytest.raises(BundleError, match=r"reference.top1 must be 12 counts adding up to reference.photos"):
        Reference.from_json({**ref, "top1": ref["top1"][:-1]}, "x", 1001)
    with pytest.raises(BundleError, match=r"reference.labels must map class indices below 1001"):
        Reference.from_json({**ref, "labels": {"5000": ref["photos"]}}, "x", 1001)
    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    meta["reference"]["edges"] = [1, 0]
    (bad / "edgecls.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"edgecls.json: reference.edges must be 2 or more ascending numbers"):
        load_bundle(bad)


# --- the camera ---------------------------------------------------------------------------------


def _scrape(url: str, auth: tuple[str, str] | None = None) -> dict[str, float]:
    """/metrics as {sample name{labels}: value}."""
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    out = {}
    for fam in prom_parser.text_string_to_metric_families(text):
        for s in fam.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


_STDERR: dict[int, tuple[threading.Thread, list[str]]] = {}  # pid -> the thread reading its stderr, lines so far


def _start(args: list[str], env: dict[str, str] | None = None, command: str = "camera",
           serving: str = r"web view on (http://\S+/)") -> tuple[subprocess.Popen, str]:
    """``edgecls camera ARGS`` with its web view's URL. A thread reads its stderr from the start to
    the end (``_stop`` returns all of it): lines read here with readline() and the rest by
    communicate() would lose what the file object had buffered past the "web view on" line, such
    as the note printed right after it, whenever both lines came in one read (on a busy machine)."""
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", command, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    _STDERR[proc.pid] = (reader, lines)
    pattern = re.compile(serving)
    deadline, url = time.time() + 90, None
    while url is None and time.time() < deadline:
        alive = reader.is_alive()  # before looking: a last line comes before the end
        found = [m.group(1) for m in map(pattern.search, list(lines)) if m]
        if found:
            url = found[0]
        elif not alive:
            break
        else:
            time.sleep(0.05)
    if url is None:
        raise AssertionError(f"the camera did not serve: {_stop(proc)[-2000:]}")
    return proc, url


def _stop(proc: subprocess.Popen) -> str:
    """Stop the camera as systemd would (SIGTERM); returns everything it wrote on stderr."""
    reader, lines = _STDERR.pop(proc.pid)
    stderr, proc.stderr = proc.stderr, None  # the reader's: communicate() reads only stdout
    proc.terminate()
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    reader.join(30)
    stderr.close()
    return "".join(lines)


def _wait_frames(url: str, n: int, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with urllib.request.urlopen(url + "status.json", timeout=10) as r:
            s = json.loads(r.read())
        if (s.get("frame") or 0) + 1 >= n:
            return s
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} frames in {timeout} s")


def test_every_metric_moves_as_the_camera_runs(tmp_path, bundle):
    frames = crops(tmp_path / "live", 20, seed=1)  # 60 new crops of the same three photos
    proc, url = _start([bundle, "--source", frames, "--fps", "8", "--backend", "cpu", "--top-k", "1",
                        "--serve", "127.0.0.1:0", "--exec", "true", "--save-uncertain", tmp_path / "mined",
                        "--uncertain-score", "0.99", "--save-per-minute", "100"])
    try:
        _wait_frames(url, 12)
        first = _scrape(url + "metrics")
        status = _wait_frames(url, 60)
        time.sleep(1.0)
        last = _scrape(url + "metrics")
    finally:
        err = _stop(proc)
    grows = ["edgecls_frames_total", "edgecls_frames_captured_total", "edgecls_inference_seconds_count",
             "edgecls_inference_seconds_sum", "edgecls_preprocess_seconds_count", "edgecls_top_score_count",
             "edgecls_top_score_sum", "edgecls_label_total{label=Egyptian cat}"]
    for name in grows:
        assert last.get(name, 0) > first.get(name, 0), (name, first.get(name), last.get(name))
    assert last["edgecls_frames_total"] == 60 and last["edgecls_frames_dropped_total"] == 0
    assert last["edgecls_errors_total"] == 0
    assert {k: v for k, v in last.items() if k.startswith("edgecls_label_total")} == {
        "edgecls_label_total{label=Egyptian cat}": 20, "edgecls_label_total{label=macaw}": 20,
        "edgecls_label_total{label=chickadee}": 20}
    assert last["edgecls_actions_total{kind=exec,outcome=sent}"] >= 3  # one run per label change
    assert last["edgecls_mined_total"] > first.get("edgecls_mined_total", 0)  # frames below 0.99 were kept
    # the buckets of a histogram count up to the total
    assert last["edgecls_top_score_bucket{le=+Inf}"] == 60
    info = [k for k in last if k.startswith("edgecls_bundle_info")]
    assert len(info) == 1 and "name=mobilenet_v2_1.0_224_quant" in info[0] and "version=v2" in info[0] and "backend=cpu" in info[0] and re.search(r"sha256=[0-9a-f]{64}", info[0])
    assert last["edgecls_drift_window_frames"] == 60
    assert last["edgecls_drift_score"] < 0.1, last["edgecls_drift_score"]  # new crops of the reference's photos
    assert status["drift"]["statistic"] == "psi" and status["drift"]["score"] < 0.1
    assert "drift: off" not in err


def test_drift_is_low_on_in_distribution_photos_and_high_on_darkened_blurred_ones(tmp_path, bundle):
    runs = {}
    for name, shift in (("same", False), ("shifted", True)):
        p = run_edgecls("camera", bundle, "--source", crops(tmp_path / name, 40, seed=2, shift=shift), "--json",
                        "--backend", "cpu", "--top-k", "1")
        assert p.returncode == 0, p.stderr
        runs[name] = (json_lines(p.stdout)[-1]["summary"]["drift"], p.stderr)
    same, shifted = runs["same"][0], runs["shifted"][0]
    assert same["frames"] == shifted["frames"] == 120
    assert same["score"] < 0.1 < 0.25 < shifted["score"], (same, shifted)
    assert "warning: drift" not in runs["same"][1]
    warnings = [l for l in runs["shifted"][1].splitlines() if "warning: drift" in l]
    assert len(warnings) == 1 and "above --drift-warn 0.25" in warnings[0]  # once, not per frame
    assert re.search(r"edgecls: drift \d\.\d{3} \(significant", runs["shifted"][1])


def test_a_bundle_without_reference_says_so_once_and_has_no_drift(tmp_path, coral_bundle):
    p = run_edgecls("camera", coral_bundle, "--source", crops(tmp_path / "f", 2, seed=3), "--json", "--backend", "cpu")
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("drift: off - the bundle records no reference") == 1
    assert "drift" not in json_lines(p.stdout)[-1]["summary"]


def test_metrics_needs_a_viewer_like_status_json(tmp_path, bundle):
    from edge_runtime.web import auth

    users = tmp_path / "users.txt"
    auth.write_users(users, {"ann": auth.User("ann", "viewer", auth.hash_password("ann-secret-pw"))})
    proc, url = _start([bundle, "--source", crops(tmp_path / "f", 4, seed=4), "--backend", "cpu",
                        "--serve", "127.0.0.1:0", "--users", users])
    try:
        for path in ("metrics", "status.json"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(url + path, timeout=10)
            e.value.close()  # its unread response holds the socket (see _refused_body)
            assert e.value.code == 401
        assert _scrape(url + "metrics", ("ann", "ann-secret-pw"))["edgecls_bundle_info{backend=cpu,edgecls=" +
                                                                    _version() + ",name=mobilenet_v2_1.0_224_quant,sha256=" + _sha(bundle) +
                                                                    ",version=v2}"] == 1
    finally:
        _stop(proc)


def _refused_body(e: urllib.error.HTTPError) -> str:
    """The body of a refused request, and its response closed. An HTTPError holds the response and
    so the connection's socket; pytest.raises keeps the error in a reference cycle (its traceback's
    frame holds the ExceptionInfo), which only the cycle collector frees, at a moment of its own and
    in an order of its own: when it finalizes the socket before the response, that is "unclosed
    socket" (a ResourceWarning, an error here) in whichever test is running then."""
    with e:
        return e.read().decode()


def _version() -> str:
    from edge_runtime import __version__
    return __version__


def _sha(bundle: Path) -> str:
    from edge_runtime import load_bundle
    from edge_runtime.bench.metrics import bundle_identity
    return bundle_identity(load_bundle(bundle))["sha256"]


def test_without_prometheus_client_the_camera_runs_and_metrics_says_what_to_install(tmp_path, bundle):
    blocker = tmp_path / "blocker" / "prometheus_client"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError(\"No module named 'prometheus_client'\")\n")
    env_path = f"{blocker.parent}:{ROOT}"
    proc, url = _start([bundle, "--source", crops(tmp_path / "f", 20, seed=5), "--backend", "cpu",
                        "--serve", "127.0.0.1:0"], env={**__import__("os").environ, "PYTHONPATH": env_path})
    try:
        status = _wait_frames(url, 60)
        assert status["drift"]["score"] is not None  # drift needs no prometheus-client
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "metrics", timeout=10)
        assert e.value.code == 501
        assert _refused_body(e.value) == "/metrics needs the prometheus-client package: pip install 'edgecls[metrics]'\n"
    finally:
        err = _stop(proc)
    assert "Traceback" not in err and "note: /metrics needs the prometheus-client package" in err


# --- a real Prometheus --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed (apt-get install prometheus)")
def test_a_real_prometheus_scrapes_the_camera_and_sees_frames_grow(tmp_path, bundle):
    frames = crops(tmp_path / "f", 40, seed=6)
    proc, url = _start([bundle, "--source", frames, "--fps", "4", "--backend", "cpu", "--serve", "127.0.0.1:0"])
    port = _free_port()
    target = url.split("//")[1].rstrip("/")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: edgecls\n    static_configs: [{{targets: ['{target}']}}]\n")
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        seen: list[float] = []
        deadline = time.time() + 90
        while time.time() < deadline and not (len(seen) >= 2 and seen[-1] > seen[0]):
            time.sleep(1.5)
            try:
                result = _query(port, "edgecls_frames_total")
            except (urllib.error.URLError, ConnectionError):
                continue  # prometheus still starting
            if result:
                seen.append(float(result[0]["value"][1]))
                assert result[0]["metric"]["job"] == "edgecls"
        assert len(seen) >= 2 and seen[-1] > seen[0], (seen, prom.poll(), (tmp_path / "prometheus.log").read_text()[-2000:])
        assert _query(port, "up")[0]["value"][1] == "1"
        assert float(_query(port, "rate(edgecls_frames_total[10s])")[0]["value"][1]) > 0
    finally:
        prom.terminate()
        try:
            prom.wait(timeout=20)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        log.close()
        _stop(proc)


def _query(port: int, expr: str) -> list:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expr)}",
                                timeout=5) as r:
        return json.loads(r.read())["data"]["result"]


def test_the_grafana_dashboard_is_json_and_uses_only_metrics_the_camera_serves():
    from edge_runtime.bench import metrics

    board = json.loads((ROOT / "deploy" / "grafana" / "edgecls.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert exprs and board["title"]
    used = {n for e in exprs for n in re.findall(r"\bedgecls_[a-z0-9_]+", e)}
    served = set(re.findall(r"\bedgecls_[a-z0-9_]+", metrics.__doc__ or "")) | set(
        re.findall(r"\"(edgecls_[a-z0-9_]+)\"", Path(metrics.__file__).read_text()))
    suffixes = ("_total", "_bucket", "_sum", "_count", "_info")
    known = served | {s + x for s in served for x in suffixes}
    assert used <= known, used - known


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)")
def test_the_grafana_dashboards_queries_are_valid_promql(tmp_path):
    """promtool parses each panel's query as a recording rule (Grafana's variables filled in)."""
    board = json.loads((ROOT / "deploy" / "grafana" / "edgecls.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    rules = [{"record": f"edgecls:panel_{i}", "expr": e.replace("$__rate_interval", "1m").replace("$instance", ".*")}
             for i, e in enumerate(exprs)]
    (tmp_path / "rules.yml").write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    p = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"SUCCESS: {len(rules)} rules found" in p.stdout + p.stderr


# --- MQTT: a Home Assistant sensor for the drift --------------------------------------------------


@pytest.mark.mqtt
def test_mqtt_state_carries_the_drift_with_a_home_assistant_sensor(broker, tmp_path, bundle):
    import mosquitto

    prefix = "test/drift"
    sub = mosquitto.Subscriber(broker.port, [f"{prefix}/#", "homeassistant/#"])
    try:
        p = run_edgecls("camera", bundle, "--source", crops(tmp_path / "f", 20, seed=1), "--fps", "15", "--backend",
                        "cpu", "--top-k", "1", "--mqtt", f"{broker.url}/{prefix}", "--mqtt-interval", "0.2",
                        timeout=180)
        assert p.returncode == 0, p.stderr
        sub.wait_for(lambda m: any(x.payload == b"offline" for x in m))
        states = [m.json() for m in sub.on(f"{prefix}/state")]
        config = [m.json() for m in sub.on("homeassistant/sensor/test_drift/drift/config")]
    finally:
        sub.close()
    assert states[0]["drift"] is None  # before 50 frames: unknown to Home Assistant
    scored = [s["drift"] for s in states if s["drift"] is not None]
    assert scored and all(0 <= d < 0.25 for d in scored), scored  # below --drift-warn
    assert len(config) == 1 and config[0]["value_template"] == "{{ value_json.drift }}"
    assert config[0]["state_class"] == "measurement" and config[0]["state_topic"] == f"{prefix}/state"
    assert config[0]["unique_id"] == "edgecls_test_drift_drift"


@pytest.mark.browser
def test_the_live_page_shows_the_drift(tmp_path, bundle):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    proc, url = _start([bundle, "--source", crops(tmp_path / "f", 20, seed=8, shift=True), "--backend", "cpu",
                        "--serve", "127.0.0.1:0"])
    try:
        _wait_frames(url, 60)
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=2000",
                              "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    finally:
        _stop(proc)
    shown = re.search(r'id="drift">([^<]*)<', dom)
    assert shown and re.fullmatch(r"\d+\.\d\d \(significant\)", shown.group(1)), dom[-2000:]


def test_with_zones_the_per_frame_metrics_and_the_drift_carry_the_zone(tmp_path, bundle):
    frames = crops(tmp_path / "live", 20, seed=5)  # 60 frames, each zone a half of it
    proc, url = _start([bundle, "--source", frames, "--fps", "8", "--backend", "cpu", "--top-k", "1", "--json",
                        "--zone", "left=0,0,0.5,1", "--zone", "right=0.5,0,0.5,1", "--serve", "127.0.0.1:0"])
    try:
        _wait_frames(url, 60)
        deadline = time.time() + 30
        while (m := _scrape(url + "metrics")).get("edgecls_frames_total{zone=right}", 0) < 60 and time.time() < deadline:
            time.sleep(0.2)
        with urllib.request.urlopen(url + "status.json", timeout=10) as r:
            status = json.loads(r.read())
    finally:
        err = _stop(proc)
    assert m["edgecls_frames_total{zone=left}"] == m["edgecls_frames_total{zone=right}"] == 60
    for zone in ("left", "right"):
        assert m[f"edgecls_inference_seconds_count{{zone={zone}}}"] == 60
        assert m[f"edgecls_top_score_bucket{{le=+Inf,zone={zone}}}"] == 60
        assert sum(v for k, v in m.items() if k.startswith("edgecls_label_total{") and f"zone={zone}" in k) == 60
        assert m[f"edgecls_drift_window_frames{{zone={zone}}}"] == 60
        assert f"edgecls_drift_score{{zone={zone}}}" in m
    assert "edgecls_frames_total" not in m  # no unlabelled series beside the zones'
    zones = status["drift"]["zones"]
    assert set(zones) == {"left", "right"} and all(z["frames"] == 60 for z in zones.values())
    assert status["drift"]["score"] == max(z["score"] for z in zones.values())
    assert "edgecls: zone left: drift" in err and "edgecls: zone right: drift" in err


def _page(cmd: str, *args: object) -> tuple[subprocess.Popen, str]:
    """``edgecls collect|review ARGS --serve`` with its page's URL (stopped by ``_stop``)."""
    return _start([*args, "--serve", "127.0.0.1:0"], command=cmd, serving=r"page on (http://\S+/)")


def _post(url: str, body: dict) -> dict:
    """A write from the page itself (same origin), as its script sends it."""
    origin = url.rstrip("/")
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Origin": origin.rsplit("/", 1)[0]})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_the_collect_and_review_pages_serve_metrics_of_their_dataset(tmp_path):
    ds = tmp_path / "ds"
    crops(ds / "cat", 2, seed=6)  # 6 photos already there
    proc, url = _page("collect", ds, "--source", crops(tmp_path / "live", 2, seed=7), "--labels", "cat,dog")
    try:
        before = _scrape(url + "metrics")
        _post(url + "capture", {"label": "dog"})
        _post(url + "capture", {"label": "dog"})
        after = _scrape(url + "metrics")
    finally:
        _stop(proc)
    assert before["edgecls_dataset_photos{label=cat}"] == 6 and before["edgecls_dataset_photos{label=dog}"] == 0
    assert after["edgecls_dataset_photos{label=dog}"] == 2 and after["edgecls_collect_saved_total{label=dog}"] == 2
    assert any(k.startswith("edgecls_page_info{") and "page=collect" in k for k in after)
    (ds / "_review" / "cat").mkdir(parents=True)
    for p in sorted((ds / "cat").iterdir())[:3]:
        shutil.move(p, ds / "_review" / "cat" / p.name)
    proc, url = _page("review", ds)
    try:
        before = _scrape(url + "metrics")
        _post(url + "move", {"rel": f"_review/cat/{sorted((ds / '_review' / 'cat').iterdir())[0].name}", "label": "dog"})
        after = _scrape(url + "metrics")
    finally:
        _stop(proc)
    assert before["edgecls_review_pending"] == 3 and after["edgecls_review_pending"] == 2
    assert after["edgecls_dataset_photos{label=dog}"] == 3 and after["edgecls_review_sorted_total{action=moved}"] == 1
