"""The web view under careless or hostile clients (issue 18, item 9): idle connections are closed,
worker threads and MJPEG streams are bounded (503 beyond), the Host header must name the view
unless --public (DNS rebinding), and [::1] works. Real sockets against the real server."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from edge_runtime.web import server as webview


def _frame(n: int = 0):
    return SimpleNamespace(n=n, t=time.time(), rgb=np.full((48, 64, 3), 90, np.uint8), display=None)


@pytest.fixture
def view():
    v = webview.View(max_fps=1000)
    v.update(_frame(), [], {"invoke": 1.0}, 10.0)
    return v


def _start(view, host="127.0.0.1", **kw):
    server = webview.serve(view, host, 0, **kw)
    return server, server.server_address[1]


def _get(host: str, port: int, path: str = "/status.json", host_header: str | None = None,
         family=socket.AF_INET, timeout: float = 5.0) -> tuple[int, bytes]:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        hh = host_header if host_header is not None else (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {hh}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:  # to the end; a running stream: to the end of its headers
            if path == "/stream.mjpg" and b"\r\n\r\n" in data and data.split(b" ", 2)[1] == b"200":
                break
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


def test_idle_connection_is_closed_after_the_timeout(view):
    server, port = _start(view, idle_timeout=0.5)
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.settimeout(10)
            t0 = time.monotonic()
            assert s.recv(1024) == b""  # the server hung up on a client that never spoke
            waited = time.monotonic() - t0
        assert 0.4 <= waited < 3.0, waited
        assert _get("127.0.0.1", port)[0] == 200  # and still serves others
    finally:
        server.shutdown()
        server.server_close()


def test_a_request_trickling_in_is_cut_at_the_deadline(view):
    """Slowloris: a byte every 0.2 s never trips a per-read timeout; the whole request has one."""
    server, port = _start(view, idle_timeout=1.0)
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.settimeout(0.2)
            t0 = time.monotonic()
            closed = False
            for ch in (b"GET /status.json HTTP/1.1\r\nX-Slow: " + b"a" * 100):
                try:
                    s.sendall(bytes([ch]))
                    if s.recv(1024) == b"":
                        closed = True
                        break
                except socket.timeout:
                    continue
                except OSError:
                    closed = True
                    break
            waited = time.monotonic() - t0
        assert closed and 0.9 <= waited < 3.0, (closed, waited)
    finally:
        server.shutdown()
        server.server_close()


def test_workers_are_bounded_and_the_next_client_gets_503(view):
    server, port = _start(view, idle_timeout=5, max_workers=3)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]  # hold every worker
    try:
        time.sleep(0.3)
        assert threading.active_count() < 20
        t0 = time.monotonic()
        status, body = _get("127.0.0.1", port)
        assert status == 503 and b"3 connections" in body
        assert time.monotonic() - t0 < 2.0  # refused at once, not queued behind the idle ones
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the slots come back when the idle clients go
        if _get("127.0.0.1", port)[0] == 200:
            break
        time.sleep(0.1)
    else:
        pytest.fail("workers were not released")
    server.shutdown()
    server.server_close()


def test_mjpeg_streams_are_capped(view):
    server, port = _start(view, max_streams=2, idle_timeout=5)
    streams = []
    try:
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(f"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            assert s.recv(64).startswith(b"HTTP/1.0 200")
            streams.append(s)
        status, body = _get("127.0.0.1", port, "/stream.mjpg")
        assert status == 503 and b"at most 2 live streams" in body
        assert _get("127.0.0.1", port)[0] == 200  # JSON is still served
        streams.pop().close()
        deadline = time.monotonic() + 5
        while _get("127.0.0.1", port, "/stream.mjpg")[0] != 200:  # a freed slot is taken again
            assert time.monotonic() < deadline
            view.update(_frame(1), [], {}, 1.0)  # the stream thread notices its client left on a write
            time.sleep(0.1)
    finally:
        for s in streams:
            s.close()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("host_header,status", [
    ("evil.example:{port}", 421), ("evil.example", 421), ("127.0.0.1:{port}", 200), ("localhost:{port}", 200),
    ("LOCALHOST", 200), ("127.0.0.1:1", 421), ("[::1]:{port}", 200), ("127.1.2.3:{port}", 200),
])
def test_host_header_must_name_the_view(view, host_header, status):
    server, port = _start(view)
    try:
        got, body = _get("127.0.0.1", port, "/status.json", host_header=host_header.format(port=port))
        assert got == status, body
        if status == 421:
            assert b'"classes"' not in body  # nothing of the view leaks to the rebinding page
    finally:
        server.shutdown()
        server.server_close()


def test_public_view_answers_any_host(view, tmp_path):
    from edge_runtime.web import auth

    auth.write_users(tmp_path / "u", {"a": auth.User("a", "viewer", auth.hash_password("a-password"))})
    server, port = _start(view, public=True, users=auth.Users(tmp_path / "u"))
    try:
        assert _get("127.0.0.1", port, host_header="camera.lan:80")[0] == 401  # past the Host check, to the login
    finally:
        server.shutdown()
        server.server_close()


def test_ipv6_loopback_works(view):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    host, port = webview.parse_address("[::1]:0")
    assert host == "::1" and webview.is_loopback(host)
    try:
        server = webview.serve(view, host, port)
    except Exception as e:  # a container without an IPv6 loopback
        pytest.skip(f"cannot bind [::1]: {e}")
    try:
        p = server.server_address[1]
        assert webview.url(server) == f"http://[::1]:{p}/"
        status, body = _get("::1", p, family=socket.AF_INET6)
        assert status == 200 and b'"frame": 0' in body
    finally:
        server.shutdown()
        server.server_close()
