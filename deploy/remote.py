"""The device side of a deploy: small POSIX shell programs run through one ssh connection each,
with every value passed as a positional argument (never pasted into the program), and the
device's directory locked with flock(1) for the whole operation.

Layout on the device, under DIR:
    versions/<id>/            one directory per deployed bundle
    versions/.incoming-<id>/  an upload in progress (removed by the next operation under the lock)
    current -> versions/<id>  switched by rename(2), so it always names a complete, verified version
    history                   the ids in the order they went live
    .lock                     flock'd by every operation that changes anything

Two drivers run these steps: ``edgecls deploy`` (deploy/run.py, over its own ssh) and the Ansible
collection in deploy/ansible (its modules run them on the device through Ansible's connection).
So this module is the device side of both, and it stays importable there: the standard library
only, nothing from edgecls. deploy/ansible/plugins/module_utils/edgecls_remote.py is a byte copy
of this file (tests/test_ansible.py fails when they differ; to refresh it:
``cp deploy/remote.py deploy/ansible/plugins/module_utils/edgecls_remote.py``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import time
from collections.abc import Mapping
from typing import IO, Any

# Shared prologue: $1 = DIR. Takes the lock or exits 75 (EX_TEMPFAIL) when another deploy holds it.
_PROLOGUE = r'''
set -eu
dir=$1; shift
mkdir -p -- "$dir/versions"
exec 9>>"$dir/.lock"
if ! flock -n 9; then echo "edgecls-remote: $dir is locked by another deploy" >&2; exit 75; fi
switch() {  # $1 = id: point current at versions/$1, atomically
  ln -sfn -- "versions/$1" "$dir/.current.new"
  mv -fT -- "$dir/.current.new" "$dir/current"
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
restart_service() {  # the unit named in $dir/service (edgecls deploy --service), if any
  if [ -f "$dir/service" ]; then
    unit=$(cat "$dir/service")
    as_root systemctl restart "$unit" || { echo "edgecls-remote: systemctl restart $unit failed" >&2; exit 3; }
    sleep "${EDGECLS_SERVICE_SETTLE:-2}"
    as_root systemctl is-active --quiet "$unit" \
      || { echo "edgecls-remote: service $unit is not running after the restart (journalctl -u $unit)" >&2; exit 3; }
  fi
}
'''

# $1 DIR, $2 id, $3 keep, $4 verify command ("" = none), $5 restart the service: yes|no (no when
# SERVICE runs next), $6 the bytes the unpacked version needs (space_needed; 0 = do not check) ;
# stdin = a tar stream of the bundle's files. Nothing is unpacked when DIR's file system has less
# free than that, and a file system that fills up during the unpack (ENOSPC) leaves nothing
# behind: either way the step exits EXIT_SPACE with one line naming DIR, the space needed and free.
UPLOAD = _PROLOGUE + r'''
id=$1; keep=$2; verify=$3; restart=$4; need=${5:-0}
rm -rf -- "$dir"/versions/.incoming-*
inc="$dir/versions/.incoming-$id"
size() { awk -v b="$1" 'BEGIN { if (b >= 1048576) printf "%.1f MiB", b / 1048576; else printf "%.0f KiB", b / 1024 }'; }
free_bytes() {  # what df (statvfs) says is free for this user in DIR; -1 when it cannot say
  k=$(df -Pk -- "$dir/versions" 2>/dev/null | awk 'NR == 2 { print $4 }')
  case $k in ''|*[!0-9]*) echo -1 ;; *) echo $((k * 1024)) ;; esac
}
no_space() {  # $1 = what happened
  free=$(free_bytes); needs="needs more than that"; more="free space there"
  [ "$need" -gt 0 ] && needs="needs $need bytes ($(size "$need"))"
  [ "$free" -ge 0 ] && has="$free bytes ($(size "$free")) are free" || has="df cannot say what is free"
  [ "$free" -ge 0 ] && [ "$need" -gt "$free" ] && more="free $(size $((need - free))) more there"
  echo "edgecls-remote: $1 in $dir: $has, the new version $needs; $more (older versions in $dir/versions can go) and run the same deploy again" >&2
  exit 8
}
free=$(free_bytes)
if [ "$need" -gt 0 ] && [ "$free" -ge 0 ] && [ "$free" -lt "$need" ]; then no_space "not enough space"; fi
mkdir -- "$inc"
if ! err=$(tar -x -f - -C "$inc" 2>&1); then
  rm -rf -- "$inc"
  case $err in
    *"No space left"*) no_space "the disk filled up during the unpack (nothing was kept)" ;;
  esac
  printf '%s\n' "$err" >&2
  exit 2
fi
[ -f "$inc/SHA256SUMS" ] || { echo "edgecls-remote: upload incomplete (no SHA256SUMS)" >&2; exit 4; }
(cd "$inc" && sha256sum --quiet --strict -c SHA256SUMS) >&2 || { echo "edgecls-remote: sha256 mismatch on the device" >&2; exit 5; }
rm -f -- "$inc/SHA256SUMS"
if [ -f "$inc/imx500/packerOut.zip" ]; then
  # The AI Camera loads network.rpk, which Raspberry Pi OS's imx500-package makes from the converter's output.
  if command -v imx500-package >/dev/null 2>&1; then
    imx500-package -i "$inc/imx500/packerOut.zip" -o "$inc/imx500" >&2 && [ -f "$inc/imx500/network.rpk" ] \
      || { echo "edgecls-remote: imx500-package failed on packerOut.zip" >&2; rm -rf -- "$inc"; exit 7; }
  else
    echo "edgecls-remote: note: imx500-package is not installed (sudo apt install imx500-tools); the AI Camera network was not packaged - the CPU model is live" >&2
  fi
fi
if [ -n "$verify" ]; then
  # The runtime on the device reruns the golden photos before anything goes live.
  if ! sh -c "$verify \"\$1\"" verify "$inc" >&2; then
    echo "edgecls-remote: edgecls verify failed on the device; the live version is unchanged" >&2
    rm -rf -- "$inc"; exit 6
  fi
fi
rm -rf -- "$dir/versions/$id"
mv -- "$inc" "$dir/versions/$id"
switch "$id"
echo "$id" >> "$dir/history"
[ "$restart" = no ] || restart_service
# keep the newest $keep versions that went live, and the live one
if [ "$keep" -gt 0 ]; then
  tac "$dir/history" | awk '!seen[$0]++' | tail -n +$((keep + 1)) | while IFS= read -r old; do
    [ "$old" = "$id" ] || rm -rf -- "$dir/versions/$old"
  done
fi
echo "live $id"
'''

# $1 DIR
ROLLBACK = _PROLOGUE + r'''
[ -L "$dir/current" ] || { echo "edgecls-remote: nothing deployed in $dir" >&2; exit 4; }
now=$(basename "$(readlink "$dir/current")")
prev=$(tac "$dir/history" | awk -v now="$now" '$0 != now' | while IFS= read -r v; do
  [ -d "$dir/versions/$v" ] && { echo "$v"; break; }; done)
[ -n "$prev" ] || { echo "edgecls-remote: no earlier version left in $dir to roll back to" >&2; exit 4; }
switch "$prev"
echo "$prev" >> "$dir/history"
restart_service
echo "live $prev (was $now)"
'''

# $1 DIR: the live version once no deploy holds the lock (what a cut deploy's script did, once it ended)
LIVE_AFTER = r'''
set -eu
cd -- "$1" 2>/dev/null || exit 0
exec 9>>.lock
flock -w 60 9 || true
[ -L current ] && basename "$(readlink current)" || true
'''

# $1 DIR (no lock: reads only)
STATUS = r'''
set -eu
dir=$1
cur=""
[ -L "$dir/current" ] && cur=$(basename "$(readlink "$dir/current")")
echo "current ${cur:--}"
if [ -d "$dir/versions" ]; then
  for v in "$dir"/versions/*; do [ -d "$v" ] && echo "version $(basename "$v")"; done
  for v in "$dir"/versions/.incoming-*; do [ -d "$v" ] && echo "incomplete $(basename "$v")"; done
fi
[ -f "$dir/history" ] && sed 's/^/history /' "$dir/history"
exit 0
'''

# $1 DIR ; stdin = a tar of wheels (edgecls and its dependencies, for this device's Python)
INSTALL = _PROLOGUE + r'''
py=$(command -v python3) || { echo "edgecls-remote: no python3 on the device" >&2; exit 4; }
rm -rf -- "$dir/.wheels.new"
mkdir -- "$dir/.wheels.new"
tar -x -f - -C "$dir/.wheels.new"
rm -rf -- "$dir/wheels"
mv -- "$dir/.wheels.new" "$dir/wheels"
if [ ! -x "$dir/venv/bin/python" ]; then
  # system site-packages: Raspberry Pi OS's python3-picamera2 stays visible
  "$py" -m venv --system-site-packages "$dir/venv" >&2 \
    || { echo "edgecls-remote: cannot make a venv; install python3-venv" >&2; exit 4; }
fi
"$dir/venv/bin/python" -m pip install -q --no-index --find-links "$dir/wheels" --upgrade edgecls >&2 \
  || { echo "edgecls-remote: pip could not install the runtime from the wheels sent" >&2; exit 4; }
echo "installed $("$dir/venv/bin/edgecls" --version)"
'''

PROBE_PYTHON = r'''
command -v python3 >/dev/null 2>&1 || { echo "none"; exit 0; }
python3 -c 'import platform, sys; print("%d.%d" % sys.version_info[:2], platform.machine())'
'''

# $1 DIR, $2 unit name, $3 unit file text: install or update the unit, enable it, (re)start it, check it runs
SERVICE = _PROLOGUE + r'''
unit=$1; text=$2
units=${EDGECLS_UNIT_DIR:-/etc/systemd/system}
printf '%s\n' "$text" | as_root tee "$units/$unit" >/dev/null \
  || { echo "edgecls-remote: cannot write $units/$unit (needs root or passwordless sudo)" >&2; exit 4; }
as_root systemctl daemon-reload
as_root systemctl enable "$unit" >/dev/null 2>&1 || true
printf '%s\n' "$unit" > "$dir/service"
restart_service
echo "service $unit running"
'''

# $1 DIR, $2 the edgecls command asked for: one with a / or a space is used as written; a bare name
# (edgecls) means DIR/venv/bin/edgecls when --install-runtime made it, else that name on the PATH.
FIND_EDGECLS = r'''
case "$2" in
  */*|*" "*) echo "$2"; exit 0 ;;
esac
if [ -x "$1/venv/bin/edgecls" ]; then echo "$1/venv/bin/edgecls"
elif command -v "$2" >/dev/null 2>&1; then command -v "$2"; fi
'''

# $1 = DIR: what the device runs, read by its python3 (never changes anything). It reads DIR/current
# (the live version, its bundle name, since when), the kept versions, the camera service named in
# DIR/service (``systemctl is-active``) and, when the unit runs ``edgecls camera --serve ADDR``, that
# web view's ``/status.json`` (frame counter, FPS, latency). It prints one JSON object.
PROBE = r'''
import json, os, shlex, subprocess, sys, urllib.request
d = os.path.expanduser(sys.argv[1])
out = {"current": None, "name": None, "since": None, "versions": [], "service": None, "state": None,
       "serve": None, "status": None, "status_error": None}
cur = os.path.join(d, "current")
if os.path.islink(cur):
    out["current"] = os.path.basename(os.readlink(cur))
    out["since"] = os.lstat(cur).st_mtime
    try:
        with open(os.path.join(cur, "edgecls.json")) as f:
            out["name"] = json.load(f).get("name")
    except (OSError, ValueError):
        pass
vd = os.path.join(d, "versions")
if os.path.isdir(vd):
    out["versions"] = sorted(v for v in os.listdir(vd) if not v.startswith("."))
try:
    with open(os.path.join(d, "service")) as f:
        unit = f.read().strip()
except OSError:
    unit = None
if unit:
    out["service"] = unit
    try:
        r = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True, timeout=20)
        out["state"] = r.stdout.strip() or ("active" if r.returncode == 0 else "inactive")
    except (OSError, subprocess.SubprocessError) as e:
        out["state"] = "unknown (%s)" % e
    args = []
    try:
        with open(os.path.join(os.environ.get("EDGECLS_UNIT_DIR", "/etc/systemd/system"), unit)) as f:
            for line in f:
                if line.startswith("ExecStart="):
                    args = [a.replace("%%", "%").replace("$$", "$") for a in shlex.split(line[10:])]
    except (OSError, ValueError):
        pass
    for i, a in enumerate(args):
        if a == "--serve" and i + 1 < len(args):
            out["serve"] = args[i + 1]
        elif a.startswith("--serve="):
            out["serve"] = a[8:]
    if out["serve"] and out["state"] == "active":
        host, _, port = out["serve"].rpartition(":")
        host = host.strip("[]")
        host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        try:
            with urllib.request.urlopen("http://%s:%s/status.json" % (host, port), timeout=5) as r:
                out["status"] = json.loads(r.read().decode())
        except Exception as e:
            out["status_error"] = str(e)
print(json.dumps(out))
'''


# --- plain Python, the same for both drivers -------------------------------------------------


def device_dir(d: str) -> str:
    """DIR on the device as the remote shell scripts take it: ``~/x`` is ``x`` (relative paths
    are under the login's home), a name starting with ``-`` gets ``./`` so no command reads it
    as an option; ``/``, ``~`` and an empty DIR are refused (a deploy would take over the
    whole file system or home directory)."""
    d = d.strip()
    if d.startswith("~/"):
        d = d[2:]
    d = d.rstrip("/") if len(d) > 1 else d
    if d in ("", "/", "~", ".") or set(d) <= {"/", "."}:
        raise ValueError(f"device directory {d or '(empty)'!r} would be the device's root or home; "
                         "name a directory of its own, e.g. pi@HOST:edgecls")
    if any(c in d for c in "\n\r\0"):
        raise ValueError(f"device directory {d!r} holds a line break; name another directory")
    return "./" + d if d.startswith("-") else d


def manifest(files: Mapping[str, Mapping[str, Any]]) -> str:
    """The SHA256SUMS text (``sha256sum -c`` reads it on the device) of edgecls.json's ``files``."""
    return "".join(f"{files[f]['sha256']}  {f}\n" for f in sorted(files))


def bundle_sha256(meta_bytes: bytes) -> str:
    """What a bundle is, as one sha256: its files' manifest and edgecls.json's own bytes. Two
    bundles with the same value are the same bundle (a deploy of it again changes nothing)."""
    meta = json.loads(meta_bytes.decode("utf-8"))
    text = manifest(meta["files"]) + f"{hashlib.sha256(meta_bytes).hexdigest()}  edgecls.json\n"
    return hashlib.sha256(text.encode()).hexdigest()


def live_sha256(directory: str) -> str | None:
    """``bundle_sha256`` of DIR/current on this machine (the device); None when nothing is live."""
    try:
        with open(os.path.join(os.path.expanduser(directory), "current", "edgecls.json"), "rb") as f:
            return bundle_sha256(f.read())
    except (OSError, ValueError, KeyError):
        return None


def check_files(root: str, meta: Mapping[str, Any]) -> None:
    """Every file edgecls.json lists is there with its size and sha256; ValueError names the first
    that is not (the full check of the format is edge_runtime's load_bundle, where it is installed)."""
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise ValueError(f"{root}/edgecls.json lists no files; is this an edgecls bundle?")
    for name, want in sorted(files.items()):
        path = os.path.join(root, name)
        if os.path.isabs(name) or ".." in name.split("/"):
            raise ValueError(f"{root}/edgecls.json names {name!r}, outside the bundle")
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as e:
            raise ValueError(f"{path}: {e.strerror}; the bundle is incomplete, convert it again") from None
        if h.hexdigest() != want.get("sha256"):
            raise ValueError(f"{path}: its sha256 differs from edgecls.json's; the bundle changed after it was "
                             "made, convert it again")


def bundle_tar(root: str, meta: Mapping[str, Any]) -> tuple[bytes, str]:
    """The bundle's files as a tar stream with a SHA256SUMS manifest for ``sha256sum -c`` on the
    device, and a version id (UTC time + the manifest's hash). ``meta``: the checked edgecls.json."""
    sums = manifest(meta["files"]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(meta["files"]) + ["edgecls.json"]:
            # a symlink is sent as the file it points to (checked before), never as a link
            with open(os.path.join(root, name), "rb") as f:
                info = tar.gettarinfo(fileobj=f, arcname=name)
                info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
                tar.addfile(info, f)
        info = tarfile.TarInfo("SHA256SUMS")
        info.size = len(sums)
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(sums))
    digest = hashlib.sha256(sums).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(meta.get("name") or ""))[:40] or "bundle"
    return buf.getvalue(), f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{name}-{digest}"


