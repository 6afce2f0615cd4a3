"""The SSH layer: the system's OpenSSH client, run as a subprocess.

Why not a Python SSH library: OpenSSH is on every workstation that can reach a Pi, and using
it means the user's own host keys (known_hosts), agent, keys and ~/.ssh/config (ProxyJump, ports,
user names) apply unchanged; nothing extra to install. Batch mode is always on: no password or
host-key prompt can hang a deploy, an unknown or changed host key is refused.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from typing import IO, Sequence

from edge_runtime.errors import EdgeclsError

from .remote import device_dir

CONNECT_TIMEOUT_S = 10


class SSHError(EdgeclsError):
    """A connection or remote command that failed; the message says what to do."""


@dataclass(frozen=True)
class Target:
    user: str | None
    host: str
    dir: str  # on the device; relative paths are under the user's home
    port: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dir", device_dir(self.dir))

    @staticmethod
    def parse(text: str, port: int | None = None, default_dir: str = "edgecls") -> "Target":
        """``[USER@]HOST[:DIR]`` (``[v6::addr]:DIR`` for IPv6), or ``ssh://[USER@]HOST[:PORT][/ABS/DIR]``
        where a target needs its own port (a hosts file)."""
        if text.strip().startswith("ssh://"):
            from urllib.parse import unquote, urlsplit

            u = urlsplit(text.strip())
            if not u.hostname:
                raise ValueError(f"{text!r}: give an ssh URL as ssh://[USER@]HOST[:PORT][/DIR]")
            return Target(u.username, u.hostname, unquote(u.path) or default_dir, u.port or port)
        m = re.fullmatch(r"(?:([^@/\s]+)@)?(\[[0-9A-Fa-f:.]+\]|[^:@/\s]+)(?::(.*))?", text.strip())
        if not m:
            raise ValueError(f"{text!r}: give a target as [USER@]HOST[:DIR], e.g. pi@raspberrypi.local:edgecls")
        host = m.group(2).strip("[]")
        return Target(m.group(1), host, m.group(3) or default_dir, port)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        return f"{self.destination}{':' + str(self.port) if self.port else ''}:{self.dir}"


@dataclass(frozen=True)
class Options:
    identity: str | None = None
    known_hosts: str | None = None
    connect_timeout: int = CONNECT_TIMEOUT_S

    def argv(self, t: Target) -> list[str]:
        exe = shutil.which("ssh")
        if exe is None:
            raise SSHError("no ssh client on this machine; install openssh-client")
        a = [exe, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o",
             f"ConnectTimeout={self.connect_timeout}", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if t.port:
            a += ["-p", str(t.port)]
        if self.identity:
            a += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            if '"' in self.known_hosts:
                raise SSHError(f"{self.known_hosts}: a known_hosts path with a double quote cannot be passed to ssh")
            a += ["-o", f'UserKnownHostsFile="{self.known_hosts}"']  # ssh splits unquoted values at spaces
        return a + ["--", t.destination]


def remote_command(args: Sequence[str]) -> str:
    """One command line for the remote shell, each argument quoted: a name with spaces, quotes
    or ``$(...)`` stays a name."""
    return " ".join(shlex.quote(str(a)) for a in args)


def explain(t: Target, o: Options, code: int, stderr: str) -> str:
    """Turn ssh's exit status and last words into an error a user can act on."""
    err = stderr.strip().splitlines()
    last = err[-1] if err else f"exit status {code}"
    text = stderr.lower()
    port = f" -p {t.port}" if t.port else ""
    kh = o.known_hosts or "~/.ssh/known_hosts"
    if "host key verification failed" in text or "no matching host key" in text:
        if "remote host identification has changed" in text:
            return (f"{t.destination}: its host key has CHANGED since it was recorded in {kh}; if the device was "
                    f"reinstalled, remove the old key with: ssh-keygen -R '{t.host}' -f {kh}, then accept the new one")
        return (f"{t.destination}: unknown host key; check its fingerprint, then accept it with: "
                f"ssh-keyscan{port} {t.host} >> {kh}   (or connect once with: ssh{port} {t.destination})")
    if "permission denied" in text:
        return (f"{t.destination}: login refused ({last}); install your key with: ssh-copy-id{port} {t.destination}"
                + (f" (or check --identity {o.identity})" if o.identity else ""))
    if "connection refused" in text or "timed out" in text or "no route" in text or "could not resolve" in text:
        return f"{t.destination}{':' + str(t.port) if t.port else ''}: cannot connect ({last}); is the device on and sshd running?"
    return f"{t}: {last}"


def run(t: Target, o: Options, args: Sequence[str], stdin: IO[bytes] | bytes | None = None,
        timeout: float | None = 600) -> subprocess.CompletedProcess[bytes]:
    """Run ``args`` (quoted) on the device; returns the finished process (the caller checks)."""
    cmd = o.argv(t) + [remote_command(args)]
    if isinstance(stdin, (bytes, type(None))):
        return subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    return subprocess.run(cmd, stdin=stdin, capture_output=True, timeout=timeout)


def popen(t: Target, o: Options, args: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ``args`` on the device with a pipe to its stdin (for streaming an upload)."""
    return subprocess.Popen(o.argv(t) + [remote_command(args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
