"""``edgecls deploy``: send a bundle to a device, verify it there, switch ``current`` atomically;
roll back; report; many devices in parallel. A device is never left without a complete,
verified ``current``: every step before the switch happens in a directory nobody runs from."""

from __future__ import annotations

import io
import shlex
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge_runtime.bundle.format import load_bundle
from edge_runtime.errors import EdgeclsError

from . import remote, ssh

CHUNK = 64 * 1024
UPLOAD_TIMEOUT_S = 600  # after the last byte is sent: unpack, sha256, verify, switch
EXIT_LOCKED = remote.EXIT_LOCKED


class DeployError(EdgeclsError):
    """A deploy that did not switch; the device keeps its previous version."""


@dataclass
class Outcome:
    target: str
    ok: bool
    action: str
    version: str | None = None
    message: str = ""
    seconds: float = 0.0
    bytes_sent: int = 0
    warnings: list[str] = field(default_factory=list)
    runtime: str | None = None  # what --install-runtime installed
    switched: bool = False  # current names this version now (a deploy can switch, then fail: --service)
    host: str | None = None  # the inventory name (two hosts may share one address)

    def to_dict(self) -> dict:
        return asdict(self)


Progress = Callable[[str, int, int], None]  # (target, bytes sent, total)


def pack(bundle_dir: Path) -> tuple[bytes, str]:
    """The bundle's files as a tar stream with a SHA256SUMS manifest for ``sha256sum -c`` on the
    device, and a version id (UTC time + the manifest's hash)."""
    b = load_bundle(bundle_dir)  # every checksum verified here first: a changed byte stops the deploy
    return remote.bundle_tar(str(b.path), b.meta)


def _remote_edgecls(t: ssh.Target, o: ssh.Options, given: str | None) -> str | None:
    """The edgecls command on the device: --remote-edgecls, DIR/venv/bin/edgecls, or on PATH."""
    if given:
        return given
    p = ssh.run(t, o, ["sh", "-c", remote.FIND_EDGECLS, "edgecls-find", t.dir, "edgecls"], timeout=60)
    if p.returncode != 0:
        raise DeployError(ssh.explain(t, o, p.returncode, p.stderr.decode(errors="replace")))
    return p.stdout.decode().strip() or None


