"""The web pages in headless Chromium (issue 29): log in as an admin, take a photo, log out; log in
as a viewer and find every write disabled; labels that look like markup stay text on every page;
a page on another origin cannot make the browser write."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import browser
import numpy as np
import pytest
from PIL import Image
from test_web_security import PASSWORDS, make_users, photos, start_collect, stop

from edge_runtime.dataset.review import Reviewer
from edge_runtime.web import auth
from edge_runtime.web import review as review_page
from edge_runtime.web import server as webview

pytestmark = pytest.mark.browser

# Breaks out of a double-quoted attribute, a single-quoted one and text, if any page forgets to escape.
HOSTILE = 'x" onmouseover="pwned=1" \'<img src=x onerror=pwned=2>&amp; café'
NO_MARKUP = "document.querySelectorAll('[onmouseover], [onerror], img[src=x]').length"


@pytest.fixture(autouse=True)
def _chromium():
    if not browser.chromium():
        pytest.skip("chromium is not installed (apt-get install chromium)")


def _until(cond, timeout: float = 10.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _login(b: browser.Browser, name: str) -> None:
    b.wait("location.pathname === '/login' && !!document.getElementById('login')")
    b.type("#name", name)
    b.type("#password", PASSWORDS[name])
    b.click("#login button")
    b.wait("location.pathname === '/' && document.querySelectorAll('#buttons button').length === 3")
    b.wait(f"document.querySelector('#user .who') && document.querySelector('#user .who').textContent.startsWith('{name}')")


def test_admin_takes_a_photo_viewer_cannot_and_a_hostile_label_stays_text(tmp_path):
    users = make_users(tmp_path / "users.txt")
    (tmp_path / "photos" / HOSTILE).mkdir(parents=True)
    c = start_collect(tmp_path, users)
    url = webview.url(c.server)
    try:
        with browser.Browser(url) as b:
            _login(b, "alice")  # sent to the login page, back to / once logged in
            labels = b.js("[...document.querySelectorAll('#buttons button')].map(x => x.dataset.label)")
            assert sorted(labels) == sorted(["cat", "empty", HOSTILE])
            i = labels.index(HOSTILE)
            assert HOSTILE in b.js(f"document.getElementById('class-{i}').textContent")
            assert b.js(NO_MARKUP) == 0
            x, y = b.center(f"#class-{i}")
            b.call("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=x, y=y)
            b.click(f"#class-{labels.index('cat')}")  # a click: one photo of cat
            assert _until(lambda: len(photos(c.ds)) == 1)
            assert photos(c.ds)[0].parent.name == "cat"
            b.click(f"#class-{i}")  # and one of the hostile class: its thumbnail's caption is text too
            assert _until(lambda: len(photos(c.ds)) == 2)
            b.wait("document.querySelectorAll('#recent .thumb').length === 2")
            assert HOSTILE in b.js("document.querySelector('#recent .thumb').textContent")
            assert b.js(NO_MARKUP) == 0 and b.js("typeof pwned === 'undefined'")
            b.click("#logout")
            b.wait("location.pathname === '/login'")
            assert b.js("fetch('/collect.json').then(r => r.status)") == 401  # the session is over
            _login(b, "bob")
            assert b.js("[...document.querySelectorAll('#buttons button, #recent .undo, #add button, #newclass')]"
                        ".every(x => x.disabled)")
            assert b.js("document.getElementById('live').getAttribute('src')") == "/stream.mjpg"
            b.click("#class-0")
            b.key("1")
            b.key("z")
            time.sleep(1.0)
            assert len(photos(c.ds)) == 2  # nothing taken, nothing undone
            # and the server, not only the page, says no: the viewer's own session and token
            status = b.js("fetch('/capture', {method: 'POST', headers: {'Content-Type': 'application/json', "
                          "'X-CSRF-Token': edgecls.session.csrf}, body: '{\"label\": \"cat\"}'}).then(r => r.status)")
            assert status == 403 and len(photos(c.ds)) == 2
    finally:
        stop(c.server)
        c.grabber.close()


def test_hostile_labels_stay_text_on_the_live_and_review_pages(tmp_path):
    view = webview.View(max_fps=1000)
    classes = [SimpleNamespace(index=0, label=HOSTILE, score=0.7), SimpleNamespace(index=1, label="<b>bold</b>", score=0.3)]
    frame = SimpleNamespace(n=1, t=time.time(), rgb=np.full((48, 64, 3), 90, np.uint8), display=None)
    view.update(frame, classes, {"invoke": 1.0}, 10.0)
    server = webview.serve(view, "127.0.0.1", 0)
    try:
        with browser.Browser(webview.url(server)) as b:
            b.wait("document.querySelectorAll('.bar').length === 2")
            assert b.js("document.getElementById('top').textContent") == HOSTILE
            assert b.js("[...document.querySelectorAll('.bar .name')].map(x => x.textContent)") == [HOSTILE, "<b>bold</b>"]
            assert b.js("document.querySelector('.bar').dataset.label") == HOSTILE
            b.wait("document.getElementById('legend').textContent.includes('café')")
            assert HOSTILE in b.js("document.getElementById('legend').textContent")
            assert b.js(NO_MARKUP) == 0 and b.js("document.querySelectorAll('#bars b').length") == 0
            assert b.js("document.querySelector('.bar .fill').style.width") == "70%"  # set without inline style
            x, y = b.center(".bar .name")
            b.call("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=x, y=y)
            assert b.js("typeof pwned === 'undefined'")
    finally:
        stop(server)
    ds = tmp_path / "review"
    d = ds / "_review" / "cat"
    d.mkdir(parents=True)
    Image.fromarray(np.full((30, 40, 3), 80, np.uint8)).save(d / "20250101-000000-000000_cat_0.400.jpg")
    (ds / HOSTILE).mkdir()
    server = review_page.serve(Reviewer(ds), "127.0.0.1", 0)
    try:
        with browser.Browser(webview.url(server)) as b:
            b.wait("document.querySelectorAll('.frame .move').length === 1")
            assert b.js("document.querySelector('.frame .move').textContent") == HOSTILE
            assert b.js(NO_MARKUP) == 0
            b.click(".frame .move")  # moves the frame into the class whose name is the label, as text
            b.wait("document.querySelectorAll('.frame').length === 0")
            assert len(list((ds / HOSTILE).glob("*.jpg"))) == 1
    finally:
        stop(server)


EVIL = """<!doctype html><html><body>
<form id="f" method="POST" action="{target}/class" enctype="text/plain"><input name='{{"label": "form", "x": "' value='"}}'></form>
<iframe name="sink"></iframe>
<script>
window.done = (async () => {{
  const tries = [
    fetch('{target}/capture', {{method: 'POST', mode: 'no-cors', headers: {{'Content-Type': 'text/plain'}},
                                body: '{{"label": "nocors"}}'}}),
    fetch('{target}/class', {{method: 'POST', mode: 'no-cors', body: '{{"label": "plain"}}'}}),
    fetch('{target}/class', {{method: 'POST', headers: {{'Content-Type': 'application/json'}}, body: '{{"label": "cors"}}'}}),
    fetch('{target}/undo', {{method: 'POST', mode: 'no-cors', credentials: 'include', body: '{{}}'}}),
  ];
  const out = [];
  for (const t of tries) {{ try {{ out.push((await t).type); }} catch (e) {{ out.push('blocked'); }} }}
  document.getElementById('f').target = 'sink';
  document.getElementById('f').submit();
  return out;
}})();
</script></body></html>"""


def test_a_page_on_another_origin_cannot_make_the_browser_write(tmp_path):
    """The attack of issue 29: any page the user visits POSTs to http://127.0.0.1:PORT/capture."""
    seen: list[tuple[str, str, int]] = []  # what reached the server, and its answer

    def watch(handler: type) -> type:
        class Watched(handler):  # type: ignore[misc, valid-type]
            def send_response(self, code, message=None):
                seen.append((self.command, self.path, int(code)))
                super().send_response(code, message)
        return Watched

    c = start_collect(tmp_path, None, wrap=watch)  # loopback, no users: open to this machine's user only
    target = f"http://127.0.0.1:{c.port}"
    page = EVIL.format(target=target).encode()

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *a) -> None:
            pass

    evil = ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        # localhost:PORT is another origin than 127.0.0.1:PORT (and another site)
        with browser.Browser(f"http://localhost:{evil.server_address[1]}/") as b:
            b.js("window.done")
            assert _until(lambda: ("POST", "/class", 403) in seen[4:])  # the form's navigation, last
        writes = sorted(x for x in seen if x[0] == "POST")
        assert writes == [("POST", "/capture", 403), ("POST", "/class", 403), ("POST", "/class", 403),
                          ("POST", "/undo", 403)], seen  # they arrived, and were refused
        assert ("OPTIONS", "/class", 501) in seen  # the JSON one: its CORS preflight is never approved
        assert not c.ds.exists()  # no photo, and no class "form", "plain" or "cors": nothing written at all
    finally:
        evil.shutdown()
        evil.server_close()
        stop(c.server)
        c.grabber.close()


def test_login_page_throttles_and_says_so(tmp_path):
    users = make_users(tmp_path / "users.txt")
    c = start_collect(tmp_path, users, throttle=auth.Throttle(free=1, base=30))
    try:
        with browser.Browser(webview.url(c.server)) as b:
            b.wait("location.pathname === '/login' && !!document.getElementById('login')")
            for expected in ("wrong name or password", "wrong name or password", "too many failed logins"):
                b.type("#name", "alice")
                b.type("#password", "not-it-at-all")
                b.click("#login button")
                b.wait(f"document.getElementById('msg').textContent.startsWith('{expected}')")
                b.js("document.getElementById('msg').textContent = ''; document.getElementById('name').value = ''")
            assert b.js("location.pathname") == "/login"
    finally:
        stop(c.server)
        c.grabber.close()
