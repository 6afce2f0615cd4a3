"""The web view of ``edgecls camera --serve``: the live picture as MJPEG, the current top-k, FPS
and latency, and the same figures as JSON. The standard library's threading HTTP server does the
HTTP; this module only writes responses, and bounds what clients can take:

- a connection idle for ``IDLE_TIMEOUT`` seconds (no request, or a stream it does not read) is closed,
  and so is one whose request (line, headers and body, or TLS handshake) takes longer than that to
  arrive, however slowly it trickles in; a POST body has a digits-only ``Content-Length`` of at most
  ``MAX_BODY`` bytes, and a client that hangs up mid-request is let go without a word;
- at most ``MAX_WORKERS`` connections are served at once, and ``MAX_STREAMS`` of them MJPEG
  streams: one more gets ``503 Service Unavailable`` at once;
- on a loopback address (unless ``--public``), a request whose ``Host`` header names neither the
  bound address nor a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``) gets ``421``: a web
  page elsewhere cannot reach a loopback-only view by pointing its own name at 127.0.0.1 (DNS
  rebinding);
- IPv6 addresses work (``--serve [::1]:8000``).

And it decides who may do what (``Handler``'s docstring; users, sessions and the login throttle in
``web.auth``): with a users file, viewers see and admins also write; every write is a same-origin
JSON POST (with a session, carrying its CSRF token); every response carries a Content-Security-Policy
without inline script, ``nosniff``, ``X-Frame-Options: DENY`` and ``Referrer-Policy: same-origin``;
``--tls-cert/--tls-key`` serve HTTPS with the standard library's ``ssl``."""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import math
import re
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, quote, urlsplit

from PIL import Image

from edge_runtime.errors import EdgeclsError
from edge_runtime.web.auth import Session, Sessions, Throttle, User, Users, csrf_ok

