"""The collect page: the live picture, a button per class, counts, and the last photos with undo."""

from __future__ import annotations

from typing import Any

from edge_runtime.dataset.collect import BURST_FPS, Collector, Grabber
from edge_runtime.live.frames import Source
from edge_runtime.web import server as webview
from edge_runtime.web.server import query

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


def handler(collector: Collector, grabber: Grabber, view: Any) -> type:
    """The camera web view's handler (``/stream.mjpg``) with the collect page and its actions."""
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
    view = webview.View()
    grabber = Grabber(source, on_frame=lambda f: view.update(f, [], {}, 0.0))
    server = webview.serve(view, host, port, handler(collector, grabber, view))
    grabber.start()
    return server, grabber