# exit statuses of UPLOAD/ROLLBACK and what they mean, for a driver's message
EXIT_LOCKED = 75
EXIT_VERIFY = 6
EXIT_SPACE = 8

BLOCK = 4096  # a file takes whole blocks of its file system (4 KiB on ext4 and tmpfs)
SPACE_MARGIN = 64 * 1024  # the history line, the symlink, a directory that grows a block


def space_needed(tar: IO[bytes]) -> int:
    """The bytes a version unpacked from ``tar`` (``bundle_tar``'s stream, or the file of it that the
    Ansible collection copied to the device) takes on the device: each member rounded up to whole
    blocks, plus one block for its entry, plus a margin; an AI Camera packerOut.zip counts twice
    (imx500-package writes network.rpk beside it). UPLOAD's $6: its check before anything is written."""
    need = SPACE_MARGIN
    try:
        with tarfile.open(fileobj=tar, mode="r:") as t:
            for m in t:
                need += BLOCK + -(-m.size // BLOCK) * BLOCK * (2 if m.name.endswith("packerOut.zip") else 1)
    except tarfile.TarError:
        return 0  # not a tar: not known here (the unpack and its sha256 check on the device say what is wrong)
    return need


def device_words(stderr: str) -> list[str]:
    """What the device-side scripts said (``edgecls-remote: ...`` lines), without the prefix."""
    return [l.split("edgecls-remote: ", 1)[1] for l in stderr.splitlines() if "edgecls-remote: " in l]


def verify_causes(stderr: str) -> list[str]:
    """The ``edgecls: error:`` lines of a failed device-side verify."""
    return [l.split("error: ", 1)[-1] for l in stderr.splitlines() if l.startswith("edgecls: error:")]


# --- the soak: is the camera healthy after a switch? ---------------------------------------

STARTUP_S = 15.0  # a restarted camera (model load, camera start) may take this long to serve status.json


def latency_ms(status: Mapping[str, Any] | None) -> float | None:
    """The camera's inference latency from a status.json: the median ``invoke`` of its last minute
    (``history``; one frame's time jumps several-fold on a busy machine), else the last frame's
    ``invoke``, else the sum of its stages."""
    history = [x for x in ((status or {}).get("history") or {}).get("invoke_ms") or [] if isinstance(x, (int, float))]
    if history:  # the median (no statistics module: the device side imports only what a bare Pi has)
        h, n = sorted(history), len(history)
        return float(h[n // 2] if n % 2 else (h[n // 2 - 1] + h[n // 2]) / 2)
    lat = (status or {}).get("latency_ms") or {}
    if "invoke" in lat:
        return float(lat["invoke"])
    return float(sum(lat.values())) if lat else None


def frame(p: Mapping[str, Any]) -> int:
    f = (p.get("status") or {}).get("frame")
    return -1 if f is None else int(f)


def soak_start(first: Mapping[str, Any], facts: dict) -> list[str] | None:
    """From the first probe after the switch: None when there is a camera to soak, else the verdict
    now (no camera service: healthy here; one that is not running or not serving: as it says)."""
    if not first["service"]:
        facts["service"] = None
        return []
    facts["service"] = first["service"]
    if first["state"] != "active":
        return [f"service {first['service']} is {first['state']} after the switch"]
    if not first["serve"]:
        facts["note"] = "the camera service has no --serve: frames and latency were not checked"
        return []
    return None


def soak_verdict(before: Mapping[str, Any] | None, first: Mapping[str, Any], last: Mapping[str, Any],
                 seconds: float, max_latency_ratio: float | None, facts: dict) -> list[str]:
    """The camera's frames must have advanced without errors from ``first`` to ``last`` (``seconds``
    apart), the service stayed active, and its latency stayed within ``max_latency_ratio`` of
    ``before``'s. Fills ``facts``; returns the problems (none: healthy)."""
    facts.update(frames=[frame(first), frame(last)], fps=(last["status"] or {}).get("fps"))
    if last["state"] != "active":
        return [f"service {last['service']} stopped during the {seconds:g} s soak ({last['state']})"]
    if last["status"] is None:
        return [f"the camera's status.json did not answer ({last['status_error'] or first['status_error']})"]
    problems = []
    if frame(last) <= frame(first):
        problems.append(f"frames did not advance in {seconds:g} s (frame {frame(last)})")
    errs = [(s["status"] or {}).get("errors") for s in (first, last)]
    if errs[1] and errs[1] != errs[0]:
        problems.append(f"the camera reported errors during the soak ({errs[0] or 0} -> {errs[1]})")
    old, new = latency_ms((before or {}).get("status")), latency_ms(last["status"])
    facts["latency_ms"] = [old, new]
    if max_latency_ratio and old and new and new > max_latency_ratio * old:
        problems.append(f"latency {new:.1f} ms is {new / old:.2f}x the {old:.1f} ms before "
                        f"(--max-latency-ratio {max_latency_ratio:g})")
    return problems
