"""``edgecls collect``: photos from the device's camera into ``DATASET/<class>/``, the layout
``edgecls train`` reads.

How a photo is written (``write_new``): the JPEG goes to a hidden temporary file in the class
folder, is flushed to disk, then gets its final name with ``link(2)``, which fails instead of
replacing an existing file; the temporary name is removed. So a crash leaves either no photo or
a whole one (a stray ``.tmp-*`` at worst, which training skips as a hidden file), and no photo
is ever overwritten. Names are the UTC save time to the microsecond (``20250102-153012-123456``),
so they sort by time; a clash gets ``_1``, ``_2``... which sorts after the first.

With ``--serve`` a web page (served by this module through ``webview``'s server) shows the live
picture, a button per class, counts, and the last photos with undo; without it, ``--count`` photos
of one ``--label`` are taken ``--every`` seconds apart.
"""

from __future__ import annotations

import errno
import io
import os
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

from .errors import EdgeclsError
from .sources import Frame, Source, SourceError

JPEG_QUALITY = 92
MAX_CLASS_NAME = 64
RECENT = 12  # photos the page lists (and can undo)
BURST_FPS = 4.0  # photos a second while a button or key is held (the page paces it)


def check_class(name: str) -> str:
    """A class name that is a safe folder name and that ``edgecls train`` reads as a class."""
    clean = name.strip()
    bad = (not clean or clean in (".", "..") or clean.startswith((".", "_")) or len(clean) > MAX_CLASS_NAME
           or any(c in clean for c in "/\\") or any(ord(c) < 32 for c in clean))
    if bad:
        raise ValueError(f"class name {name!r} cannot be a class folder: use letters, digits, spaces, '-' or '_', "
                         f"not starting with '.' or '_', no '/', at most {MAX_CLASS_NAME} characters")
    return clean


