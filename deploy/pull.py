"""``edgecls pull USER@HOST:DIR --into DATASET``: bring photos home from a device, each once.

DIR on the device is what ``edgecls collect`` wrote (``DIR/<class>/*.jpg``) or what
``edgecls camera --save-uncertain`` wrote (``DIR/*.jpg`` with ``DIR/index.jsonl``), or both.

The protocol, over the same SSH as deploy (batch mode, known host keys only):
1. list: one ssh command prints ``sha256  ./path`` for every image in DIR and its class folders
   (hidden files, such as a collect's temporary files, are left out), then DIR/index.jsonl;
2. copy: the images whose sha256 is not yet at home (a file in DATASET, or in the ledger
   DATASET/.edgecls/pulled, which remembers what was pulled even after review moved or
   discarded it) come as one tar stream; each file is checked against its listed sha256 and
   written atomically under a new name (never over a local file), then added to the ledger. A
   cut connection loses at most the file in flight, which was never written; run it again.
   Byte-identical files on the device (a still scene) are sent once; the report names each
   duplicate and the file it is a copy of. The file list is fed to ssh by its own thread while
   this one reads the tar (neither side can fill a pipe and wait for the other), and a stream
   that stalls for ``STALL_S`` is cut. A local write that fails (disk full, no permission) stops
   the pull with the path and the cause: that is not a lost connection.
3. ``--delete-after``: the device deletes the files it is sent back, each only if its sha256 still
   matches, and only files that are verified at home (copied now, or already here).

Collected photos go to DATASET/<class>/, mined frames to DATASET/_review/<predicted label>/.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Callable

from edge_runtime.dataset.files import check_class, safe_label, write_new
from edge_runtime.errors import EdgeclsError

from . import ssh

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LIST_TIMEOUT_S = 600  # the device hashes every image: tens of thousands on an SD card
STALL_S = 60  # the tar stream sent nothing for this long: cut it (ssh's keep-alives catch a dead link sooner)
LEDGER = Path(".edgecls") / "pulled"
REVIEW = "_review"

# $1 DIR: the images with their sha256, then the mining index
LIST = r'''
set -eu
cd -- "$1" 2>/dev/null || { echo "edgecls-remote: no directory $1 on the device" >&2; exit 4; }
find . -mindepth 1 -maxdepth 2 -type f ! -name '.*' ! -path './.*' ! -path './_*' \
  \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) -print0 | xargs -0 -r sha256sum --
if [ -f index.jsonl ]; then sed 's/^/index /' index.jsonl; fi
'''

# $1 DIR; stdin: the paths, NUL-separated -> stdout: a tar of them
SEND = r'''
set -eu
cd -- "$1"
exec tar -c -f - --null -T -
'''

# $1 DIR; stdin: "sha256 path" lines -> deletes each file whose sha256 still matches, prints "deleted PATH"
DELETE = r'''
set -eu
cd -- "$1"
while IFS= read -r line; do
  h=${line%% *}; f=${line#* }
  [ -f "$f" ] || continue
  sum=$(sha256sum -- "$f") || continue
  [ "${sum%% *}" = "$h" ] && rm -f -- "$f" && echo "deleted $f"
done
exit 0
'''


class PullError(EdgeclsError):
    """A pull that could not finish; what was copied is kept."""


class LocalWriteError(PullError):
    """A file could not be written at home (disk full, no permission): the connection was fine."""


@dataclass(frozen=True)
class Remote:
    """One image on the device."""

    path: str  # relative to DIR, POSIX, no ./
    sha256: str
    dest: str  # folder in DATASET: "cat" or "_review/cat"


@dataclass
class Report:
    target: str
    listed: int = 0
    copied: list[str] = field(default_factory=list)  # local paths, relative to DATASET
    known: int = 0  # already at home
    skipped: list[str] = field(default_factory=list)  # "path: why"
    deleted: int = 0
    bytes: int = 0
    error: str = ""
    duplicates: dict[str, str] = field(default_factory=dict)  # device path -> the device file it is a copy of

    def line(self) -> str:
        photos = sum(1 for c in self.copied if not c.startswith(REVIEW + "/"))
        text = (f"{self.target}: {len(self.copied)} new ({photos} photos into class folders, "
                f"{len(self.copied) - photos} frames into {REVIEW}/), {self.known} already here"
                + (f", {self.deleted} deleted on the device" if self.deleted else "")
                + (f", {len(self.skipped)} skipped" if self.skipped else "")
                + (f", {self.duplicates_text()}" if self.duplicates else ""))
        return text

    def duplicates_text(self) -> str:
        """'4 skipped as byte-identical copies of cat/a.jpg (3), cat/b.jpg (1)'."""
        of: dict[str, int] = {}
        for original in self.duplicates.values():
            of[original] = of.get(original, 0) + 1
        shown = ", ".join(f"{o} ({n})" for o, n in list(of.items())[:5]) + (", ..." if len(of) > 5 else "")
        return f"{len(self.duplicates)} skipped as byte-identical copies of {shown}"

    def to_dict(self) -> dict:
        return {"target": self.target, "listed": self.listed, "copied": self.copied, "known": self.known,
                "skipped": self.skipped, "duplicates": self.duplicates, "deleted": self.deleted, "bytes": self.bytes,
                "error": self.error}


class Ledger:
    """What DATASET already holds, by sha256: its files and everything pulled before.

    A line is added after its photo was written and fsync'd; the ledger itself is fsync'd at
    most every ``SYNC_S`` seconds and when the pull ends (one fsync a file made a 50,000-file
    pull twice as slow). A line lost in a crash costs nothing: its photo is in DATASET, and the
    next pull finds it there by its sha256."""

    SYNC_S = 1.0

    def __init__(self, root: Path):
        self.root = root
        self.path = root / LEDGER
        self.hashes: set[str] = set()
        self._file: IO[str] | None = None
        self._synced = time.monotonic()
        if self.path.exists():
            self.hashes.update(line.split()[0] for line in self.path.read_text().splitlines() if line.strip())
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for f in files:
                if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES):
                    self.hashes.add(_sha256(Path(dirpath) / f))

    def add(self, digest: str, origin: str) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write(f"{digest} {origin}\n")
        self._file.flush()
        self.hashes.add(digest)
        if time.monotonic() - self._synced > self.SYNC_S:
            os.fsync(self._file.fileno())
            self._synced = time.monotonic()

    def close(self) -> None:
        """fsync and close the ledger (it reopens on the next ``add``)."""
        f, self._file = self._file, None
        if f is not None:
            try:
                os.fsync(f.fileno())
            finally:
                f.close()
            self._synced = time.monotonic()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_listing(text: str) -> tuple[list[Remote], list[str]]:
    """The LIST script's output -> the images with where each goes, and the ones skipped (why)."""
    predicted: dict[str, str] = {}
    sums: list[tuple[str, str]] = []
    skipped: list[str] = []
    for line in text.splitlines():
        if line.startswith("index "):
            try:
                rec = json.loads(line[6:])
                predicted[str(rec["file"])] = str(rec.get("label") or "")
            except (ValueError, KeyError, TypeError):
                continue
        elif len(line) > 66 and line[64:66] == "  " and all(c in "0123456789abcdef" for c in line[:64]):
            sums.append((line[:64], line[66:].removeprefix("./")))
        elif line.startswith("\\"):  # sha256sum escapes a name with a backslash or a line break
            skipped.append(f"{line[67:]}: a name with a backslash or a line break")
    out = []
    for digest, rel in sums:
        parts = PurePosixPath(rel).parts
        if len(parts) == 1:  # a mined frame: _review/<predicted>/
            name = parts[0]
            label = predicted.get(name) or (name.rsplit(".", 1)[0].split("_")[1:2] or ["unlabelled"])[0]
            out.append(Remote(rel, digest, f"{REVIEW}/{safe_label(label)}"))
        else:
            try:
                out.append(Remote(rel, digest, check_class(parts[0])))
            except ValueError as e:
                skipped.append(f"{rel}: {e}")
    return out, skipped


