"""A real OpenSSH server on 127.0.0.1 for the deploy tests: Debian's sshd as a child process with
its own host key, authorized key and config in a temporary directory, on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    port: int
    proc: subprocess.Popen
    home: Path  # host key, client key, known_hosts, config
    user: str

    @property
    def key(self) -> Path:
        return self.home / "client_key"

    @property
    def known_hosts(self) -> Path:
        return self.home / "known_hosts"

    def target(self, directory: str | Path) -> str:
        return f"{self.user}@127.0.0.1:{directory}"

    def ssh_args(self) -> list[str]:
        """Options for `edgecls deploy` that reach this server."""
        return ["--port", str(self.port), "--identity", str(self.key), "--known-hosts", str(self.known_hosts)]

    def ssh(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ssh", "-p", str(self.port), "-i", str(self.key), "-o", "BatchMode=yes",
                               "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "IdentitiesOnly=yes",
                               f"{self.user}@127.0.0.1", command], capture_output=True, text=True, timeout=120)

    def kill_sessions(self) -> None:
        """Cut every open connection (the per-connection sshd processes), keep listening."""
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:  # the parent pid
                try:
                    os.kill(int(stat.parent.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(home: Path, env: dict[str, str] | None = None) -> Server:
    """``env``: variables every session gets (sshd's SetEnv), e.g. a PATH with stand-in tools."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    for name in ("host_key", "client_key"):
        if not (home / name).exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / name)], check=True)
    (home / "authorized_keys").write_text((home / "client_key.pub").read_text())
    host_pub = (home / "host_key.pub").read_text().split()
    (home / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (home / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {home / 'host_key'}
PidFile {home / 'sshd.pid'}
AuthorizedKeysFile {home / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
LogLevel ERROR
""" + (("SetEnv " + " ".join(f'{k}="{v}"' for k, v in env.items()) + "\n") if env else ""))
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    with open(home / "sshd.log", "ab") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(home / "sshd_config")], stdout=subprocess.DEVNULL,
                                stderr=log)
    deadline = time.time() + 15
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {(home / 'sshd.log').read_text()[-2000:]}")
        time.sleep(0.05)
    import pwd

    return Server(port, proc, home, pwd.getpwuid(os.getuid()).pw_name)
