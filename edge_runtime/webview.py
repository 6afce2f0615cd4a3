"""The web view of ``edgecls camera --serve``: the live picture as MJPEG, the current top-k, FPS
and latency, and the same figures as JSON. The standard library's threading HTTP server does the
HTTP; this module only writes responses."""

from __future__ import annotations

import io
import ipaddress
import json
import threading
import time
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image

from .errors import EdgeclsError

BOUNDARY = "edgecls-frame"
WEB = Path(__file__).resolve().parent / "web"  # the pages and their style sheet, served as they are
FILES = {"/": ("camera.html", "text/html; charset=utf-8"), "/edgecls.css": ("edgecls.css", "text/css; charset=utf-8")}
HISTORY_S = 60.0  # the page's strip: the last minute


class View:
    """What the page shows, updated by the camera loop, read by the HTTP threads."""

    def __init__(self, max_fps: float = 15.0, info: dict[str, Any] | None = None):
        self.lock = threading.Condition()
        self.info = info or {}  # model, backend, threads, interpreter: shown in the page's header
        self.status: dict[str, Any] = {"frame": None, "t": None, "classes": [], "fps": 0.0, "latency_ms": {},
                                       "dropped": 0, "info": self.info}
        self.history: deque[tuple[float, int | None, float, float]] = deque()  # (time, label, fps, invoke ms)
        self.leader: int | None = None
        self.names: dict[int, str] = {}  # class index -> label, as frames show them
        self.leader_since = time.time()
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
        label = classes[0].index if classes else None
        wall = time.time()
        with self.lock:
            if label != self.leader:
                self.leader, self.leader_since = label, wall
            self.names.update((c.index, c.label) for c in classes)
            self._remember(wall, label, fps, latency_ms.get("invoke", 0.0))
            self.status = {"frame": frame.n, "t": frame.t, "fps": fps, "now": wall,
                           "classes": [{"index": c.index, "label": c.label, "score": c.score} for c in classes],
                           "label_seconds": wall - self.leader_since,
                           "latency_ms": latency_ms, "dropped": self.dropped_ref() if self.dropped_ref else 0,
                           "actions": self.actions_ref() if self.actions_ref else {}, "info": self.info,
                           "history": self._history()}
            if jpeg is not None:
                self.jpeg = jpeg
                self.seq += 1
            self.lock.notify_all()

    def _remember(self, wall: float, label: int | None, fps: float, invoke_ms: float) -> None:
        """One point of the last minute, at most five a second (the page draws a strip, not every frame)."""
        if self.history and wall - self.history[-1][0] < 0.2 and self.history[-1][1] == label:
            return
        self.history.append((wall, label, fps, invoke_ms))
        while self.history and wall - self.history[0][0] > HISTORY_S:
            self.history.popleft()

    def _history(self) -> dict[str, list]:
        t, label, fps, invoke = zip(*self.history) if self.history else ((), (), (), ())
        return {"t": [round(x, 3) for x in t], "label": list(label), "fps": [round(x, 2) for x in fps],
                "invoke_ms": [round(x, 3) for x in invoke],
                "names": {i: self.names.get(i, str(i)) for i in set(label) if i is not None}}

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
            if path in FILES:
                name, ctype = FILES[path]
                self._send((WEB / name).read_bytes(), ctype)
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
