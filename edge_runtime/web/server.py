"""The web view of ``edgecls camera --serve``: the live picture as MJPEG, the current top-k, FPS
and latency, and the same figures as JSON. The standard library's threading HTTP server does the
HTTP; this module only writes responses, and bounds what clients can take:

- a connection idle for ``IDLE_TIMEOUT`` seconds (no request, or a stream it does not read) is closed,
  and so is one whose request line and headers take longer than that to arrive, however slowly they
  trickle in;
- at most ``MAX_WORKERS`` connections are served at once, and ``MAX_STREAMS`` of them MJPEG
  streams: one more gets ``503 Service Unavailable`` at once;
- on a loopback address (unless ``--public``), a request whose ``Host`` header names neither the
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
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from edge_runtime.errors import EdgeclsError

BOUNDARY = "edgecls-frame"
IDLE_TIMEOUT = 10.0  # seconds a connection may sit without a request or without reading its stream
MAX_WORKERS = 16  # connections served at once
MAX_STREAMS = 4  # of which MJPEG streams
LOOPBACK_NAMES = ("localhost", "localhost.", "ip6-localhost", "ip6-loopback")
WEB = Path(__file__).resolve().parent / "static"  # the pages and their style sheet, served as they are
FILES = {"/": ("camera.html", "text/html; charset=utf-8"), "/edgecls.css": ("edgecls.css", "text/css; charset=utf-8")}
HISTORY_S = 60.0  # the page's strip: the last minute


class View:
    """What the page shows, updated by the camera loop, read by the HTTP threads."""

    def __init__(self, max_fps: float = 15.0, info: dict[str, Any] | None = None):
        self.lock = threading.Condition()
        self.info = info or {}  # model, backend, threads, interpreter: shown in the page's header
        self.status: dict[str, Any] = {"frame": None, "t": None, "classes": [], "fps": 0.0, "latency_ms": {},
                                       "dropped": 0, "errors": 0, "info": self.info}
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
        self.errors_ref: Any = None  # frames the source could not read (the camera loop's count)
        self.zones_ref: Any = None  # per zone: box, classified, skipped, newest result (with --zone)

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
                           "errors": self.errors_ref() if self.errors_ref else 0,
                           "actions": self.actions_ref() if self.actions_ref else {}, "info": self.info,
                           **({"zones": self.zones_ref()} if self.zones_ref else {})}
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

    def snapshot(self) -> dict[str, Any]:
        """What /status.json serves: the latest status and the last minute, built per request, not per frame."""
        with self.lock:
            return {**self.status, "history": self._history()}

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


class Handler(BaseHTTPRequestHandler):
    """The camera page, its style sheet, /status.json and the MJPEG stream of ``view``; collect and
    review subclass it for their pages."""

    server_version = "edgecls"
    server: "Server"
    view: View

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

    # --- for the pages that answer JSON (collect, review) ---------------------------------------

    def send_json(self, obj: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(json.dumps(obj).encode(), "application/json", status)

    def read_json(self) -> dict[str, Any]:
        """The request's JSON object (at most 64 KiB)."""
        n = int(self.headers.get("Content-Length") or 0)
        if n > 1 << 16:
            raise ValueError("request too large")
        data = json.loads(self.rfile.read(n) or b"{}")
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return data

    def dispatch_post(self, routes: Mapping[str, Callable[[dict[str, Any]], Any]]) -> None:
        """POST ``path`` -> ``routes[path](body)``, answered as JSON; a bad request is a 400 with
        ``{"error"}``, an unknown path a 404."""
        route = routes.get(self.path.split("?", 1)[0])
        if route is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        try:
            self.send_json(route(self.read_json()))
        except (ValueError, EdgeclsError, OSError) as e:
            self.send_json({"error": str(e)}, HTTPStatus.BAD_REQUEST)

    def send_image_in(self, root: Path, rel: str) -> None:
        """``root/rel`` if it is an image file inside ``root`` (no ``..`` escapes), else 404."""
        try:
            path = (root / rel).resolve()
            path.relative_to(root.resolve())
        except (ValueError, OSError):
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        if not path.is_file() or path.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp", ".webp"):
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        self._send(path.read_bytes(), "image/png" if path.suffix.lower() == ".png" else "image/jpeg")

    def handle_one_request(self) -> None:
        self.server.expect_request(self.connection)  # the whole request, not each recv, has a deadline
        try:
            super().handle_one_request()
        finally:
            self.server.request_read(self.connection)

    def parse_request(self) -> bool:
        """Every method of every page (collect's and review's too): refuse a foreign Host first."""
        ok = super().parse_request()  # reads the headers
        self.server.request_read(self.connection)
        if not ok:
            return False
        if _host_allowed(self.headers.get("Host"), self.server):
            return True
        self.close_connection = True
        self._send(b"this view answers to its own address only (see --public)\n", "text/plain; charset=utf-8",
                   HTTPStatus.MISDIRECTED_REQUEST)
        return False

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        path = self.path.split("?", 1)[0]
        if path in FILES:
            name, ctype = FILES[path]
            self._send((WEB / name).read_bytes(), ctype)
        elif path == "/status.json":
            body = json.dumps(self.view.snapshot()).encode()
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
                seq, jpeg = self.view.next_jpeg(seq, timeout=min(5.0, self.server.idle_timeout))
                if jpeg is None:
                    continue
                # a client that stops reading fills its socket buffer: the write times out
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                                 "\r\n\r\n".encode() + jpeg + b"\r\n")
        except OSError:  # gone, reset, or timed out
            self.close_connection = True


