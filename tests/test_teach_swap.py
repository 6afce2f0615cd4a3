"""``edgecls teach --into DIR`` and the camera that follows DIR/current (issue 33, item 3): the
taught bundle becomes a new version of a folder deployed by deploy/remote.py's own device-side
program, goes live as a deploy switches one, and deploy's rollback program brings the parent back;
an ``edgecls camera`` running on the folder takes each new live version between two frames,
without a restart and without losing a frame's result, and keeps its model when a new version
cannot run. The bundle is test_teach.py's tiny colour model, converted once for this module."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from test_teach import CLASSES, _dataset, _photo
from test_teach import parent  # noqa: F401  (the fixture: the colour model, converted once for this module)

from conftest import assert_one_line_error, run_edgecls

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def _device(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """One of deploy/remote.py's programs, run as the device runs it (sh, values as arguments)."""
    from deploy import remote

    program = {"upload": remote.UPLOAD, "rollback": remote.ROLLBACK}[args[0]]
    return subprocess.run(["sh", "-c", program, f"edgecls-{args[0]}", *args[1:]], input=data, capture_output=True,
                          timeout=120)


@pytest.fixture
def deployed(parent, tmp_path) -> tuple[Path, str]:
    """A device folder the parent was deployed to by deploy's own upload program: (DIR, version)."""
    from deploy.run import pack

    data, version = pack(parent)
    dev = tmp_path / "device"
    p = _device("upload", str(dev), version, "5", "", "no", data=data)
    assert p.returncode == 0 and p.stdout.decode().strip() == f"live {version}", p.stderr
    return dev, version


