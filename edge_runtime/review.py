"""``edgecls review DATASET --serve PORT``: sort the mined frames that ``edgecls pull`` put in
``DATASET/_review/<predicted>/`` into class folders, on a web page in the same style as collect's.

Each frame shows its predicted label (its folder) and score (the last ``_`` field of its name, as
``edgecls camera --save-uncertain`` writes it). Moving one into a class, or discarding it into
``DATASET/_discarded/`` (kept until you delete it; training ignores ``_`` folders), is a
link-then-unlink: atomic, and never over an existing file.
"""

from __future__ import annotations

import threading
from pathlib import Path, PurePosixPath
from typing import Any

from .collect import STYLE, check_class, class_folders, move_new, query
from .errors import EdgeclsError

REVIEW = "_review"
DISCARDED = "_discarded"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def score_of(name: str) -> float | None:
    """The score in a mined frame's name (``..._<label>_<score>.jpg``), or None."""
    try:
        return float(PurePosixPath(name).stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return None


class Reviewer:
    """The frames waiting in ``root/_review`` and the moves out of it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise EdgeclsError(f"{self.root}: not a directory; give the dataset folder that `edgecls pull --into` filled")
        self.lock = threading.Lock()
        self.extra: list[str] = []  # classes added on the page, not yet folders

    def pending(self) -> list[dict[str, Any]]:
        review = self.root / REVIEW
        out = []
        if review.is_dir():
            for p in sorted(review.rglob("*")):
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES:
                    rel = p.relative_to(self.root).as_posix()
                    predicted = p.parent.name if p.parent != review else ""
                    out.append({"rel": rel, "predicted": predicted, "score": score_of(p.name)})
        return out

    def classes(self) -> list[str]:
        with self.lock:
            return sorted(set(class_folders(self.root)) | set(self.extra))

    def add_class(self, name: str) -> str:
        name = check_class(name)
        with self.lock:
            if name not in self.extra:
                self.extra.append(name)
        return name

    def _source(self, rel: str) -> Path:
        p = (self.root / rel).resolve()
        review = (self.root / REVIEW).resolve()
        try:
            p.relative_to(review)
        except ValueError:
            raise ValueError(f"{rel}: not a frame in {REVIEW}/") from None
        if not p.is_file():
            raise ValueError(f"{rel}: no such frame (already moved?)")
        return p

    def move(self, rel: str, label: str) -> Path:
        """Move a frame into the class folder ``label`` (made if new)."""
        label = check_class(label)
        with self.lock:
            return move_new(self._source(rel), self.root / label)

    def discard(self, rel: str) -> Path:
        with self.lock:
            return move_new(self._source(rel), self.root / DISCARDED)

    def state(self) -> dict[str, Any]:
        return {"root": str(self.root), "classes": self.classes(), "pending": self.pending()}


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgecls review</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/edgecls.css"><style>""" + STYLE + """
#frames{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:1em;padding:0 1em 1em}
.frame img{width:100%;display:block;border-radius:6px;margin-bottom:.4em}.frame button{margin:.15em .1em;padding:.35em .7em}
.frame .discard{border-color:var(--bad)}.intro{padding:0 1em}</style>
</head><body>
<header><h1>edgecls review</h1><span class="meta"><span id="left"></span> frames left in <span id="root"></span>/_review</span></header>
<div class="intro"><p class="muted">Frames the camera was unsure of. Move each into its class, or discard it.</p>
<form id="add"><input type="text" id="newclass" placeholder="new class" maxlength="64"> <button class="other" type="submit">add class</button></form>
<div id="msg"></div></div>
<div id="frames"></div>
<script>
function esc(s) { return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;'); }
async function post(path, body) {
  const r = await fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  const s = await r.json();
  document.getElementById('msg').textContent = r.ok ? (s.message || '') : (s.error || r.statusText);
  return r.ok ? s : null;
}
function render(s) {
  document.getElementById('root').textContent = s.root;
  document.getElementById('left').textContent = s.pending.length;
  document.getElementById('frames').innerHTML = s.pending.map((f, i) =>
    '<div class="frame panel" data-rel="' + esc(f.rel) + '"><img src="/image?rel=' + encodeURIComponent(f.rel) + '" alt="' +
    esc(f.rel) + '"><div>predicted <b class="predicted">' + esc(f.predicted || '?') + '</b> ' +
    (f.score === null ? '' : '<span class="score">' + f.score.toFixed(3) + '</span>') + '</div>' +
    s.classes.map(c => '<button class="move" data-label="' + esc(c) + '">' + esc(c) + '</button>').join('') +
    '<button class="other discard">discard</button></div>').join('');
  for (const d of document.querySelectorAll('.frame')) {
    for (const b of d.querySelectorAll('.move'))
      b.addEventListener('click', async () => { const r = await post('/move', {rel: d.dataset.rel, label: b.dataset.label}); if (r) render(r); });
    d.querySelector('.discard').addEventListener('click', async () => { const r = await post('/discard', {rel: d.dataset.rel}); if (r) render(r); });
  }
}
document.getElementById('add').addEventListener('submit', async e => {
  e.preventDefault();
  const f = document.getElementById('newclass');
  const r = await post('/class', {label: f.value});
  if (r) { f.value = ''; render(r); }
});
fetch('/review.json', {cache: 'no-store'}).then(r => r.json()).then(render);
</script></body></html>
"""


def handler(reviewer: Reviewer, view: Any) -> type:
    from . import webview

    def move(body: dict[str, Any]) -> dict[str, Any]:
        dest = reviewer.move(str(body.get("rel", "")), str(body.get("label", "")))
        return {**reviewer.state(), "message": f"moved to {dest.relative_to(reviewer.root).as_posix()}"}

    def discard(body: dict[str, Any]) -> dict[str, Any]:
        reviewer.discard(str(body.get("rel", "")))
        return {**reviewer.state(), "message": f"discarded (kept in {DISCARDED}/ until you delete it)"}

    def add_class(body: dict[str, Any]) -> dict[str, Any]:
        name = reviewer.add_class(str(body.get("label", "")))
        return {**reviewer.state(), "message": f"class {name} added"}

    routes = {"/move": move, "/discard": discard, "/class": add_class}

    class Handler(webview.handler_for(view)):  # type: ignore[misc]
        def do_GET(self) -> None:  # noqa: N802
            path, q = query(self.path)
            if path == "/":
                self._send(PAGE.encode(), "text/html; charset=utf-8")
            elif path == "/review.json":
                self.send_json(reviewer.state())
            elif path == "/image":
                self.send_image_in(reviewer.root / REVIEW, PurePosixPath(q.get("rel", "")).as_posix()
                                   .removeprefix(REVIEW + "/"))
            else:
                super().do_GET()  # the shared style sheet; anything else is not found

        def do_POST(self) -> None:  # noqa: N802
            self.dispatch_post(routes)

    return Handler


def serve(reviewer: Reviewer, host: str, port: int) -> Any:
    from . import webview

    view = webview.View()
    return webview.serve(view, host, port, handler(reviewer, view))


def command(a: Any) -> int:
    """``edgecls review``."""
    import sys
    import time

    from .collect import serve_address

    reviewer = Reviewer(a.dataset)
    host, port = serve_address(a.serve, a.public, "review")
    server = serve(reviewer, host, port)
    h, p = server.server_address[:2]
    print(f"edgecls: review page on http://{h}:{p}/ ({len(reviewer.pending())} frames in {reviewer.root / REVIEW}) "
          "- Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    print(f"edgecls: {len(reviewer.pending())} frames left in {reviewer.root / REVIEW}", file=sys.stderr)
    return 0
