"""The web view of ``edgecls camera --serve``: the live picture as MJPEG, the current top-k, FPS
and latency, and the same figures as JSON. The standard library's threading HTTP server does the
HTTP; this module only writes responses, and bounds what clients can take:

- a connection idle for ``IDLE_TIMEOUT`` seconds (no request, or a stream it does not read) is closed;
- at most ``MAX_WORKERS`` connections are served at once, and ``MAX_STREAMS`` of them MJPEG
  streams: one more gets ``503 Service Unavailable`` at once;
- unless the view was started with ``--public``, a request whose ``Host`` header names neither the
  bound address nor a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``) gets ``421``: a web
  page elsewhere cannot reach a loopback-only view by pointing its own name at 127.0.0.1 (DNS
  rebinding);
- IPv6 addresses work (``--serve [::1]:8000``)."""

from __future__ import annotations

import io
import ipaddress
import json
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

from .errors import EdgeclsError

BOUNDARY = "edgecls-frame"
IDLE_TIMEOUT = 10.0  # seconds a connection may sit without a request or without reading its stream
MAX_WORKERS = 16  # connections served at once
MAX_STREAMS = 4  # of which MJPEG streams
LOOPBACK_NAMES = ("localhost", "localhost.", "ip6-localhost", "ip6-loopback")
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


def _host_allowed(header: str | None, server: "Server") -> bool:
    """Whether a ``Host`` header names this server: its bound address or a loopback name, with its
    port or none."""
    if server.public or header is None:  # HTTP/1.0 clients send none; browsers always do
        return True
    host, port = header.strip().lower(), ""
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif host.count(":") == 1:
        host, port = host.split(":")
    if port and port != str(server.server_address[1]):
        return False
    return host == server.bound_host.lower() or host in LOOPBACK_NAMES or is_loopback(host)


def _handler(view: View) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "edgecls"
        server: "Server"

        def setup(self) -> None:
            self.timeout = self.server.idle_timeout  # StreamRequestHandler sets it on the socket
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the loop's output is the log
            pass

        def _send(self, body: bytes, ctype: str, status: HTTPStatus = HTTPStatus.OK) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            if not _host_allowed(self.headers.get("Host"), self.server):
                self.close_connection = True
                self._send(b"this view answers to its own address only (see edgecls camera --public)\n",
                           "text/plain; charset=utf-8", HTTPStatus.MISDIRECTED_REQUEST)
                return
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(PAGE.encode(), "text/html; charset=utf-8")
            elif path == "/status.json":
                with view.lock:
                    body = json.dumps(view.status).encode()
                self._send(body, "application/json")
            elif path == "/stream.mjpg":
                if not self.server.streams.acquire(blocking=False):
                    self._send(f"at most {self.server.max_streams} live streams at once; close another "
                               "viewer\n".encode(), "text/plain; charset=utf-8", HTTPStatus.SERVICE_UNAVAILABLE)
                    return
                try:
                    self._stream()
                finally:
                    self.server.streams.release()
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

        def _stream(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seq = 0
            try:
                while not self.server.closing:
                    seq, jpeg = view.next_jpeg(seq, timeout=min(5.0, self.server.idle_timeout))
                    if jpeg is None:
                        continue
                    # a client that stops reading fills its socket buffer: the write times out
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                                     "\r\n\r\n".encode() + jpeg + b"\r\n")
            except OSError:  # gone, reset, or timed out
                self.close_connection = True

    return Handler


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bound on worker threads and streams, and an idle timeout."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler], public: bool,
                 idle_timeout: float, max_workers: int, max_streams: int):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.bound_host, self.public, self.idle_timeout = host, public, idle_timeout
        self.max_workers, self.max_streams = max_workers, max_streams
        self.workers = threading.BoundedSemaphore(max_workers)
        self.streams = threading.BoundedSemaphore(max_streams)
        self.closing = False
        super().__init__((host, port), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.workers.acquire(blocking=False):
            self._busy(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.workers.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.workers.release()

    def _busy(self, request: socket.socket) -> None:
        """503 without reading the request, in the accepting thread: bounded by a short timeout."""
        body = f"busy: {self.max_workers} connections are open; try again\n".encode()
        try:
            request.settimeout(1.0)
            request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
                            + str(len(body)).encode() + b"\r\n\r\n" + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def server_close(self) -> None:
        self.closing = True
        super().server_close()


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


def serve(view: View, host: str, port: int, public: bool = False, idle_timeout: float = IDLE_TIMEOUT,
          max_workers: int = MAX_WORKERS, max_streams: int = MAX_STREAMS) -> Server:
    """Start the server in a daemon thread; returns it (``server_address`` has the real port).
    ``public``: answer to any ``Host`` header (the caller has checked the user asked for it)."""
    try:
        server = Server(host, port, _handler(view), public, idle_timeout, max_workers, max_streams)
    except OSError as e:
        raise EdgeclsError(f"cannot serve on {host}:{port} ({e.strerror}); pick another port") from None
    threading.Thread(target=server.serve_forever, daemon=True, name="edgecls-web").start()
    return server


def url(server: Server) -> str:
    """The address to open in a browser (IPv6 hosts in brackets)."""
    h, p = server.server_address[:2]
    return f"http://[{h}]:{p}/" if ":" in str(h) else f"http://{h}:{p}/"