class _Throttled:
    """A reader of at most ``kbps`` KiB/s (``--limit``) that remembers when bytes last came."""

    def __init__(self, raw: IO[bytes], kbps: float | None):
        self.raw, self.kbps = raw, kbps
        self.start, self.got = time.perf_counter(), 0
        self.last = time.monotonic()  # when bytes last came (the stall watchdog reads it)
        self.stalled = False

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n if n and n > 0 else 1 << 16)
        self.got += len(data)
        self.last = time.monotonic()
        if self.kbps:
            ahead = self.got / (self.kbps * 1024) - (time.perf_counter() - self.start)
            if ahead > 0:
                time.sleep(ahead)
        return data


def pull(target: ssh.Target, o: ssh.Options, into: str | os.PathLike[str], delete_after: bool = False,
         limit_kbps: float | None = None, ledger: Ledger | None = None,
         progress: Callable[[str], None] | None = None) -> Report:
    """Copy the new images of ``target``'s DIR into ``into`` (see the module's docstring). ``into``
    is made only when there is something to write."""
    root = Path(into)
    ledger = ledger or Ledger(root)
    rep = Report(str(target))
    listed, rep.skipped = parse_listing(_list(target, o))
    rep.listed = len(listed)
    wanted: dict[str, Remote] = {}
    first: dict[str, str] = {}  # sha256 -> the device path that is copied
    for r in listed:
        if r.sha256 in ledger.hashes:
            rep.known += 1
        elif r.sha256 in first:
            rep.duplicates[r.path] = first[r.sha256]
        else:
            first[r.sha256] = r.path
            wanted[r.path] = r
    if wanted:
        proc = ssh.popen(target, o, ["sh", "-c", SEND, "edgecls-pull", target.dir])
        received = False
        try:
            _receive(proc, wanted, root, ledger, rep, str(target), limit_kbps, progress)
            received = True
        except LocalWriteError as e:
            rep.error = (f"{e}; {len(rep.copied)} of {len(wanted)} new files were copied and kept - run the same "
                         "pull again")
        finally:
            if received and proc.poll() is None:
                try:  # the stream has ended: let ssh close on its own (it may take a moment on a busy machine)
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            if proc.poll() is None:
                proc.kill()
            _, err = proc.communicate(timeout=60)
            try:
                ledger.close()
            except OSError as e:  # the photos are written: the next pull finds them by their sha256
                rep.error = rep.error or (f"cannot write {ledger.path}: {e.strerror or e} (at home: free space or fix "
                                          "the permissions), then run the same pull again")
        missing = [r.path for r in wanted.values() if r.sha256 not in ledger.hashes]
        if not rep.error and (missing or proc.returncode not in (0, None)):
            rep.error = (f"{target}: the transfer stopped after {len(rep.copied)} of {len(wanted)} new files "
                         f"({_last(err) or 'connection lost'}); what was copied is kept and checked - run the same "
                         "pull again for the rest")
    if delete_after and not rep.error:
        verified = [r for r in listed if r.sha256 in ledger.hashes]
        rep.deleted = _delete(target, o, verified)
    return rep