BOUNDARY = "edgecls-frame"
IDLE_TIMEOUT = 10.0  # seconds a connection may sit without a request or without reading its stream
MAX_WORKERS = 16  # connections served at once
MAX_STREAMS = 4  # of which MJPEG streams
LOOPBACK_NAMES = ("localhost", "localhost.", "ip6-localhost", "ip6-loopback")
WEB = Path(__file__).resolve().parent / "static"  # the pages, their scripts and style sheet, served as they are
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8"}
ASSETS = {"/" + p.name for p in WEB.iterdir() if p.suffix in (".css", ".js")}  # served to anyone: code, no data
MAX_BODY = 1 << 16  # bytes in a POST body
CSRF_HEADER = "X-CSRF-Token"
# On every response. No inline script or style anywhere, so the policy needs no 'unsafe-inline': a
# label that got into the markup still could not run.
SECURITY_HEADERS = (
    ("Content-Security-Policy", ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: "
                                 "blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                                 "frame-ancestors 'none'")),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
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
        self.drift_ref: Any = None  # the drift's JSON (None: the bundle has no reference), read per request
        self.metrics_ref: Any = None  # () -> (Prometheus text, content type); ImportError without prometheus-client
        self.bundle_ref: Any = None  # the bundle running: name, version, sha256 (following a deployed folder: since, refused)

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
        drift = {"drift": self.drift_ref()} if self.drift_ref is not None else {}
        bundle = {"bundle": self.bundle_ref()} if self.bundle_ref is not None else {}
        with self.lock:
            return {**self.status, "history": self._history(), **drift, **bundle}

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


class ClientGone(ConnectionError):
    """The client hung up before its request had arrived whole."""


class Refused(Exception):
    """A request answered with an error status (and a one-line reason) instead of its route."""

    def __init__(self, status: HTTPStatus, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status, self.headers = status, headers


@dataclass(frozen=True)
class Who:
    """Who sent a request: ``role`` None is nobody logged in; ``session`` is set for a browser login
    (whose writes then need its CSRF token)."""

    name: str | None
    role: str | None
    session: Session | None = None
    token: str | None = None


class Handler(BaseHTTPRequestHandler):
    """The camera page, /status.json and the MJPEG stream of ``view``, the login page and the static
    files; collect and review subclass it with their pages (``pages``) and writes (``writes``).

    Every GET of a page or its data needs a viewer, every POST outside /login and /logout an admin
    (with no users file: everyone, on loopback). Every POST must also be JSON from this origin, and
    with a session carry its CSRF token: what a page on another site can make a browser send (a
    form, a ``no-cors`` fetch, a foreign ``Origin``) is refused before the body is read."""

    server_version = "edgecls"
    server: "Server"
    view: View
    page = "camera.html"  # what / serves

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout  # StreamRequestHandler sets it on the socket
        if self.server.tls is not None:  # the handshake in this worker thread, under the request deadline
            raw = self.request
            raw.settimeout(self.server.idle_timeout)
            self.server.expect_request(raw)
            try:
                self.request = self.server.tls.wrap_socket(raw, server_side=True)
            finally:
                self.server.request_read(raw)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self.server.tls is not None:  # socketserver closes the plain socket, which TLS has taken over
                self.request.close()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the loop's output is the log
        pass

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def _send(self, body: bytes, ctype: str, status: HTTPStatus = HTTPStatus.OK,
              headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, obj: Any, status: HTTPStatus = HTTPStatus.OK,
                  headers: tuple[tuple[str, str], ...] = ()) -> None:
        self._send(json.dumps(obj).encode(), "application/json", status, headers)

    def _file(self, name: str) -> None:
        self._send((WEB / name).read_bytes(), CONTENT_TYPES[Path(name).suffix])

    # --- routes ---------------------------------------------------------------------------------

    def pages(self) -> dict[str, Callable[[dict[str, str]], None]]:
        """GET path -> a function of the query that answers it (needs a viewer). Subclasses add theirs."""
        return {"/": lambda q: self._file(self.page), "/status.json": lambda q: self.send_json(self.view.snapshot()),
                "/stream.mjpg": lambda q: self._stream_slot(), "/metrics": lambda q: self._metrics()}

    def _metrics(self) -> None:
        """Prometheus's text format, with the same access as /status.json; 501 and one line saying
        what to install when prometheus-client is not."""
        metrics = getattr(self.view, "metrics_ref", None)
        if metrics is None:
            raise Refused(HTTPStatus.NOT_FOUND, "/metrics: this page has no metrics (edgecls camera --serve has)")
        try:
            body, ctype = metrics()
        except ImportError as e:
            self._send(f"{e}\n".encode(), "text/plain; charset=utf-8", HTTPStatus.NOT_IMPLEMENTED)
            return
        self._send(body, ctype)

    def writes(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        """POST path -> a function of the JSON body whose result is answered as JSON (needs an admin)."""
        return {}

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        path, q = query(self.path)
        try:
            if path in ASSETS:
                self._file(path[1:])
            elif path == "/login":
                self._login_page(q)
            elif path == "/session.json":
                self._session_json()
            elif path in (route := self.pages()):
                self._allowed("viewer", page=path)
                route[path](q)
            else:
                raise Refused(HTTPStatus.NOT_FOUND, f"{path}: no such page")
        except Refused as e:
            self._refuse(e)

    def do_POST(self) -> None:  # noqa: N802
        self.dispatch_post(self.writes())

    def dispatch_post(self, routes: Mapping[str, Callable[[dict[str, Any]], Any]]) -> None:
        """POST ``path`` -> ``routes[path](body)``, answered as JSON, once the request has passed the
        checks above; a bad request is a 400 with ``{"error"}``. A client gone mid-request is let go."""
        path = query(self.path)[0]
        try:
            self._same_origin_json()
            if path == "/login":
                self._login(self.read_json())
                return
            if path == "/logout":
                self._logout()
                return
            route = routes.get(path)
            if route is None:
                raise Refused(HTTPStatus.NOT_FOUND, f"{path}: no such action")
            self._allowed("admin", csrf=True)
            body = self.read_json()
            try:
                result = route(body)
            except (ValueError, EdgeclsError, OSError) as e:
                raise Refused(HTTPStatus.BAD_REQUEST, str(e)) from None
            self.send_json(result)
        except Refused as e:
            self.close_connection = True
            self._drain()
            self._refuse(e)
        except ClientGone:
            self.close_connection = True

    def _drain(self) -> None:
        """Read a refused request's body (when it is within the limits) before answering: closing on
        unread data resets the connection, and the client may lose the answer."""
        try:
            self.read_body()
        except (Refused, ClientGone, ValueError):
            pass

    def _refuse(self, e: Refused) -> None:
        self.send_json({"error": str(e)}, e.status, e.headers)

    # --- the checks -----------------------------------------------------------------------------

    def _same_origin_json(self) -> None:
        """A write must come from this origin (``Origin``, ``Sec-Fetch-Site``) as JSON: a cross-site
        form or ``no-cors`` fetch can send neither, and a cross-site JSON request needs a CORS
        preflight this server never approves."""
        site = self.headers.get("Sec-Fetch-Site")
        origin = self.headers.get("Origin")
        scheme = "https" if self.server.tls is not None else "http"
        if (site is not None and site not in ("same-origin", "none")) or \
                (origin is not None and origin.lower() != f"{scheme}://{(self.headers.get('Host') or '').lower()}"):
            raise Refused(HTTPStatus.FORBIDDEN, "a write must come from this server's own page (cross-site request "
                          "refused)")
        if self.headers.get_content_type() != "application/json":
            raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "a write must be a JSON body (Content-Type: "
                          "application/json)")

    def _allowed(self, need: str, page: str | None = None, csrf: bool = False) -> Who:
        """Who sent this request, if their role allows ``need`` (viewer or admin); else Refused: a
        browser asking for a page is sent to the login page, anyone else gets 401 (or 403)."""
        who = self.who()
        if who.role is None:
            if page is not None and "text/html" in (self.headers.get("Accept") or ""):
                raise Refused(HTTPStatus.SEE_OTHER, "log in first", (("Location", "/login?next=" + quote(page)),))
            raise Refused(HTTPStatus.UNAUTHORIZED, "log in first (on /login, or with HTTP Basic: curl -u NAME)",
                          self._challenge())
        if need == "admin" and who.role != "admin":
            raise Refused(HTTPStatus.FORBIDDEN, f"{who.name} is a viewer: only an admin may change anything")
        if csrf and who.session is not None and not csrf_ok(who.session, self.headers.get(CSRF_HEADER)):
            raise Refused(HTTPStatus.FORBIDDEN, f"missing or wrong {CSRF_HEADER} (reload the page)")
        return who

    def _challenge(self) -> tuple[tuple[str, str], ...]:
        """``WWW-Authenticate`` for scripts and direct visits, not for the pages' own fetches (a
        browser would pop up its password dialog over the login page)."""
        if self.headers.get("Sec-Fetch-Mode") in ("cors", "same-origin", "no-cors"):
            return ()
        return (("WWW-Authenticate", 'Basic realm="edgecls", charset="UTF-8"'),)

    def who(self) -> Who:
        """The sender: everyone is an admin without a users file (loopback only); else the session
        cookie's user, or HTTP Basic's (checked, throttled), or nobody."""
        server = self.server
        if server.users is None:
            return Who(None, "admin")
        token = self._cookie()
        session = server.sessions.get(token)
        if session is not None:
            role = server.users.role(session.name)
            if role is not None:
                return Who(session.name, role, session, token)
            server.sessions.end(token)  # removed from the users file since
        auth = self.headers.get("Authorization") or ""
        if auth[:6].lower() == "basic ":
            try:
                name, _, password = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise Refused(HTTPStatus.BAD_REQUEST, "malformed Authorization header") from None
            user = self._check_password(name, password)
            return Who(user.name, user.role)
        return Who(None, None)

    def _check_password(self, name: str, password: str) -> User:
        """The user, or Refused: 429 while the client is locked out by failed logins, 401 for a
        wrong name or password (logged in one line, never with the password)."""
        server, address = self.server, self.client_address[0]
        wait = server.throttle.wait(address)
        if wait > 0:
            raise Refused(HTTPStatus.TOO_MANY_REQUESTS, f"too many failed logins; try again in {math.ceil(wait)} s",
                          (("Retry-After", str(math.ceil(wait))),))
        user = server.users.authenticate(name, password) if server.users is not None else None
        if user is not None:
            server.throttle.succeeded(address)
            return user
        n = server.throttle.failed(address)
        print(f"edgecls: web: failed login as {name[:64]!r} from {address} ({n} in a row)", file=sys.stderr,
              flush=True)
        raise Refused(HTTPStatus.UNAUTHORIZED, "wrong name or password", self._challenge())

    # --- logging in and out ---------------------------------------------------------------------

    def _cookie_name(self) -> str:
        """Per port (two edgecls pages on one host keep their logins apart); ``__Host-`` under TLS."""
        port = self.server.server_address[1]
        return f"__Host-edgecls-{port}" if self.server.tls is not None else f"edgecls-{port}"

    def _cookie(self) -> str | None:
        try:
            jar = SimpleCookie(self.headers.get("Cookie") or "")
        except CookieError:
            return None
        morsel = jar.get(self._cookie_name())
        return morsel.value if morsel else None

    def _set_cookie(self, token: str, max_age: int) -> tuple[str, str]:
        secure = "; Secure" if self.server.tls is not None else ""
        value = f"{self._cookie_name()}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
        return "Set-Cookie", value

    def _login_page(self, q: dict[str, str]) -> None:
        if self.server.users is None:
            raise Refused(HTTPStatus.SEE_OTHER, "no users file: nothing to log in to", (("Location", "/"),))
        self._file("login.html")

    def _session_json(self) -> None:
        who = self.who()
        self.send_json({"user": who.name, "role": who.role, "csrf": who.session.csrf if who.session else None,
                        "login": self.server.users is not None})

    def _login(self, body: dict[str, Any]) -> None:
        if self.server.users is None:
            raise Refused(HTTPStatus.NOT_FOUND, "this server has no users file (--users): nothing to log in to")
        name, password = body.get("name"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise Refused(HTTPStatus.BAD_REQUEST, "give name and password")
        user = self._check_password(name, password)
        token, session = self.server.sessions.start(user.name)
        print(f"edgecls: web: {user.name} ({user.role}) logged in from {self.client_address[0]}", file=sys.stderr,
              flush=True)
        self.send_json({"user": user.name, "role": user.role, "csrf": session.csrf},
                       headers=(self._set_cookie(token, int(self.server.sessions.ttl)),))

    def _logout(self) -> None:
        who = self.who()
        if who.session is not None:
            if not csrf_ok(who.session, self.headers.get(CSRF_HEADER)):
                raise Refused(HTTPStatus.FORBIDDEN, f"missing or wrong {CSRF_HEADER} (reload the page)")
            self.server.sessions.end(who.token)
        self.send_json({"user": None}, headers=(self._set_cookie("", 0),))

    # --- bodies ---------------------------------------------------------------------------------

    def read_json(self) -> dict[str, Any]:
        """The request's JSON object (at most ``MAX_BODY`` bytes, within the request's deadline)."""
        try:
            data = json.loads(self.read_body() or b"{}")
        except ValueError:
            raise Refused(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise Refused(HTTPStatus.BAD_REQUEST, "expected a JSON object")
        return data

    def read_body(self) -> bytes:
        """The body, by its ``Content-Length`` (digits only, at most ``MAX_BODY``); the whole-request
        deadline keeps running while it arrives. ClientGone when the client hangs up before the end."""
        if self.headers.get("Transfer-Encoding"):
            raise Refused(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length, not chunked")
        lengths = set(self.headers.get_all("Content-Length") or [])
        if not lengths:
            raise Refused(HTTPStatus.LENGTH_REQUIRED, "a POST needs a Content-Length")
        text = lengths.pop().strip()
        if lengths or not re.fullmatch(r"[0-9]{1,12}", text):
            raise Refused(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        n = int(text)
        if n > MAX_BODY:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is over {MAX_BODY // 1024} KiB")
        if self.body_read:
            return b""
        self.body_read = True
        try:
            data = self.rfile.read(n)
        except OSError:  # reset, or cut at the deadline
            raise ClientGone() from None
        finally:
            self.server.request_read(self.connection)
        if len(data) < n:
            raise ClientGone()
        return data

    def send_image_in(self, root: Path, rel: str) -> None:
        """``root/rel`` if it is an image file inside ``root`` (no ``..`` escapes), else 404."""
        try:
            path = (root / rel).resolve()
            path.relative_to(root.resolve())
        except (ValueError, OSError):
            raise Refused(HTTPStatus.NOT_FOUND, "no such photo") from None
        if not path.is_file() or path.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp", ".webp"):
            raise Refused(HTTPStatus.NOT_FOUND, "no such photo")
        self._send(path.read_bytes(), "image/png" if path.suffix.lower() == ".png" else "image/jpeg")

    def handle_one_request(self) -> None:
        self.body_read = False
        self.server.expect_request(self.connection)  # the whole request, not each recv, has a deadline
        try:
            super().handle_one_request()
        finally:
            self.server.request_read(self.connection)

    def parse_request(self) -> bool:
        """Every method of every page (collect's and review's too): refuse a foreign Host first."""
        ok = super().parse_request()  # reads the headers
        if self.command != "POST":  # a POST's deadline runs on until its body is read (read_body)
            self.server.request_read(self.connection)
        if not ok:
            return False
        if _host_allowed(self.headers.get("Host"), self.server):
            return True
        self.close_connection = True
        self._send(b"this view answers to its own address only (see --public)\n", "text/plain; charset=utf-8",
                   HTTPStatus.MISDIRECTED_REQUEST)
        return False

    def _stream_slot(self) -> None:
        if not self.server.streams.acquire(blocking=False):
            self._send(f"at most {self.server.max_streams} live streams at once; close another "
                       "viewer\n".encode(), "text/plain; charset=utf-8", HTTPStatus.SERVICE_UNAVAILABLE)
            return
        try:
            self._stream()
        finally:
            self.server.streams.release()

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
                 idle_timeout: float, max_workers: int, max_streams: int, users: Users | None = None,
                 tls: ssl.SSLContext | None = None, throttle: Throttle | None = None):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.bound_host, self.public, self.idle_timeout = host, public, idle_timeout
        self.users, self.tls = users, tls
        self.sessions = Sessions()
        self.throttle = throttle or Throttle()
        self.max_workers, self.max_streams = max_workers, max_streams
        self.workers = threading.BoundedSemaphore(max_workers)
        self.streams = threading.BoundedSemaphore(max_streams)
        self.closing = False
        self.waiting: dict[socket.socket, float] = {}  # connection -> when its request must have arrived
        self.waiting_lock = threading.Lock()
        super().__init__((host, port), handler)

    def server_bind(self) -> None:
        """Bind as HTTPServer does, without its ``socket.getfqdn`` of the address: a reverse DNS
        lookup (slow on a Pi without a resolver) that loads the IDNA codec for a name nothing here
        reads."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

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
                socket.socket.shutdown(c, socket.SHUT_RDWR)  # the plain socket's (a TLS one's keeps its state)
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

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up, resets or times out is no error of the server's: nothing is
        printed. Anything else is one line, not socketserver's traceback."""
        e = sys.exc_info()[1]
        if isinstance(e, OSError):  # ConnectionError, TimeoutError, ssl.SSLError (plain HTTP to HTTPS)
            return
        print(f"edgecls: web: error answering {client_address[0]}: {type(e).__name__}: {e}", file=sys.stderr,
              flush=True)

    def _busy(self, request: socket.socket) -> None:
        """503 without reading the request, in the accepting thread: bounded by a short timeout."""
        body = f"busy: {self.max_workers} connections are open; try again\n".encode()
        if self.tls is not None:  # no handshake here (it could stall the accepting thread): hang up
            self.shutdown_request(request)
            return
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
          max_streams: int = MAX_STREAMS, users: Users | None = None, tls: ssl.SSLContext | None = None,
          throttle: Throttle | None = None) -> Server:
    """Start the server in a daemon thread; returns it (``server_address`` has the real port).
    ``handler``: a subclass of ``handler_for(view)`` with more pages (collect, review). ``public``:
    answer to any ``Host`` header (the caller has checked the user asked for it, with ``users``).
    ``users``: who may log in (None: everyone is an admin; loopback only). ``tls``: serve HTTPS."""
    if users is None and (public or not is_loopback(host)):
        raise EdgeclsError(f"{host}:{port} is reachable from other machines: it needs a users file (--users FILE)")
    try:
        # Bound to a non-loopback address, the callers have already required --public: the Host check
        # guards loopback-only views, which DNS rebinding would otherwise open to any web page.
        server = Server(host, port, handler or handler_for(view), public or not is_loopback(host), idle_timeout,
                        max_workers, max_streams, users, tls, throttle)
    except OSError as e:
        raise EdgeclsError(f"cannot serve on {host}:{port} ({e.strerror}); pick another port") from None
    threading.Thread(target=server.serve_forever, daemon=True, name="edgecls-web").start()
    return server


def url(server: Server) -> str:
    """The address to open in a browser (IPv6 hosts in brackets)."""
    h, p = server.server_address[:2]
    scheme = "https" if server.tls is not None else "http"
    return f"{scheme}://[{h}]:{p}/" if ":" in str(h) else f"{scheme}://{h}:{p}/"


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context for ``--tls-cert``/``--tls-key`` (PEM files), TLS 1.2 at least."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as e:
        raise EdgeclsError(f"{e.filename or cert}: no such file; give --tls-cert and --tls-key as PEM files "
                           "(see README: Web pages on a network)") from None
    except (ssl.SSLError, OSError) as e:
        raise EdgeclsError(f"{cert}, {key}: cannot load the certificate and key ({e}); give PEM files whose key "
                           "matches the certificate (see README: Web pages on a network)") from None
    return ctx