def _live(dev: Path) -> str:
    return os.readlink(dev / "current")


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_teach_into_adds_a_live_version_and_deploys_rollback_returns_the_parent(deployed, tmp_path):
    dev, v0 = deployed
    p = run_edgecls("teach", _dataset(tmp_path / "new", {"blue": 10}, seed=2), "--into", dev, "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    v1 = r["version"]
    assert r["was"] == v0 and r["added"] == ["blue"] and r["bundle"] == str(dev / "versions" / v1)
    assert re.fullmatch(r"\d{8}T\d{6}Z-parent-[0-9a-f]{10}", v1), v1  # named as a deploy names a version
    assert _live(dev) == f"versions/{v1}"  # relative, as remote.py's switch makes it
    assert (dev / "history").read_text().splitlines() == [v0, v1]
    assert sorted(os.listdir(dev / "versions")) == sorted([v0, v1])  # no incoming or staging left
    meta = json.loads((dev / "current" / "edgecls.json").read_text())
    assert meta["name"] == json.loads((dev / "versions" / v0 / "edgecls.json").read_text())["name"]
    assert meta["taught"]["parent"]["name"] == meta["name"]
    v = run_edgecls("verify", dev / "current")
    assert v.returncode == 0 and "golden photos match" in v.stdout, v.stdout + v.stderr
    blue = _photo(tmp_path / "blue.png", "blue", np.random.default_rng(7))
    c = run_edgecls("classify", dev / "current", blue, "--json")
    assert c.returncode == 0 and json.loads(c.stdout)["classes"][0]["label"] == "blue", c.stdout + c.stderr

    # deploy's rollback, the device-side program `edgecls deploy --rollback` runs: back to the parent
    rb = _device("rollback", str(dev))
    assert rb.returncode == 0 and rb.stdout.decode().strip() == f"live {v0} (was {v1})", rb.stderr
    assert _live(dev) == f"versions/{v0}"
    c = run_edgecls("classify", dev / "current", blue, "--json")
    assert json.loads(c.stdout)["classes"][0]["label"] in CLASSES

    # teaching again (BUNDLE given as the folder: its live version), and a deploy after it, keep to the protocol
    p = run_edgecls("teach", dev, _dataset(tmp_path / "more", {"white": 5}, seed=4), "--into", dev, "--keep", "2")
    assert p.returncode == 0 and "live now (was " + v0 in p.stdout, p.stdout + p.stderr
    v2 = _live(dev).split("/")[1]
    assert sorted(os.listdir(dev / "versions")) == sorted([v0, v2])  # --keep 2: the older taught one went
    assert json.loads((dev / "current" / "edgecls.json").read_text())["taught"]["added"] == ["white"]
    assert _device("rollback", str(dev)).stdout.decode().strip() == f"live {v0} (was {v2})"


@pytest.mark.parametrize("case", ["missing", "a bundle", "empty", "locked", "too few photos"])
def test_a_bad_into_is_refused_in_one_line_and_nothing_is_written(parent, deployed, tmp_path, case):
    dev, v0 = deployed
    data = _dataset(tmp_path / "new", {"blue": 5})
    into, expect = dev, ()
    if case == "missing":
        into, expect = tmp_path / "nowhere", ("nowhere: does not exist", "edgecls deploy")
    elif case == "a bundle":
        into = tmp_path / "bundle"
        shutil.copytree(parent, into)
        expect = ("is a bundle, not a deployed folder", "--into takes the folder")
    elif case == "empty":
        into = tmp_path / "empty"
        into.mkdir()
        expect = ("nothing is deployed there",)
    elif case == "too few photos":
        _dataset(data, {"white": 2})
        expect = ("white", "at least 3")
    before = _listing(into)
    held = None
    if case == "locked":  # a deploy running: remote.py's programs hold DIR/.lock as this does
        held = subprocess.Popen(["sh", "-c", 'exec 9>>"$1/.lock"; flock 9; echo held; exec sleep 120', "sh", str(dev)],
                                stdout=subprocess.PIPE, text=True)
        assert held.stdout.readline() == "held\n"
        expect = ("locked by another deploy",)
    try:
        p = run_edgecls("teach", data, "--into", into)
    finally:
        if held is not None:
            held.kill()
            held.wait()
            held.stdout.close()
    assert_one_line_error(p, *expect, *([str(into)] if case != "too few photos" else []))
    assert _listing(into) == before
    assert _live(dev) == f"versions/{v0}" and (dev / "history").read_text().splitlines() == [v0]


# --- the camera on the folder --------------------------------------------------------------


class Camera:
    """``edgecls camera DIR/current --json --serve`` on a folder of frames, its output read as it comes."""

    def __init__(self, model: Path, frames: Path, fps: float):
        cmd = [sys.executable, "-m", "edge_runtime.cli", "camera", str(model), "--source", str(frames), "--fps", str(fps),
               "--json", "--top-k", "1", "--backend", "cpu", "--serve", "127.0.0.1:0"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for r in self.readers:
            r.start()
        try:
            self.url = re.search(r"web view on (http://\S+/)", self.wait(self.err, "web view on")).group(1)
        except BaseException:
            self.__exit__()
            raise

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in iter(stream.readline, ""):
            lines.append(line)

    def wait(self, lines: list[str], text: str, timeout: float = 120) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            hit = next((line for line in list(lines) if text in line), None)
            if hit is not None:
                return hit
            if self.proc.poll() is not None and not [line for line in lines if text in line]:
                time.sleep(0.5)  # the readers may still be draining
                if not [line for line in lines if text in line]:
                    break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never came; stderr:\n{''.join(self.err)[-3000:]}")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""

    def status(self) -> dict:
        return json.loads(self.get("status.json")[1])

    def __enter__(self) -> "Camera":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=60)
        for r in self.readers:
            r.join(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def finish(self) -> tuple[list[dict], dict]:
        """Every frame's JSON line and the summary, once the input ended (the view then stays: stopped here)."""
        self.wait(self.out, '"summary"', timeout=300)
        self.proc.terminate()
        self.proc.wait(timeout=60)
        for r in self.readers:
            r.join(timeout=10)
        lines = [json.loads(line) for line in self.out if line.strip()]
        return [x for x in lines if "frame" in x], next(x["summary"] for x in lines if "summary" in x)


def _frames(folder: Path, colour: str, n: int) -> Path:
    rng = np.random.default_rng(21)
    for i in range(n):
        _photo(folder / f"{i:04d}.png", colour, rng)
    return folder


def _after_frame(line: str) -> int:
    return int(re.search(r"after frame (\d+)", line).group(1))


def test_a_camera_on_the_folder_takes_each_new_version_between_two_frames(deployed, tmp_path):
    """teach --into mid-run: the camera runs the taught version from the next frame on, says so in its
    log, status JSON and metrics; deploy's rollback mid-run: the parent again. Every frame has its result."""
    dev, v0 = deployed
    n = 150
    with Camera(dev / "current", _frames(tmp_path / "frames", "blue", n), fps=10) as cam:
        assert "following" in cam.wait(cam.err, f"(version {v0})")
        cam.wait(cam.out, '"frame"')  # classifying
        assert cam.status()["bundle"]["version"] == v0
        p = run_edgecls("teach", _dataset(tmp_path / "new", {"blue": 10}, seed=2), "--into", dev, "--json")
        assert p.returncode == 0, p.stderr
        v1 = json.loads(p.stdout)["version"]
        swap1 = cam.wait(cam.err, f"now running {v1}")
        assert "5 classes; taught blue" in swap1 and f"was {v0}" in swap1
        s = cam.status()
        assert s["bundle"]["version"] == v1 and s["bundle"]["name"] == "parent" and "refused" not in s["bundle"]
        code, text = cam.get("metrics")
        if code == 200:  # prometheus-client installed
            info = next(line for line in text.splitlines() if line.startswith("edgecls_bundle_info{"))
            assert f'version="{v1}"' in info, info
        rb = _device("rollback", str(dev))
        assert rb.returncode == 0, rb.stderr
        swap2 = cam.wait(cam.err, f"now running {v0}")
        assert cam.status()["bundle"]["version"] == v0
        frames, summary = cam.finish()
    assert [f["frame"] for f in frames] == list(range(n))  # every frame once, in order: none lost, none twice
    assert summary["captured"] == summary["classified"] == n and summary["ended"] == "end of input", summary
    k1, k2 = _after_frame(swap1), _after_frame(swap2)
    assert 0 <= k1 < k2 < n - 1, (k1, k2)  # both swaps mid-run
    labels = [f["classes"][0]["label"] for f in frames]
    assert set(labels[:k1 + 1]) <= set(CLASSES)  # the parent: no blue class
    assert set(labels[k1 + 1:k2 + 1]) == {"blue"}  # the taught version, from the frame after the swap
    assert set(labels[k2 + 1:]) <= set(CLASSES)  # the parent again
    assert sum("now running" in line for line in cam.err) == 2


def test_a_version_that_cannot_run_is_said_once_and_the_old_one_keeps_running(deployed, tmp_path):
    dev, v0 = deployed
    good = dev / "versions" / v0
    golden = dev / "versions" / "20990101T000000Z-parent-bad-golden"  # loads, but its golden photos fail
    shutil.copytree(good, golden)
    meta = json.loads((golden / "edgecls.json").read_text())
    meta["golden"]["photos"][0]["raw"] = [(v + 7) % 256 for v in meta["golden"]["photos"][0]["raw"]]
    (golden / "edgecls.json").write_text(json.dumps(meta))
    torn = dev / "versions" / "20990101T000000Z-parent-torn"  # a label changed: same size, another sha256
    shutil.copytree(good, torn)
    (torn / "labels.txt").write_text("red\ngreen\nyellow\npark\n")
    n = 120
    with Camera(dev / "current", _frames(tmp_path / "frames", "red", n), fps=10) as cam:
        cam.wait(cam.out, '"frame"')
        from edge_runtime.bundle.deployed import Deployed

        Deployed(dev).switch(golden.name)
        bad1 = cam.wait(cam.err, f"now names {golden.name}")
        assert "golden photos fail" in bad1 and f"still running {v0}" in bad1, bad1
        assert cam.status()["bundle"]["refused"]["version"] == golden.name
        Deployed(dev).switch(torn.name)
        bad2 = cam.wait(cam.err, f"now names {torn.name}")
        assert "labels.txt" in bad2 and "sha256" in bad2 and f"still running {v0}" in bad2, bad2
        s = cam.status()
        assert s["bundle"]["version"] == v0 and s["bundle"]["refused"]["version"] == torn.name
        time.sleep(2.5)  # the watcher looks again, and says nothing new
        frames, summary = cam.finish()
    assert [f["frame"] for f in frames] == list(range(n)) and summary["classified"] == n
    assert {f["classes"][0]["label"] for f in frames} == {"red"}  # the parent all along
    assert sum("cannot run here" in line for line in cam.err) == 2 and not any("now running" in l for l in cam.err)