def deploy(packed: tuple[bytes, str], target: ssh.Target, o: ssh.Options, keep: int = 5, verify: bool = True,
           remote_edgecls: str | None = None, limit_kbps: float | None = None, dry_run: bool = False,
           install: bool = False, service: list[str] | None = None, progress: Progress | None = None) -> Outcome:
    """Send ``packed`` (from ``pack``: made once, the same version on every target) to ``target``:
    upload, check, verify on the device, switch. ``service``: install/update the systemd unit
    running ``edgecls camera`` with these extra arguments on DIR/current (None: leave services alone)."""
    t0 = time.perf_counter()
    data, version = packed
    out = Outcome(str(target), False, "deploy", version)
    if install and not dry_run:
        out.runtime = install_runtime(target, o)
        if progress:
            progress(str(target), 0, len(data))
    exe, verify_cmd = _device_commands(target, o, out, verify, remote_edgecls, service)
    if dry_run:
        out.ok, out.action = True, "dry-run"
        out.message = (f"would upload {len(data) / 1024:.0f} KiB to {target.dir}/versions/{version}, "
                       f"{'verify with ' + exe if exe else 'skip the device-side verify'}, switch current, keep {keep}")
        return out
    proc = ssh.popen(target, o, ["sh", "-c", remote.UPLOAD, "edgecls-deploy", target.dir, version, str(keep),
                                 verify_cmd, "no" if service is not None else "yes",
                                 str(remote.space_needed(io.BytesIO(data)))])
    out.bytes_sent = _stream(proc, data, str(target), limit_kbps, progress)
    try:
        stdout, stderr = proc.communicate(timeout=UPLOAD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        out.seconds = round(time.perf_counter() - t0, 2)
        out.message = (f"{target}: the device did not finish within {UPLOAD_TIMEOUT_S} s; see what is live with "
                       "`edgecls deploy --status`, then run the same deploy again")
        return out
    out.seconds = round(time.perf_counter() - t0, 2)
    if proc.returncode == 0 and stdout.decode().strip().endswith(f"live {version}"):
        out.ok, out.switched, out.message = True, True, f"live {version}"
        out.warnings += [l.split("edgecls-remote: note: ", 1)[1] for l in stderr.decode(errors="replace").splitlines()
                         if "edgecls-remote: note: " in l]
        if service is not None:
            try:
                out.message += f"; {install_service(target, o, exe or '', service)}"
            except DeployError as e:
                out.ok, out.message = False, str(e)
            except (OSError, subprocess.SubprocessError) as e:  # e.g. the connection hung: the switch stands
                out.ok, out.message = False, (f"{target}: installing the service failed ({e}); the new version is "
                                              "live - `edgecls deploy --rollback` goes back")
        return out
    out.message = _failure(target, o, proc.returncode, stderr.decode(errors="replace"))
    if proc.returncode == 255 and "connection was lost" in out.message:
        _after_cut(target, o, out)
    return out


def _after_cut(target: ssh.Target, o: ssh.Options, out: Outcome) -> None:
    """A deploy whose connection was lost may still switch on the device (its script runs on):
    reconnect, wait for the device's lock, and say what is live."""
    try:
        p = ssh.run(target, o, ["sh", "-c", remote.LIVE_AFTER, "edgecls-live", target.dir], timeout=90)
    except (OSError, subprocess.SubprocessError):
        p = None
    if p is None or p.returncode != 0:
        out.message = out.message.replace(
            "the previous version stays live", "the previous version stays live unless the cut came at the switch "
            "(the device could not be asked again: `edgecls deploy --status` says which)")
        return
    live = p.stdout.decode().strip()
    if live == out.version:
        out.switched = True
        out.message = (f"{target}: the connection was lost, but the device finished the switch: {live} is live; "
                       "run the same deploy again to be sure the rest (history, pruning, service) is done")
    else:
        out.message += f" (checked after the cut: {live or 'nothing'} is live)"


def _device_commands(target: ssh.Target, o: ssh.Options, out: Outcome, verify: bool, remote_edgecls: str | None,
                     service: list[str] | None) -> tuple[str | None, str]:
    """The device's edgecls (when verify or the service needs it) and the verify command line
    for the upload script ("" = no verify). Adds a warning to ``out`` when verify cannot run."""
    exe = _remote_edgecls(target, o, remote_edgecls) if verify or service is not None else None
    # A command the user named (--remote-edgecls) is used as written; one found on the device is quoted.
    verify_cmd = f"{exe if remote_edgecls else shlex.quote(exe)} verify --backend cpu" if exe and verify else ""
    if service is not None and not exe:
        raise DeployError(f"{target}: --service needs edgecls on the device; add --install-runtime")
    if verify and not exe:
        raise DeployError(f"{target}: no edgecls runtime on the device (DIR/venv or PATH) to check the golden "
                          "photos before the switch; add --install-runtime, or --no-verify to switch unchecked")
    return exe, verify_cmd


def _stream(proc: subprocess.Popen[bytes], data: bytes, name: str, limit_kbps: float | None,
            progress: Progress | None) -> int:
    """Write ``data`` to the upload's stdin in chunks (at most ``limit_kbps``), then close it.
    Returns the bytes sent; a remote side that ended early is not an error here (its exit
    status and words say why)."""
    sent = 0
    stdin = proc.stdin
    if stdin is None:
        raise DeployError(f"{name}: the upload has no input pipe")
    try:
        start = time.perf_counter()
        for i in range(0, len(data), CHUNK):
            chunk = data[i:i + CHUNK]
            stdin.write(chunk)
            sent += len(chunk)
            if progress:
                progress(name, sent, len(data))
            if limit_kbps:
                ahead = sent / (limit_kbps * 1024) - (time.perf_counter() - start)
                if ahead > 0:
                    time.sleep(ahead)
    except BrokenPipeError:
        pass
    finally:
        try:
            stdin.close()
        except BrokenPipeError:
            pass
        proc.stdin = None  # closed: communicate() only reads
    return sent


def _failure(t: ssh.Target, o: ssh.Options, code: int, err: str) -> str:
    lines = [l for l in err.splitlines() if l.strip()]
    mine = remote.device_words(err)
    if code == EXIT_LOCKED:
        return f"{t}: another deploy holds the device's lock; nothing changed - try again when it is done"
    if code == remote.EXIT_VERIFY:
        cause = remote.verify_causes(err)
        return f"{t}: edgecls verify failed on the device, the previous version stays live: " + "; ".join(cause or mine)
    if mine:
        return f"{t}: {mine[-1]}; the previous version stays live"
    lost = ("closed by remote host", "broken pipe", "connection reset", "timeout, server", "not responding")
    if code == 255 and any(k in err.lower() for k in lost):
        return (f"{t}: the connection was lost during the deploy ({lines[-1].strip()}); the previous version "
                "stays live - run the same deploy again")
    if code == 255:
        return ssh.explain(t, o, code, err) + "; nothing changed"
    return f"{t}: the upload stopped (exit {code}: {lines[-1] if lines else 'connection lost'}); the previous " \
           "version stays live - run the same deploy again"


PLATFORMS = {
    "aarch64": ["manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64",
                "manylinux2014_aarch64"],
    "x86_64": ["manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
               "manylinux2014_x86_64"],
}


def runtime_requirements() -> list[str]:
    """The runtime's dependencies as this installed edgecls declares them (no extras)."""
    from importlib.metadata import requires

    return [r.split(";")[0].strip() for r in (requires("edgecls") or []) if "extra ==" not in r]


def build_wheels(python: str, machine: str, dest: Path) -> list[Path]:
    """edgecls's wheel from this checkout plus its dependencies' wheels for the device's Python and
    CPU, so that a device without internet can install the runtime."""
    src = Path(__file__).resolve().parents[1]
    if not (src / "pyproject.toml").exists():
        raise DeployError("--install-runtime builds the runtime's wheel from a source checkout of edgecls; "
                          "run it from one")
    if machine not in PLATFORMS:
        raise DeployError(f"the device is {machine}: ai-edge-litert has wheels for 64-bit ARM and x86-64 only; "
                          "install 64-bit Raspberry Pi OS")
    tag = python.replace(".", "")
    pip = [sys.executable, "-m", "pip"]
    steps = [pip + ["wheel", "-q", "--no-deps", "-w", str(dest), str(src)],
             pip + ["download", "-q", "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
                    "--abi", f"cp{tag}", "--abi", "abi3", "--abi", "none", "-d", str(dest),
                    *[a for p in PLATFORMS[machine] for a in ("--platform", p)], *runtime_requirements()]]
    for cmd in steps:
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise DeployError(f"could not gather the runtime's wheels for Python {python} on {machine}: "
                              f"{(p.stderr.strip().splitlines() or ['pip failed'])[-1]}")
    return sorted(dest.glob("*.whl"))


def install_runtime(target: ssh.Target, o: ssh.Options) -> str:
    """Make DIR/venv on the device (system site-packages, for picamera2) and install the runtime
    there from wheels built here and sent along. Returns the installed version line."""
    import tempfile

    p = ssh.run(target, o, ["sh", "-c", remote.PROBE_PYTHON], timeout=60)
    if p.returncode != 0:
        raise DeployError(ssh.explain(target, o, p.returncode, p.stderr.decode(errors="replace")))
    found = p.stdout.decode().split()
    if not found or found[0] == "none":
        raise DeployError(f"{target}: no python3 on the device; install it (sudo apt install python3 python3-venv)")
    python, machine = found[0], found[1]
    with tempfile.TemporaryDirectory() as tmp:
        wheels = build_wheels(python, machine, Path(tmp))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for w in wheels:
                tar.add(w, arcname=w.name)
    r = ssh.run(target, o, ["sh", "-c", remote.INSTALL, "edgecls-install", target.dir], stdin=buf.getvalue())
    if r.returncode != 0:
        raise DeployError(_failure(target, o, r.returncode, r.stderr.decode(errors="replace"))
                          .replace("; the previous version stays live", ""))
    return r.stdout.decode().strip().splitlines()[-1]


UNIT = "edgecls-camera.service"


def systemd_quote(arg: str) -> str:
    """One ExecStart argument, quoted for systemd: specifiers (%) and variables ($) made literal."""
    a = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{a}"'


def unit_text(exec_args: list[str], user: str, workdir: str) -> str:
    """The systemd unit running ``exec_args``; an argument with a line break is refused (systemd
    would read the rest as another directive)."""
    for a in [*exec_args, user, workdir]:
        if any(c in a for c in "\n\r\0"):
            raise DeployError(f"service argument {a!r} holds a line break; systemd cannot take it")
    return "\n".join([
        "[Unit]", "Description=edgecls camera on the live bundle (edgecls deploy --service)",
        "After=network-online.target", "Wants=network-online.target", "",
        "[Service]", f"User={user}", f"WorkingDirectory={systemd_quote(workdir)[1:-1]}",
        "ExecStart=" + " ".join(systemd_quote(a) for a in exec_args),
        "Restart=on-failure", "RestartSec=3", "", "[Install]", "WantedBy=multi-user.target", ""])


def install_service(target: ssh.Target, o: ssh.Options, edgecls: str, camera_args: list[str]) -> str:
    """Install or update the systemd unit that runs ``edgecls camera`` on DIR/current, restart it
    and check that it runs."""
    p = ssh.run(target, o, ["sh", "-c", 'mkdir -p -- "$1" && cd -- "$1" && pwd && id -un', "where", target.dir],
                timeout=60)
    if p.returncode != 0:
        raise DeployError(ssh.explain(target, o, p.returncode, p.stderr.decode(errors="replace")))
    absdir, user = p.stdout.decode().strip().splitlines()[-2:]
    cmd = shlex.split(edgecls)
    if not cmd[0].startswith("/"):
        cmd[0] = f"{absdir}/{cmd[0]}" if "/" in cmd[0] else cmd[0]
    text = unit_text([*cmd, "camera", f"{absdir}/current", *camera_args], user, absdir)
    r = ssh.run(target, o, ["sh", "-c", remote.SERVICE, "edgecls-service", target.dir, UNIT, text])
    if r.returncode != 0:
        raise DeployError(_failure(target, o, r.returncode, r.stderr.decode(errors="replace"))
                          .replace("; the previous version stays live", "")
                          + "; the new version is live - `edgecls deploy --rollback` goes back")
    return r.stdout.decode().strip().splitlines()[-1]


ROLLBACK_TIMEOUT_S = 120  # a switch and a service restart; a host that takes longer is reported, not waited on


def rollback(target: ssh.Target, o: ssh.Options) -> Outcome:
    t0 = time.perf_counter()
    p = ssh.run(target, o, ["sh", "-c", remote.ROLLBACK, "edgecls-rollback", target.dir], timeout=ROLLBACK_TIMEOUT_S)
    out = Outcome(str(target), p.returncode == 0, "rollback", seconds=round(time.perf_counter() - t0, 2))
    text = p.stdout.decode().strip()
    if out.ok:
        out.version = text.split()[1] if text.startswith("live ") else None
        out.message = text
    else:
        out.message = _failure(target, o, p.returncode, p.stderr.decode(errors="replace")).replace(
            "; the previous version stays live", "")
    return out


def status(target: ssh.Target, o: ssh.Options) -> dict:
    p = ssh.run(target, o, ["sh", "-c", remote.STATUS, "edgecls-status", target.dir], timeout=60)
    if p.returncode != 0:
        raise DeployError(ssh.explain(target, o, p.returncode, p.stderr.decode(errors="replace")))
    s: dict = {"target": str(target), "current": None, "versions": [], "incomplete": [], "history": []}
    for line in p.stdout.decode().splitlines():
        key, _, value = line.partition(" ")
        if key == "current":
            s["current"] = None if value == "-" else value
        elif key in ("version", "incomplete"):
            s["versions" if key == "version" else "incomplete"].append(value)
        elif key == "history":
            s["history"].append(value)
    return s


def many(targets: list[Any], job: Callable[[Any], Outcome], parallel: int = 8) -> list[Outcome]:
    """Run ``job`` on every target (an ``ssh.Target`` or an ``inventory.Host``) with at most
    ``parallel`` connections; one host's failure never stops the others."""
    def safe(t: Any) -> Outcome:
        try:
            out = job(t)
        except (EdgeclsError, OSError, subprocess.SubprocessError) as e:
            out = Outcome(str(getattr(t, "target", t)), False, "deploy", message=str(e))
        out.host = getattr(t, "name", None)
        return out

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(safe, targets))


