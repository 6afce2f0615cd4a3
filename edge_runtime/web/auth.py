"""Who may use the web pages: the users file, password hashes, sessions, CSRF tokens and the
throttle on failed logins. The server (``web.server``) asks this module; nothing here speaks HTTP.

The users file, one user a line (``#`` starts a comment)::

    NAME ROLE scrypt$N$R$P$SALT$HASH

- ROLE is ``admin`` (every page and every write) or ``viewer`` (every page, read-only).
- The hash is the standard library's ``hashlib.scrypt`` of the UTF-8 password with a random 16-byte
  salt (base64), N=2**14, r=8, p=1: about 16 MiB and tens of milliseconds a check, so a stolen file
  is slow to guess from; a check compares in constant time.
- The file is written whole (a temporary file, then a rename) with mode 0600, and a file that its
  group or others may read is refused, as ssh refuses such a key.

Sessions live in the server's memory (a restart logs everyone out): a random token from
``secrets`` in an HttpOnly, SameSite=Strict cookie, each with its own CSRF token that the page
sends back in a header with every write. A session ends after ``SESSION_S`` or at log-out, and
at once when its user is removed from the file or changes role."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import stat
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.errors import EdgeclsError

ROLES = ("admin", "viewer")
NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")  # no ':' (HTTP Basic splits on it), no spaces (the file's columns)
MIN_PASSWORD = 8
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
SESSION_S = 12 * 3600.0  # a browser login lasts a working day
MAX_SESSIONS = 1000  # the oldest go first beyond this
MAKE = "make one with `edgecls users add {path} NAME --role admin`"


class UsersFileError(EdgeclsError):
    """A users file that cannot be used: missing, unreadable, readable by others, or malformed."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 << 20)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a ``hash_password`` string), in constant time."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        want = base64.b64decode(digest, validate=True)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt, validate=True), n=int(n), r=int(r),
                             p=int(p), maxmem=128 << 20, dklen=len(want))
    except (ValueError, TypeError, MemoryError):
        return False
    return kind == "scrypt" and hmac.compare_digest(got, want)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ValueError(f"user name {name!r}: use 1 to 64 letters, digits, '.', '_', '@' or '-'")
    return name


def check_new_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    return password


@dataclass(frozen=True)
class User:
    name: str
    role: str
    hash: str


