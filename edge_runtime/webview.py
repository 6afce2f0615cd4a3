"""The web view of ``edgecls camera --serve``: the live picture as MJPEG, the current top-k, FPS
and latency, and the same figures as JSON. The standard library's threading HTTP server does the
HTTP; this module only writes responses."""

from __future__ import annotations

import io
import ipaddress
import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

from .errors import EdgeclsError

BOUNDARY = "edgecls-frame"
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgecls camera</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:sans-serif;margin:1em;background:#111;color:#eee}img{max-width:100%;border:1px solid #444}
#top{font-size:1.6em;margin:.4em 0}table{border-collapse:collapse}td{padding:.1em .6em}.small{color:#aaa}</style>
</head><body>
<h1>edgecls camera</h1>
<img id="live" src="/stream.mjpg" alt="live picture">
<div id="top">waiting for the first frame...</div>
<table id="classes"></table>
<p class="small">frame <span id="frame">-</span>, <span id="fps">-</span> FPS, inference
<span id="invoke">-</span> ms, capture to result <span id="age">-</span> ms, dropped <span id="dropped">-</span></p>
<script>
async function tick() {
  try {
    const s = await (await fetch('/status.json', {cache: 'no-store'})).json();
    if (s.frame !== null) {
      const c = s.classes;
      document.getElementById('top').textContent = c.length ? c[0].label + ' ' + c[0].score.toFixed(3) : '(below threshold)';
      document.getElementById('classes').innerHTML = c.map(x =>
        '<tr><td>' + x.label.replace(/&/g, '&amp;').replace(/</g, '&lt;') + '</td><td>' + x.score.toFixed(3) + '</td></tr>').join('');
      document.getElementById('frame').textContent = s.frame;
      document.getElementById('fps').textContent = s.fps.toFixed(1);
      document.getElementById('invoke').textContent = (s.latency_ms.invoke || 0).toFixed(2);
      document.getElementById('age').textContent = (s.latency_ms.age || 0).toFixed(1);
      document.getElementById('dropped').textContent = s.dropped;
    }
  } catch (e) {}
  setTimeout(tick, 300);
}
tick();
</script></body></html>
"""


class View:
    """What the page shows, updated by the camera loop, read by the HTTP threads."""

    def __init__(self, max_fps: float = 15.0):
        self.lock = threading.Condition()
        self.status: dict[str, Any] = {"frame": None, "t": None, "classes": [], "fps": 0.0, "latency_ms": {},
                                       "dropped": 0}
        self.jpeg: bytes | None = None
        self.seq = 0
        self.min_gap = 1 / max_fps
        self.last_jpeg = 0.0
        self.dropped_ref: Any = None
        self.actions_ref: Any = None  # Actions.stats, when the camera acts on labels

    def update(self, frame: Any, classes: list, latency_ms: dict, fps: float) -> None:
        now = time.monotonic()
        jpeg = None
        if now - self.last_jpeg >= self.min_gap:  # encode at most max_fps pictures a second
            buf = io.BytesIO()
            Image.fromarray(frame.display if frame.display is not None else frame.rgb).save(buf, "JPEG", quality=80)
            jpeg, self.last_jpeg = buf.getvalue(), now
        with self.lock:
            self.status = {"frame": frame.n, "t": frame.t, "fps": fps,
                           "classes": [{"index": c.index, "label": c.label, "score": c.score} for c in classes],
                           "latency_ms": latency_ms, "dropped": self.dropped_ref() if self.dropped_ref else 0,
                           "actions": self.actions_ref() if self.actions_ref else {}}
            if jpeg is not None:
                self.jpeg = jpeg
                self.seq += 1
            self.lock.notify_all()

    def next_jpeg(self, after: int, timeout: float = 5.0) -> tuple[int, bytes | None]:
        with self.lock:
            if self.seq <= after:
                self.lock.wait(timeout)
            return self.seq, self.jpeg


def _handler(view: View) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "edgecls"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the loop's output is the log
            pass

        def _send(self, body: bytes, ctype: str) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(PAGE.encode(), "text/html; charset=utf-8")
            elif path == "/status.json":
                with view.lock:
                    body = json.dumps(view.status).encode()
                self._send(body, "application/json")
            elif path == "/stream.mjpg":
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                seq = 0
                try:
                    while True:
                        seq, jpeg = view.next_jpeg(seq)
                        if jpeg is None:
                            continue
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                                         "\r\n\r\n".encode() + jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

    return Handler


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{text!r}: give --serve as HOST:PORT or PORT, e.g. 127.0.0.1:8000")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(view: View, host: str, port: int, handler: type[BaseHTTPRequestHandler] | None = None) -> ThreadingHTTPServer:
    """Start the server in a daemon thread; returns it (``server_address`` has the real port).
    ``handler``: a subclass of ``_handler(view)`` with more pages (collect, review)."""
    try:
        server = ThreadingHTTPServer((host, port), handler or _handler(view))
    except OSError as e:
        raise EdgeclsError(f"cannot serve on {host}:{port} ({e.strerror}); pick another port") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="edgecls-web").start()
    return server