def format_table(outcomes: list[Outcome]) -> str:
    """One row per host, named as the inventory names it (two hosts may share one address)."""
    rows = [("host", "result", "version", "seconds", "message")]
    for o in outcomes:
        rows.append((o.host or o.target, "ok" if o.ok else "FAILED", o.version or "-", f"{o.seconds:.1f}",
                     "; ".join([o.message] + o.warnings)))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]:>{w[3]}}  {r[4]}" for r in rows)


def progress_printer(stream=sys.stderr) -> Progress:
    """A bar per upload on a terminal, a line at each quarter otherwise (and with several hosts)."""
    shown: dict[str, int] = {}
    tty = stream.isatty()

    def show(target: str, sent: int, total: int) -> None:
        pct = 100 * sent // max(total, 1)
        if tty and len(shown) <= 1:
            bar = "#" * (pct // 4)
            print(f"\r{target}: [{bar:<25}] {pct:3d}% {sent / 1024:.0f}/{total / 1024:.0f} KiB", end="\n" if sent >= total else "",
                  file=stream, flush=True)
            shown[target] = pct
        elif pct // 25 > shown.get(target, -1) // 25 or sent >= total and shown.get(target) != 100:
            shown[target] = pct
            print(f"{target}: uploaded {pct}% ({sent / 1024:.0f}/{total / 1024:.0f} KiB)", file=stream, flush=True)
    return show