def class_folders(root: Path) -> list[str]:
    """The class folders of a dataset, as ``edgecls train`` sees them (no ``.`` or ``_`` folders)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def stamp(t: float | None = None) -> str:
    """UTC time to the microsecond, as a file name that sorts by time."""
    t = time.time() if t is None else t
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(t)) + f"-{int(t % 1 * 1e6):06d}"


def write_new(directory: Path, stem: str, data: bytes, suffix: str = ".jpg", tail: str = "") -> Path:
    """Write ``data`` as ``directory/stem[_N]tail suffix``, atomically and never over an existing
    file (see the module's docstring). Returns the path written."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; a photo is an ordinary file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        for i in range(10000):
            final = directory / f"{stem}{f'_{i}' if i else ''}{tail}{suffix}"
            try:
                os.link(tmp, final)
                return final
            except FileExistsError:
                continue
            except OSError as e:  # a file system without hard links (FAT on a USB stick): check, then rename
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                if final.exists():
                    continue
                os.rename(tmp, final)
                return final
        raise EdgeclsError(f"{directory}: cannot find a free name for {stem}{suffix}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def move_new(src: Path, directory: Path) -> Path:
    """Move ``src`` into ``directory`` under its own name (``_N`` added on a clash), atomically and
    never over an existing file: link to the new name, then unlink the old one."""
    directory.mkdir(parents=True, exist_ok=True)
    stem, suffix = src.stem, src.suffix
    for i in range(10000):
        final = directory / f"{stem}{f'_{i}' if i else ''}{suffix}"
        try:
            os.link(src, final)
        except FileExistsError:
            continue
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                raise
            if final.exists():
                continue
            os.rename(src, final)
            return final
        os.unlink(src)
        return final
    raise EdgeclsError(f"{directory}: cannot find a free name for {src.name}")


def jpeg(frame: Frame, quality: int = JPEG_QUALITY) -> bytes:
    """The frame's full picture (the display/main stream when the source has one) as JPEG."""
    buf = io.BytesIO()
    Image.fromarray(frame.display if frame.display is not None else frame.rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@dataclass(frozen=True)
class Saved:
    path: Path
    label: str
    rel: str  # "class/name.jpg"
    frame: int


class Collector:
    """Class folders under ``root``: save frames, count, undo. Thread-safe (the page's requests
    arrive on several threads)."""

    def __init__(self, root: str | os.PathLike[str], labels: list[str] | tuple[str, ...] = ()):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise EdgeclsError(f"{self.root}: not a directory; give the dataset folder (one sub-folder per class)")
        self.lock = threading.Lock()
        self.labels: list[str] = []
        for name in [*class_folders(self.root), *labels]:
            self.add_class(name)
        self.recent: deque[Saved] = deque(maxlen=RECENT)
        self.last_frame = -1
        self.capturing = threading.Lock()  # one capture at a time: a click and a burst never share a frame

    def capture(self, grabber: "Grabber", label: str, burst: bool) -> Saved | None:
        """Save the camera's next unsaved frame as ``label``. A burst waits up to a second for a
        frame not saved yet (None if none came); a click takes one too when it comes within half a
        second, else the newest frame, so a click always saves a photo."""
        with self.capturing:
            f = grabber.latest(newer_than=self.last_frame, timeout=1.0 if burst else 0.5)
            if f is None and not burst:
                f = grabber.latest(timeout=3.0)
            return self.save(label, f) if f is not None else None

    def add_class(self, name: str) -> str:
        name = check_class(name)
        with self.lock:
            if name not in self.labels:
                self.labels.append(name)
        return name

    def save(self, label: str, frame: Frame) -> Saved:
        label = self.add_class(label)
        path = write_new(self.root / label, stamp(), jpeg(frame))
        s = Saved(path, label, f"{label}/{path.name}", frame.n)
        with self.lock:
            self.recent.append(s)
            self.last_frame = frame.n
        return s

    def undo(self, rel: str | None = None) -> Saved | None:
        """Delete one of the recent photos (the last one when ``rel`` is None); None if there is none."""
        with self.lock:
            hits = [s for s in self.recent if rel is None or s.rel == rel]
            if not hits:
                return None
            s = hits[-1]
            self.recent.remove(s)
        try:
            s.path.unlink()
        except FileNotFoundError:
            pass
        return s

    def counts(self) -> dict[str, int]:
        with self.lock:
            labels = list(self.labels)
        return {c: _count_images(self.root / c) for c in labels}

    def state(self) -> dict[str, Any]:
        with self.lock:
            recent = [{"rel": s.rel, "label": s.label, "frame": s.frame} for s in reversed(self.recent)]
        return {"classes": [{"label": c, "count": n} for c, n in self.counts().items()], "recent": recent,
                "root": str(self.root)}


def _count_images(d: Path) -> int:
    if not d.is_dir():
        return 0
    return sum(1 for p in d.iterdir() if p.is_file() and not p.name.startswith(".")
               and p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp"))


class Grabber:
    """Reads a source in a thread and keeps the newest frame; a file's frames are paced at
    ``file_fps`` so the page shows them moving, and its last frame stays when it ends."""

    def __init__(self, source: Source, on_frame: Callable[[Frame], None] | None = None, file_fps: float = 10.0):
        self.source = source
        self.on_frame = on_frame
        self.gap = 0.0 if source.live or not file_fps else 1.0 / file_fps
        self.frame: Frame | None = None
        self.ended: str | None = None
        self.cv = threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="edgecls-collect")

    def start(self) -> "Grabber":
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                f = self.source.read()
                if f is None:
                    self.ended = "end of input"
                    return
                with self.cv:
                    self.frame = f
                    self.cv.notify_all()
                if self.on_frame:
                    self.on_frame(f)
                if self.gap:
                    time.sleep(self.gap)
        except SourceError as e:
            self.ended = str(e)
        finally:
            with self.cv:
                self.cv.notify_all()

    def latest(self, newer_than: int = -1, timeout: float = 2.0) -> Frame | None:
        """The newest frame; with ``newer_than``, wait up to ``timeout`` for one after that number
        (None if none came)."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while (self.frame is None or self.frame.n <= newer_than) and self.ended is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cv.wait(left)
            f = self.frame
        return f if f is not None and f.n > newer_than else None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.source.close()


def take(collector: Collector, source: Source, label: str, count: int, every: float,
         on_saved: Callable[[Saved], None] | None = None, stop: threading.Event | None = None) -> list[Saved]:
    """``count`` photos of ``label``, ``every`` seconds apart: a camera's newest frame each time,
    a file's frames in order. Stops early at the end of a file (what was taken is returned)."""
    label = collector.add_class(label)
    stop = stop or threading.Event()
    saved: list[Saved] = []
    if source.live:
        grabber = Grabber(source).start()
        try:
            last = -1
            next_t = time.monotonic()
            while len(saved) < count and not stop.is_set():
                time.sleep(max(0.0, next_t - time.monotonic()))
                f = grabber.latest(newer_than=last, timeout=10.0)
                if f is None:
                    if grabber.ended:
                        raise SourceError(grabber.ended)
                    continue
                next_t = time.monotonic() + every
                last = f.n
                saved.append(collector.save(label, f))
                if on_saved:
                    on_saved(saved[-1])
        finally:
            grabber.close()
        return saved
    try:
        while len(saved) < count and not stop.is_set():
            f = source.read()
            if f is None:
                break
            saved.append(collector.save(label, f))
            if on_saved:
                on_saved(saved[-1])
            if every and len(saved) < count:
                time.sleep(every)
    finally:
        source.close()
    return saved


# --- the page ------------------------------------------------------------------------------

STYLE = """#buttons{display:flex;flex-wrap:wrap;gap:.5em;margin:.2em 0 .8em}
#buttons button{font-size:1.15em;padding:.7em 1.1em;touch-action:none;user-select:none;background:#1f6f4a;border-color:#2c8a5f}
#buttons button.active{background:var(--good);color:#06121f}.count{color:#cfe;font-variant-numeric:tabular-nums}
.thumbs{display:flex;flex-wrap:wrap;gap:.5em}.thumb{text-align:center;font-size:.8em;color:var(--dim)}
.thumb img{height:90px;display:block;border-radius:6px;margin-bottom:.2em}.thumb button{padding:.2em .6em;font-size:.9em}
#msg{min-height:1.3em;color:var(--warn)}form{display:flex;gap:.5em;flex-wrap:wrap}"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgecls collect</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/edgecls.css"><style>""" + STYLE + """</style>
</head><body>
<header><h1>edgecls collect</h1><span class="meta">saving into <span id="root"></span></span></header>
<main>
<section class="panel picture"><img class="live" id="live" src="/stream.mjpg" alt="live picture"></section>
<section><div class="panel">
<h2>take a photo of</h2>
<div id="buttons"></div>
<form id="add"><input type="text" id="newclass" placeholder="new class" maxlength="64"> <button class="other" type="submit">add class</button></form>
<p class="muted">Click a class to take a photo, hold it for a burst; keys 1-9 do the same, z undoes the last photo.</p>
<div id="msg"></div></div>
<div class="panel" style="margin-top:1em"><h2>last photos</h2>
<div class="thumbs" id="recent"></div></div></section>
</main>
<script>
let classes = [];
let holding = null;
function esc(s) { return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;'); }
async function post(path, body) {
  const r = await fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  const s = await r.json();
  if (!r.ok) { document.getElementById('msg').textContent = s.error || r.statusText; return null; }
  document.getElementById('msg').textContent = s.message || '';
  return s;
}
function render(s) {
  classes = s.classes;
  document.getElementById('root').textContent = s.root;
  document.getElementById('buttons').innerHTML = classes.map((c, i) =>
    '<button data-label="' + esc(c.label) + '" id="class-' + i + '">' + (i < 9 ? (i + 1) + ': ' : '') + esc(c.label) +
    ' (<span class="count">' + c.count + '</span>)</button>').join('');
  for (const b of document.querySelectorAll('#buttons button')) {
    b.addEventListener('pointerdown', e => { e.preventDefault(); start(b.dataset.label, b); });
    for (const ev of ['pointerup', 'pointerleave', 'pointercancel']) b.addEventListener(ev, stop);
  }
  document.getElementById('recent').innerHTML = s.recent.map(p =>
    '<div class="thumb"><img src="/photo?rel=' + encodeURIComponent(p.rel) + '" alt="' + esc(p.rel) + '">' +
    esc(p.label) + ' <button class="other undo" data-rel="' + esc(p.rel) + '">undo</button></div>').join('');
  for (const b of document.querySelectorAll('#recent .undo'))
    b.addEventListener('click', async () => { const r = await post('/undo', {rel: b.dataset.rel}); if (r) render(r); });
}
async function capture(label, burst) {
  const r = await post('/capture', {label: label, burst: burst});
  if (r) render(r);
}
function start(label, el) {
  stop();
  holding = {label: label, el: el, timer: null, busy: false};
  if (el) el.classList.add('active');
  const h = holding;
  capture(label, false);
  h.timer = setInterval(async () => {  // held: a burst, one request at a time
    if (h.busy) return;
    h.busy = true;
    try { await capture(label, true); } finally { h.busy = false; }
  }, """ + str(int(1000 / BURST_FPS)) + """);
}
function stop() {
  if (!holding) return;
  clearInterval(holding.timer);
  if (holding.el) holding.el.classList.remove('active');
  holding = null;
}
document.addEventListener('keydown', e => {
  if (e.target.tagName === 'INPUT') return;
  if (e.key >= '1' && e.key <= '9') {
    if (e.repeat) return;
    const c = classes[Number(e.key) - 1];
    if (c) start(c.label, document.getElementById('class-' + (Number(e.key) - 1)));
  } else if (e.key === 'z' || e.key === 'Z') {
    post('/undo', {}).then(r => r && render(r));
  }
});
document.addEventListener('keyup', e => { if (e.key >= '1' && e.key <= '9') stop(); });
document.getElementById('add').addEventListener('submit', async e => {
  e.preventDefault();
  const f = document.getElementById('newclass');
  const r = await post('/class', {label: f.value});
  if (r) { f.value = ''; render(r); }
});
async function refresh() {
  try { if (!holding) render(await (await fetch('/collect.json', {cache: 'no-store'})).json()); } catch (e) {}
}
refresh();
setInterval(refresh, 3000);
</script></body></html>
"""


def query(path: str) -> tuple[str, dict[str, str]]:
    u = urlsplit(path)
    return u.path, {k: v[0] for k, v in parse_qs(u.query).items()}


def handler(collector: Collector, grabber: Grabber, view: Any) -> type:
    """The camera web view's handler (``/stream.mjpg``) with the collect page and its actions."""
    from . import webview

    def capture(body: dict[str, Any]) -> dict[str, Any]:
        burst = bool(body.get("burst"))
        s = collector.capture(grabber, str(body.get("label", "")), burst)
        if s is None:
            msg = "no new frame from the camera yet" if burst else \
                f"no frame to save ({grabber.ended or 'waiting for the camera'})"
        else:
            msg = f"saved {s.rel}"
        return {**collector.state(), "message": msg}

    def undo(body: dict[str, Any]) -> dict[str, Any]:
        s = collector.undo(body.get("rel") or None)
        return {**collector.state(), "message": f"removed {s.rel}" if s else "nothing to undo"}

    def add_class(body: dict[str, Any]) -> dict[str, Any]:
        name = collector.add_class(str(body.get("label", "")))
        return {**collector.state(), "message": f"class {name} added"}

    class Handler(webview.handler_for(view)):  # type: ignore[misc]
        def do_GET(self) -> None:  # noqa: N802
            path, q = query(self.path)
            if path == "/":
                self._send(PAGE.encode(), "text/html; charset=utf-8")
            elif path == "/collect.json":
                self.send_json(collector.state())
            elif path == "/photo":
                self.send_image_in(collector.root, q.get("rel", ""))
            else:
                super().do_GET()

        def do_POST(self) -> None:  # noqa: N802
            self.dispatch_post({"/capture": capture, "/undo": undo, "/class": add_class})

    return Handler


def serve(collector: Collector, source: Source, host: str, port: int) -> tuple[Any, Grabber]:
    """Start the page's server and the frame reader; returns (server, grabber)."""
    from . import webview

    view = webview.View()
    grabber = Grabber(source, on_frame=lambda f: view.update(f, [], {}, 0.0))
    server = webview.serve(view, host, port, handler(collector, grabber, view))
    grabber.start()
    return server, grabber


def frame_of(array: np.ndarray, n: int = 0) -> Frame:
    """A Frame from an RGB array (for the Python API and tests)."""
    return Frame(np.ascontiguousarray(array), time.time(), n)


# --- the command (parsed in cli._add_collect) ----------------------------------------------


def serve_address(text: str, public: bool, what: str) -> tuple[str, int]:
    """``--serve``'s host and port; an address other machines can reach needs ``--public``."""
    import sys

    from . import webview

    host, port = webview.parse_address(text)
    if not webview.is_loopback(host):
        if not public:
            raise ValueError(f"--serve {text} would be reachable from other machines; add --public to say so "
                             "(or serve on 127.0.0.1 and use an SSH tunnel)")
        print(f"edgecls: warning: the {what} page on {host}:{port} is reachable by anyone on the network, "
              "without a password", file=sys.stderr)
    return host, port


def command(a: Any) -> int:
    """``edgecls collect``."""
    import sys

    from . import sources

    if a.serve and (a.label or a.count is not None):
        raise ValueError("--label and --count take photos without the page; with --serve, use the page's buttons "
                         "(--labels names them)")
    if not a.serve and not a.label:
        raise ValueError("give --serve [HOST:]PORT for the page, or --label CLASS (with --count, --every) to take "
                         "photos from the command line")
    labels = [x for x in (a.labels or "").split(",") if x.strip()]
    collector = Collector(a.dataset, labels)
    source, note = sources.open_source(a.source, (a.width, a.height), fps=a.fps)
    source.open()
    print(f"edgecls: collecting from {source.name} into {collector.root}" + (f"; {note}" if note else ""),
          file=sys.stderr, flush=True)
    if not a.serve:
        count = a.count if a.count is not None else 50

        def said(s: Saved) -> None:
            print(s.path, flush=True)

        saved = take(collector, source, a.label, count, a.every, on_saved=said)
        print(f"edgecls: {len(saved)} photos of {a.label} saved in {collector.root / check_class(a.label)} "
              f"({collector.counts()[check_class(a.label)]} there now)"
              + ("" if len(saved) == count else f"; the input ended before {count}"), file=sys.stderr)
        return 0 if saved else 1
    host, port = serve_address(a.serve, a.public, "collect")
    server, grabber = serve(collector, source, host, port)
    h, p = server.server_address[:2]
    print(f"edgecls: collect page on http://{h}:{p}/ - Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        grabber.close()
    counts = ", ".join(f"{c} {n}" for c, n in collector.counts().items()) or "no classes"
    print(f"edgecls: {collector.root}: {counts}", file=sys.stderr)
    return 0
