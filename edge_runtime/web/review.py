"""The review page: each mined frame with its predicted label and score, buttons to move it into a
class or discard it."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from edge_runtime.dataset.review import DISCARDED, REVIEW, Reviewer
from edge_runtime.web import server as webview
from edge_runtime.web.collect import STYLE
from edge_runtime.web.server import query

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
    view = webview.View()
    return webview.serve(view, host, port, handler(reviewer, view))