def query(path: str) -> tuple[str, dict[str, str]]:
    u = urlsplit(path)
    return u.path, {k: v[0] for k, v in parse_qs(u.query).items()}


def handler_for(view: View) -> type[Handler]:
    """``Handler`` bound to ``view`` (collect and review subclass it with their pages)."""
    return type("Handler", (Handler,), {"view": view})


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bound on worker threads and streams, an idle timeout per read and a
    deadline for each whole request."""

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
        self.waiting: dict[socket.socket, float] = {}  # connection -> when its request must have arrived
        self.waiting_lock = threading.Lock()
        super().__init__((host, port), handler)

    def expect_request(self, conn: socket.socket) -> None:
        with self.waiting_lock:
            self.waiting[conn] = time.monotonic() + self.idle_timeout

    def request_read(self, conn: socket.socket) -> None:
        with self.waiting_lock:
            self.waiting.pop(conn, None)

    def service_actions(self) -> None:
        """Twice a second (serve_forever's poll): hang up on clients whose request line and headers
        have not arrived within the idle timeout, however slowly they trickle in (slowloris)."""
        now = time.monotonic()
        with self.waiting_lock:
            late = [c for c, deadline in self.waiting.items() if deadline < now]
            for c in late:
                del self.waiting[c]
        for c in late:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

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


def serve(view: View, host: str, port: int, handler: type[BaseHTTPRequestHandler] | None = None,
          public: bool = False, idle_timeout: float = IDLE_TIMEOUT, max_workers: int = MAX_WORKERS,
          max_streams: int = MAX_STREAMS) -> Server:
    """Start the server in a daemon thread; returns it (``server_address`` has the real port).
    ``handler``: a subclass of ``handler_for(view)`` with more pages (collect, review). ``public``:
    answer to any ``Host`` header (the caller has checked the user asked for it)."""
    try:
        # Bound to a non-loopback address, the callers have already required --public: the Host check
        # guards loopback-only views, which DNS rebinding would otherwise open to any web page.
        server = Server(host, port, handler or handler_for(view), public or not is_loopback(host), idle_timeout,
                        max_workers, max_streams)
    except OSError as e:
        raise EdgeclsError(f"cannot serve on {host}:{port} ({e.strerror}); pick another port") from None
    threading.Thread(target=server.serve_forever, daemon=True, name="edgecls-web").start()
    return server


def url(server: Server) -> str:
    """The address to open in a browser (IPv6 hosts in brackets)."""
    h, p = server.server_address[:2]
    return f"http://[{h}]:{p}/" if ":" in str(h) else f"http://{h}:{p}/"