def _list(target: ssh.Target, o: ssh.Options) -> str:
    """The LIST script's output for ``target``'s DIR."""
    try:
        p = ssh.run(target, o, ["sh", "-c", LIST, "edgecls-pull", target.dir], timeout=LIST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PullError(f"{target}: listing the images on the device took more than {LIST_TIMEOUT_S} s; nothing was "
                        "copied - check the connection and run the same pull again") from None
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace")
        mine = [l.split("edgecls-remote: ", 1)[1] for l in err.splitlines() if "edgecls-remote: " in l]
        raise PullError(f"{target}: {mine[-1]}" if mine else ssh.explain(target, o, p.returncode, err))
    return p.stdout.decode(errors="replace")


def _last(err: bytes) -> str:
    lines = [l.strip() for l in err.decode(errors="replace").splitlines() if l.strip()]
    return lines[-1] if lines else ""


def _feed(stdin: IO[bytes], data: bytes) -> None:
    """Write the file list to the remote tar and close its input (in its own thread: tar starts
    sending before it has read the whole list, and this side must be reading by then)."""
    try:
        stdin.write(data)
    except OSError:  # the remote side ended (a cut connection): the reader sees the stream end
        pass
    finally:
        try:
            stdin.close()
        except OSError:
            pass


def _watch(proc: subprocess.Popen[bytes], reader: "_Throttled", done: threading.Event) -> None:
    """Kill the transfer when it has sent nothing for STALL_S seconds."""
    while not done.wait(min(5.0, STALL_S / 4)):
        if time.monotonic() - reader.last > STALL_S and proc.poll() is None:
            reader.stalled = True
            proc.kill()
            return


def _receive(proc: subprocess.Popen[bytes], wanted: dict[str, Remote], root: Path, ledger: Ledger, rep: Report,
             origin: str, limit_kbps: float | None, progress: Callable[[str], None] | None) -> None:
    """Send the wanted paths, read the tar stream back, check and write each file."""
    if proc.stdin is None or proc.stdout is None:
        raise PullError(f"{origin}: the transfer has no pipes")
    names = b"".join(f"./{p}".encode() + b"\0" for p in wanted)
    feeder = threading.Thread(target=_feed, args=(proc.stdin, names), daemon=True, name="edgecls-pull-list")
    proc.stdin = None  # the feeder closes it: communicate() only reads
    reader, done = _Throttled(proc.stdout, limit_kbps), threading.Event()
    watchdog = threading.Thread(target=_watch, args=(proc, reader, done), daemon=True, name="edgecls-pull-watch")
    feeder.start()
    watchdog.start()
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                rel = member.name.removeprefix("./")
                r = wanted.get(rel)
                if r is None or not member.isfile():
                    continue
                f = tar.extractfile(member)
                data = f.read() if f is not None else b""
                _keep(r, data, root, ledger, rep, origin, progress)
    except (tarfile.TarError, EOFError, ValueError):
        pass  # a cut stream: the caller counts what is missing
    except LocalWriteError:
        raise
    except OSError:
        pass  # reading the pipe failed: the connection
    finally:
        done.set()
        feeder.join(timeout=5)
    if reader.stalled:
        rep.error = (f"{origin}: the device sent nothing for {STALL_S} s, so the transfer was cut after "
                     f"{len(rep.copied)} of {len(wanted)} new files; what was copied is kept - run the same pull again")


def _keep(r: Remote, data: bytes, root: Path, ledger: Ledger, rep: Report, origin: str,
          progress: Callable[[str], None] | None) -> None:
    """Check one received file and write it at home; a local write error names the path."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != r.sha256:  # changed on the device since the listing: the next pull takes it
        rep.skipped.append(f"{r.path}: changed on the device during the pull")
        return
    if digest in ledger.hashes:
        return
    name = PurePosixPath(r.path)
    folder = root / r.dest
    try:
        path = write_new(folder, name.stem, data, suffix=name.suffix.lower())
    except OSError as e:
        raise LocalWriteError(f"cannot write {e.filename or folder}: {e.strerror or e} (at home, not on the device: "
                              "free space or fix the permissions)") from None
    try:
        ledger.add(digest, f"{origin}/{r.path}")
    except OSError as e:  # the photo is written: the next pull finds it by its sha256
        raise LocalWriteError(f"cannot write {e.filename or ledger.path}: {e.strerror or e} (at home, not on the "
                              "device: free space or fix the permissions)") from None
    rep.copied.append(path.relative_to(root).as_posix())
    rep.bytes += len(data)
    if progress:
        progress(rep.copied[-1])


def _delete(target: ssh.Target, o: ssh.Options, files: list[Remote]) -> int:
    if not files:
        return 0
    lines = "".join(f"{r.sha256} ./{r.path}\n" for r in files if "\n" not in r.path).encode()
    p = ssh.run(target, o, ["sh", "-c", DELETE, "edgecls-pull", target.dir], stdin=lines, timeout=300)
    if p.returncode != 0:
        raise PullError(f"{target}: deleting the pulled files failed ({_last(p.stderr)}); they were all copied")
    return sum(1 for l in p.stdout.decode(errors="replace").splitlines() if l.startswith("deleted "))


def register(sub) -> None:  # type: ignore[no-untyped-def]
    """``edgecls pull`` (entry point ``edgecls.commands``)."""
    import argparse

    from edge_runtime.cli.args import positive_float

    p = sub.add_parser(
        "pull", help="bring collected photos and mined frames home from devices, each once",
        description="Copy the images of DIR on the device (class folders from `edgecls collect`, frames and "
                    "index.jsonl from `edgecls camera --save-uncertain`) into DATASET: photos to their class "
                    "folder, mined frames to DATASET/_review/<predicted>/ for `edgecls review`. Content-addressed "
                    "(sha256): a file already at home, or pulled before, is not copied again, and nothing local is "
                    "overwritten. Same SSH as deploy: batch mode, known host keys only.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  edgecls pull pi@raspberrypi.local:mined --into photos\n"
               "  edgecls pull pi@raspberrypi.local:photos --into photos --delete-after\n"
               "  edgecls pull --hosts pis.txt mined --into photos")
    p.add_argument("source", metavar="USER@HOST:DIR", help="the device and its folder (with --hosts: only DIR)")
    p.add_argument("--into", required=True, metavar="DATASET", help="the dataset folder at home")
    p.add_argument("--hosts", metavar="FILE", help="pull DIR from every host of FILE (hosts file or Ansible inventory)")
    p.add_argument("--group", metavar="NAME[,NAME]", help="with an Ansible inventory: only the hosts of these groups")
    p.add_argument("--port", type=int, default=None, help="SSH port")
    p.add_argument("--identity", metavar="KEY", help="SSH private key")
    p.add_argument("--known-hosts", metavar="FILE", help="known_hosts file (default: ssh's own)")
    p.add_argument("--delete-after", action="store_true",
                   help="delete on the device the files that are now verified at home (sha256 checked on both sides)")
    p.add_argument("--limit", type=positive_float, metavar="KBPS", help="download at most this many KiB/s")
    p.add_argument("--json", action="store_true", help="one JSON object per device")
    p.set_defaults(func=cmd_pull)


def cmd_pull(a) -> int:  # type: ignore[no-untyped-def]
    import dataclasses
    import sys

    from . import inventory

    opts = ssh.Options(identity=a.identity, known_hosts=a.known_hosts)
    if a.group and not a.hosts:
        raise ValueError("--group selects hosts of an inventory: give --hosts INV too")
    if a.hosts:
        if "@" in a.source or ":" in a.source:
            raise ValueError(f"with --hosts give only the folder on the devices, not {a.source!r}")
        hosts = [(dataclasses.replace(h.target, dir=a.source), h.options(opts))
                 for h in inventory.load(a.hosts, a.group, a.port)]
    else:
        t = ssh.Target.parse(a.source, a.port, default_dir="")
        hosts = [(t, opts)]
    root = Path(a.into)
    if root.exists() and not root.is_dir():
        raise PullError(f"--into {root}: not a folder; name the dataset folder")
    ledger = Ledger(root)  # --into is made by the first file written, not before
    failed = 0
    for target, o in hosts:  # one at a time: every device's files go through the one ledger
        try:
            rep = pull(target, o, root, a.delete_after, a.limit, ledger)
        except EdgeclsError as e:
            rep = Report(str(target), error=str(e))
        if a.json:
            print(json.dumps(rep.to_dict()), flush=True)
        else:
            for s in rep.skipped:
                print(f"edgecls: warning: {target}: skipped {s}", file=sys.stderr)
            if not rep.error:
                print(rep.line(), flush=True)
            elif rep.copied or rep.known:  # what a pull that then failed did get: kept, and said as such
                print(f"edgecls: note: before the error: {rep.line()}", file=sys.stderr)
        if rep.error:
            failed += 1
            if not a.json:
                print(f"edgecls: error: {rep.error}", file=sys.stderr)
    return 1 if failed else 0