def _check_mode(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise UsersFileError(f"{path}: not a users file (not a regular file); {MAKE.format(path=path)}")
    if os.name == "posix" and st.st_mode & 0o077:
        raise UsersFileError(f"{path}: others may read this users file (mode {stat.S_IMODE(st.st_mode):04o}); "
                             f"run `chmod 600 {path}`")


def read_users(path: str | os.PathLike, missing_ok: bool = False) -> dict[str, User]:
    """The users in ``path`` (name -> User); refuses a file that others may read or that does not parse."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise UsersFileError(f"{path}: no such users file; {MAKE.format(path=path)}") from None
    except OSError as e:
        raise UsersFileError(f"{path}: cannot read the users file ({e.strerror})") from None
    _check_mode(path, st)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsersFileError(f"{path}: cannot read the users file ({e}); {MAKE.format(path=path)}") from None
    users: dict[str, User] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if (len(parts) != 3 or not NAME.fullmatch(parts[0]) or parts[1] not in ROLES
                or not parts[2].startswith("scrypt$") or parts[2].count("$") != 5):
            raise UsersFileError(f"{path} line {n}: not 'NAME ROLE scrypt$...'; fix the line, or remove it and add "
                                 "the user again with `edgecls users add`")
        users[parts[0]] = User(parts[0], parts[1], parts[2])
    return users


def write_users(path: str | os.PathLike, users: dict[str, User]) -> None:
    """Replace ``path`` with ``users``: a temporary file in the same folder (mkstemp: mode 0600), flushed
    to disk, then renamed over it (a crash leaves the old file or the new one, never half)."""
    path = Path(path)
    lines = ["# edgecls users: NAME ROLE scrypt-hash (edgecls users add/remove; keep this file mode 600)"]
    lines += [f"{u.name} {u.role} {u.hash}" for u in sorted(users.values(), key=lambda u: u.name)]
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-users-", dir=path.parent)
    except OSError as e:
        raise UsersFileError(f"{path}: cannot write the users file there ({e.strerror}); pick a folder you may "
                             "write to") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Users:
    """The users file as the server sees it: reread when it changes on disk, so ``edgecls users
    add/remove`` take effect without a restart. A file that turns bad while serving lets nobody in
    (and says so once) until it is fixed."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock = threading.Lock()
        self.users = read_users(self.path)
        if not self.users:
            raise UsersFileError(f"{self.path}: no users in the file; add one with `edgecls users add {self.path} "
                                 "NAME --role admin`")
        self.stamp = self._stamp()
        self.problem: str | None = None
        self.verified: dict[bytes, tuple[str, float]] = {}  # keyed HMAC of (name, password) -> (hash, until)
        self.key = secrets.token_bytes(32)
        # What an unknown name's password is checked against. Made here, not when the module is
        # imported: scrypt takes 16 MB for a moment, which a page served without users never needs.
        self.dummy = hash_password(secrets.token_urlsafe(12))

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
            return st.st_mtime_ns, st.st_size, st.st_ino
        except OSError:
            return None

    def current(self) -> dict[str, User]:
        with self.lock:
            stamp = self._stamp()
            if stamp != self.stamp:
                self.stamp = stamp
                try:
                    self.users, self.problem = read_users(self.path), None
                except UsersFileError as e:
                    self.users, self.problem = {}, str(e)
                    print(f"edgecls: web: {e}; nobody can log in until it is fixed", file=sys.stderr, flush=True)
                self.verified.clear()
            return self.users

    def role(self, name: str) -> str | None:
        u = self.current().get(name)
        return u.role if u else None

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs. A right password is remembered for a minute (as a keyed
        hash, in memory), so a script polling with HTTP Basic does not pay for scrypt every request."""
        u = self.current().get(name)
        if u is None:
            check_password(password, self.dummy)  # the same time whether or not the name exists
            return None
        key = hmac.new(self.key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        with self.lock:
            hit = self.verified.get(key)
        if hit and hit[0] == u.hash and hit[1] > now:
            return u
        if not check_password(password, u.hash):
            return None
        with self.lock:
            if len(self.verified) > 256:
                self.verified.clear()
            self.verified[key] = (u.hash, now + 60.0)
        return u


@dataclass
class Session:
    name: str
    csrf: str
    until: float


class Sessions:
    """Browser logins: token -> Session, in memory, each ending after ``ttl`` seconds."""

    def __init__(self, ttl: float = SESSION_S, limit: int = MAX_SESSIONS):
        self.ttl, self.limit = ttl, limit
        self.lock = threading.Lock()
        self.sessions: dict[str, Session] = {}

    def start(self, name: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        s = Session(name, secrets.token_urlsafe(32), time.monotonic() + self.ttl)
        with self.lock:
            self._prune()
            while len(self.sessions) >= self.limit:
                self.sessions.pop(next(iter(self.sessions)))
            self.sessions[token] = s
        return token, s

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self.lock:
            s = self.sessions.get(token)
            if s is not None and s.until < time.monotonic():
                del self.sessions[token]
                return None
            return s

    def end(self, token: str | None) -> None:
        with self.lock:
            self.sessions.pop(token or "", None)

    def _prune(self) -> None:
        now = time.monotonic()
        for t in [t for t, s in self.sessions.items() if s.until < now]:
            del self.sessions[t]


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf.encode(), (sent or "").encode())


class Throttle:
    """Failed logins per client address: ``free`` mistakes, then each one more locks the address
    out for twice as long as the last (``base`` seconds first, at most ``cap``); attempts while
    locked out are answered 429 without looking at the password. A right password clears it."""

    def __init__(self, free: int = 3, base: float = 1.0, cap: float = 300.0, limit: int = 10000):
        self.free, self.base, self.cap, self.limit = free, base, cap, limit
        self.lock = threading.Lock()
        self.failures: dict[str, tuple[int, float]] = {}  # address -> (failures in a row, locked until)

    def wait(self, address: str) -> float:
        """Seconds ``address`` must still wait before it may try again (0: it may)."""
        with self.lock:
            _, until = self.failures.get(address, (0, 0.0))
        return max(0.0, until - time.monotonic())

    def failed(self, address: str) -> int:
        """Count a failure; returns the failures in a row."""
        now = time.monotonic()
        with self.lock:
            n = self.failures.get(address, (0, 0.0))[0] + 1
            delay = 0.0 if n <= self.free else min(self.cap, self.base * 2 ** (n - self.free - 1))
            if len(self.failures) >= self.limit:  # a flood of addresses: forget the ones not locked out
                self.failures = {a: v for a, v in self.failures.items() if v[1] > now}
            self.failures[address] = (n, now + delay)
            return n

    def succeeded(self, address: str) -> None:
        with self.lock:
            self.failures.pop(address, None)
