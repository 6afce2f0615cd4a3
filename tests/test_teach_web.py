"""The collect page's Teach button (issue 33 item 4; edge_runtime/web/teach.py,
edge_runtime/dataset/held_out.py): the real server, a real bundle (test_teach's tiny colour
model, converted once per test session: conftest.py colours_bundle), real HTTP. An admin
teaches the page's bundle the dataset's class folders with a photo per class held out, follows the progress, reads the per-class result
and keeps it (the page then classifies with it) or undoes it (the folder is gone); viewers and
other sites are refused; a second Teach while one runs or waits is a 409; errors are one line and
leave nothing behind."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import browser
import pytest
from conftest import assert_one_line_error, run_edgecls
from test_teach import CLASSES, _dataset
from test_web_security import basic, make_users, post_json, request, stop

from edge_runtime.bundle.format import load_bundle
from edge_runtime.dataset.collect import Collector, Grabber
from edge_runtime.dataset.held_out import split
from edge_runtime.live.sources import ImagesSource
from edge_runtime.web import auth
from edge_runtime.web import collect as collect_page
from edge_runtime.web import server as webview
from edge_runtime.web.teach import Teacher, next_out

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


@pytest.fixture
def parent(colours_bundle, tmp_path) -> Path:
    """A copy per test, in a folder of its own: the taught bundles are written beside it."""
    return Path(shutil.copytree(colours_bundle, tmp_path / "bundles" / "colours"))


def _until(cond, timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    return cond()


def _photos(ds: Path) -> dict[str, bytes]:
    return {p.relative_to(ds).as_posix(): p.read_bytes() for p in sorted(ds.rglob("*")) if p.is_file()}


def _siblings(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.parent.iterdir() if p.name != parent.name)


class Page:
    """The collect page with a bundle, served in this process; its live picture is blue photos."""

    def __init__(self, tmp_path: Path, parent: Path, users: Path | None):
        self.ds = tmp_path / "photos"
        frames = _dataset(tmp_path / "frames", {"blue": 3}, seed=7) / "blue"
        self.collector = Collector(self.ds)
        self.teacher = Teacher(parent, self.ds)
        view = webview.View(max_fps=1000)
        self.grabber = Grabber(ImagesSource([str(p) for p in sorted(frames.iterdir())], "frames"),
                               on_frame=lambda f: view.update(f, [], {}, 0.0))
        self.server = webview.serve(view, "127.0.0.1", 0, collect_page.handler(self.collector, self.grabber, view,
                                                                               self.teacher),
                                    users=auth.Users(users) if users else None)
        self.grabber.start()
        self.grabber.latest(timeout=5)
        self.port = self.server.server_address[1]
        self.auth = basic("alice") if users else {}

    def get(self, who: dict | None = None) -> dict:
        status, _, body = request(self.port, "GET", "/teach.json", self.auth if who is None else who)
        assert status == 200, body
        return json.loads(body)

    def post(self, path: str, who: dict | None = None) -> tuple[int, dict]:
        status, _, body = post_json(self.port, path, {}, self.auth if who is None else who)
        return status, json.loads(body)

    def finished(self) -> dict:
        return _until(lambda: (s := self.get())["state"] in ("done", "failed") and s)

    def close(self) -> None:
        stop(self.server)
        self.grabber.close()
        self.teacher.close()


@pytest.fixture
def page(tmp_path, parent):
    p = Page(tmp_path, parent, make_users(tmp_path / "users.txt"))
    yield p
    p.close()


def test_an_admin_teaches_sees_the_progress_and_the_held_out_results_and_keeps(page, parent):
    _dataset(page.ds, {"blue": 6, "dark": 4}, seed=2)  # a new class, and one the bundle knows, refined
    _dataset(page.ds, {"white": 3}, seed=3)  # three photos: all taught, none to spare for a test
    before = _photos(page.ds)
    s = page.get()
    assert s["bundle"] == str(parent) and s["classes"] == CLASSES and s["can_teach"] and s["state"] == "idle"
    assert s["sees"][0]["label"] != "blue"  # the parent cannot tell blue from dark

    status, s = page.post("/teach")
    assert status == 200 and s["state"] == "running", s
    assert s["step"]["total"] == 4 and s["out"] == str(parent.parent / "colours.taught-1")  # 3 classes + the test
    status, again = page.post("/teach")  # one at a time: running, or its result waiting
    assert status == 409 and ("already running" in again["error"] or "keep or undo" in again["error"]), again
    steps = []
    s = _until(lambda: (steps.append(x := page.get()) or x["state"] != "running") and x)
    assert s["state"] == "done", s
    assert all(x["step"]["done"] <= x["step"]["total"] for x in steps)
    status, again = page.post("/teach")  # the result waits: keep or undo it first
    assert status == 409 and "waits for keep or undo" in again["error"] and _siblings(parent) == ["colours.taught-1"]

    r = s["result"]
    out = parent.parent / "colours.taught-1"
    assert r["bundle"] == str(out) and r["added"] == ["blue", "white"] and r["refined"] == ["dark"]
    assert r["kept"] == ["red", "green", "yellow"] and r["photos"] == 6 + 4 + 3 - 2
    held = {c["label"]: c for c in r["checks"] if c["source"] == "held_out"}
    newest = {c: sorted((page.ds / c).iterdir())[-1].name for c in ("blue", "dark")}
    assert held.keys() == {"blue", "dark"} and {c: held[c]["photo"] for c in held} == {
        c: f"{c}/{n}" for c, n in newest.items()}
    assert held["blue"]["predicted"] == "blue" and held["blue"]["right"] and held["dark"]["right"]
    assert (r["right"], r["tested"]) == (2, 2)
    golden = {c["label"]: c for c in r["checks"] if c["source"] == "golden"}
    assert golden.keys() == {"red", "green", "yellow"} and all(c["right"] for c in golden.values())  # kept classes
    assert r["untested"] == ["white"]
    taught = load_bundle(out).meta["taught"]  # the held-out photos were not taught
    assert sorted(f"{p['class']}/{p['file']}" for p in taught["photos"]) == sorted(
        set(before) - {f"{c}/{n}" for c, n in newest.items()})
    assert _photos(page.ds) == before  # the dataset is only read
    assert run_edgecls("verify", out).returncode == 0

    status, s = page.post("/teach/keep")
    assert status == 200 and s["state"] == "idle" and s["bundle"] == str(out), s
    assert "kept" in s["note"] and s["classes"] == CLASSES + ["blue", "white"]
    s = page.get()
    assert s["sees"][0]["label"] == "blue"  # the page classifies with the taught bundle now
    assert page.post("/teach/keep")[0] == 409 and page.post("/teach/undo")[0] == 409  # nothing waits
    assert out.is_dir() and (parent / "edgecls.json").is_file()


def test_undo_deletes_the_taught_bundle_and_the_page_keeps_its_own(page, parent):
    _dataset(page.ds, {"blue": 4}, seed=2)
    parent_files = _photos(parent)
    assert page.post("/teach")[0] == 200
    s = page.finished()
    assert s["state"] == "done" and _siblings(parent) == ["colours.taught-1"], s
    status, s = page.post("/teach/undo")
    assert status == 200 and s["state"] == "idle" and s["bundle"] == str(parent) and "removed" in s["note"], s
    assert _siblings(parent) == [] and _photos(parent) == parent_files
    assert page.get()["sees"][0]["label"] != "blue"
    assert page.post("/teach")[0] == 200  # and teach again
    assert page.finished()["state"] == "done" and _siblings(parent) == ["colours.taught-1"]


def test_a_viewer_and_other_sites_cannot_teach_keep_or_undo(page, parent):
    _dataset(page.ds, {"blue": 4}, seed=2)
    bob = basic("bob")
    assert page.get(bob)["bundle"] == str(parent)  # a viewer sees the page's bundle
    for path in ("/teach", "/teach/keep", "/teach/undo"):
        status, body = page.post(path, bob)
        assert status == 403 and "viewer" in body["error"], (path, body)
        assert post_json(page.port, path, {})[0] == 401  # nobody logged in
        for headers in ({"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
                        {"Origin": "null"}, {"Sec-Fetch-Site": "same-site"}):
            status, body = page.post(path, {**basic("alice"), **headers})
            assert status == 403 and "cross-site" in body["error"], (path, headers, body)
        status, _, _ = request(page.port, "POST", path, {**basic("alice"), "Content-Type": "text/plain"}, b"{}")
        assert status == 415
        assert request(page.port, "GET", path, basic("alice"))[0] == 404  # a GET changes nothing
    time.sleep(0.3)
    assert page.get()["state"] == "idle" and _siblings(parent) == []


def test_a_browser_session_needs_its_csrf_token_to_teach(page, parent):
    _dataset(page.ds, {"blue": 4}, seed=2)
    status, headers, body = post_json(page.port, "/login", {"name": "alice", "password": "alice-secret-1"})
    assert status == 200
    cookie = headers["Set-Cookie"].split(";")[0]
    token = json.loads(body)["csrf"]
    assert page.post("/teach", {"Cookie": cookie})[0] == 403
    assert page.post("/teach", {"Cookie": cookie, "X-CSRF-Token": "wrong"})[0] == 403
    assert _siblings(parent) == []
    assert page.post("/teach", {"Cookie": cookie, "X-CSRF-Token": token})[0] == 200
    assert page.finished()["state"] == "done"


@pytest.mark.parametrize("case", ["two photos", "spaces around a name", "no classes", "unreadable photo"])
def test_teach_errors_are_one_line_and_leave_nothing_behind(page, parent, case):
    _dataset(page.ds, {"blue": 5}, seed=2)
    if case == "two photos":
        _dataset(page.ds, {"white": 2})
        expect = ("white", "2 photo(s)", "at least 3")
    elif case == "spaces around a name":
        shutil.copytree(page.ds / "blue", page.ds / " blue ")
        expect = ("spaces around its name", "rename it to 'blue'")
    elif case == "no classes":
        shutil.rmtree(page.ds / "blue")
        (page.ds / "_review").mkdir()
        expect = ("no class folders",)
    else:
        (page.ds / "blue" / "001.png").write_bytes(b"not a png")
        expect = ("001.png", "remove or replace the photo")
    before = _photos(page.ds)
    status, body = page.post("/teach")
    if case == "unreadable photo":  # found while embedding, in the background: the page's status says it
        assert status == 200
        s = page.finished()
        assert s["state"] == "failed" and s["result"] is None, s
        error = s["error"]
    else:  # found before starting: the answer says it
        assert status == 400 and page.get()["state"] == "idle", body
        error = body["error"]
    assert "\n" not in error and all(e in error for e in expect), error
    assert _siblings(parent) == [] and _photos(page.ds) == before
    assert not list(Path("/tmp").glob(".edgecls-teach-*/blue/001.png"))  # the held-out view is gone too
    if case == "unreadable photo":
        (page.ds / "blue" / "001.png").unlink()
        assert page.post("/teach")[0] == 200 and page.finished()["state"] == "done"  # after a failure: again


def test_a_bundle_without_features_shows_and_classifies_but_cannot_teach(tmp_path, coral_bundle):
    p = Page(tmp_path, coral_bundle, None)
    try:
        _dataset(p.ds, {"blue": 4}, seed=2)
        s = p.get()
        assert not s["can_teach"] and "carries no features" in s["why_not"] and len(s["sees"]) == 3
        status, body = p.post("/teach")
        assert status == 400 and "carries no features" in body["error"]
    finally:
        p.close()


def test_a_page_without_a_bundle_says_how_to_get_one(tmp_path):
    ds = tmp_path / "photos"
    collector = Collector(ds, ["cat"])
    view = webview.View()
    grabber = Grabber(ImagesSource([], "none"))
    server = webview.serve(view, "127.0.0.1", 0, collect_page.handler(collector, grabber, view))
    try:
        port = server.server_address[1]
        s = json.loads(request(port, "GET", "/teach.json")[2])
        assert s["bundle"] is None and "--bundle BUNDLE" in s["why_not"]
        status, _, body = post_json(port, "/teach", {})
        assert status == 400 and "--bundle BUNDLE" in json.loads(body)["error"]
    finally:
        stop(server)


def test_taught_bundles_are_numbered_beside_the_parent(tmp_path):
    (tmp_path / "cat.taught-2").mkdir()
    (tmp_path / "cat.taught-x").mkdir()
    (tmp_path / "dog.taught-7").mkdir()
    assert next_out(tmp_path / "cat") == tmp_path / "cat.taught-3"
    assert next_out(tmp_path / "cat.tar.gz") == tmp_path / "cat.taught-3"
    assert next_out(tmp_path / "cat.taught-2") == tmp_path / "cat.taught-3"  # teaching a taught one: the next
    assert next_out(tmp_path / "bird") == tmp_path / "bird.taught-1"


def test_a_class_gives_its_newest_photo_to_the_test_only_when_three_remain():
    photos = {"a": [Path(f"a/{i}.jpg") for i in range(4)], "b": [Path(f"b/{i}.jpg") for i in range(3)]}
    teach_with, held = split(photos)
    assert held == {"a": Path("a/3.jpg")} and teach_with == {"a": photos["a"][:3], "b": photos["b"]}


def _start(ds: Path, frames: Path, *args: str) -> tuple[subprocess.Popen, str, list[str]]:
    cmd = [sys.executable, "-m", "edge_runtime.cli", "collect", str(ds), "--source", str(frames), "--serve",
           "127.0.0.1:0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        m = re.search(r"collect page on (http://\S+/)", line)
        if m:
            return proc, m.group(1), lines
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("".join(lines) + proc.stderr.read())


def test_cli_collect_bundle(parent, tmp_path):
    assert_one_line_error(run_edgecls("collect", tmp_path / "ds", "--label", "cat", "--bundle", parent),
                          "--bundle is for the page's Teach button", "--serve")
    assert_one_line_error(run_edgecls("collect", tmp_path / "ds", "--serve", "0", "--bundle", tmp_path / "nothing"),
                          "nothing")
    ds = _dataset(tmp_path / "ds", {"blue": 4}, seed=2)
    frames = _dataset(tmp_path / "frames", {"blue": 2}, seed=7) / "blue"
    proc, url, lines = _start(ds, frames, "--bundle", str(parent))
    try:
        assert any(f"classifies with {parent}" in l and "colours.taught-1" in l for l in lines), lines
        port = int(url.rsplit(":", 1)[1].strip("/"))
        assert post_json(port, "/teach", {})[0] == 200
        assert _until(lambda: json.loads(request(port, "GET", "/teach.json")[2])["state"] == "done")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "colours.taught-1 was taught but neither kept nor undone; it stays" in err, err
    assert (parent.parent / "colours.taught-1" / "edgecls.json").is_file()


@pytest.mark.browser
def test_teach_keep_and_undo_in_headless_chromium(parent, tmp_path):
    if not browser.chromium():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    ds = _dataset(tmp_path / "photos", {"blue": 5, "white": 4}, seed=2)
    frames = _dataset(tmp_path / "frames", {"blue": 2}, seed=7) / "blue"
    proc, url, _ = _start(ds, frames, "--bundle", str(parent))
    try:
        with browser.Browser(url) as b:
            b.wait("document.getElementById('sees').textContent.startsWith('the bundle sees: ')")
            assert not b.js("document.getElementById('sees').textContent").startswith("the bundle sees: blue")
            assert "colours" in b.js("document.getElementById('bundle').textContent")
            b.click("#teach")
            b.wait("!document.getElementById('teach-result').hidden", timeout=60)
            rows = b.js("[...document.querySelectorAll('#teach-checks tr')].map(r => r.textContent)")
            assert any(r.startswith("blue") and r.endswith("right") for r in rows), rows
            assert any(r.startswith("white") for r in rows) and len(rows) == 2 + 4, rows  # held out, and 4 golden
            assert "2 of 2 held-out photos right" in b.js("document.getElementById('teach-summary').textContent")
            assert b.js("document.getElementById('teach').disabled")  # waits for keep or undo
            b.click("#keep")
            b.wait("document.getElementById('bundle').textContent.startsWith('colours.taught-1')")
            b.wait("document.getElementById('sees').textContent.startsWith('the bundle sees: blue')")
            assert b.js("document.getElementById('teach-result').hidden")
            b.click("#teach")  # again: from the parent, into the next folder
            b.wait("!document.getElementById('teach-result').hidden", timeout=60)
            assert (parent.parent / "colours.taught-2").is_dir()
            b.click("#teach-undo")
            b.wait("document.getElementById('teach-note').textContent.startsWith('removed')")
            assert not (parent.parent / "colours.taught-2").exists()
            assert b.js("document.getElementById('bundle').textContent").startswith("colours.taught-1")
            _dataset(ds, {"red": 2})  # too few: the one-line error on the page
            b.click("#teach")
            b.wait("document.getElementById('teach-error').textContent.includes('at least 3')")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
