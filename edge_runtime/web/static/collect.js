'use strict';
// The collect page: a button per class (keys 1-9; held: a burst), a new class, the last photos with
// undo. Labels and file names reach the page only through esc() (edgecls.js). A viewer sees it all,
// with every write disabled.
let classes = [];
let holding = null;
let burstMs = 250;

async function send(path, body) {
  const r = await edgecls.post(path, body);
  document.getElementById('msg').textContent = r.ok ? (r.body.message || '') : (r.body.error || 'refused (' + r.status + ')');
  return r.ok ? r.body : null;
}
function outline(z) {  // --zone: the part of the picture each photo saves (placed through the CSSOM)
  const box = document.getElementById('zones');
  box.innerHTML = z ? '<div class="zone" data-zone="' + esc(z.name) + '"><span>' + esc(z.name) + '</span></div>' : '';
  if (!z) return;
  const [x0, y0, x1, y1] = z.box, [w, h] = z.picture, pc = (a, b) => (100 * a / b).toFixed(2) + '%';
  Object.assign(box.firstChild.style, {left: pc(x0, w), top: pc(y0, h), width: pc(x1 - x0, w), height: pc(y1 - y0, h)});
  box.querySelector('span').style.background = '#4fa3ff';
}
function render(s) {
  classes = s.classes;
  outline(s.zone);
  burstMs = s.burst_ms || burstMs;
  const ro = edgecls.canWrite() ? '' : ' disabled';
  document.getElementById('root').textContent = s.root;
  document.getElementById('buttons').innerHTML = classes.map((c, i) =>
    '<button data-label="' + esc(c.label) + '" id="class-' + i + '"' + ro + '>' + (i < 9 ? (i + 1) + ': ' : '') + esc(c.label) +
    ' (<span class="count">' + esc(c.count) + '</span>)</button>').join('');
  for (const b of document.querySelectorAll('#buttons button')) {
    b.addEventListener('pointerdown', e => { e.preventDefault(); start(b.dataset.label, b); });
    for (const ev of ['pointerup', 'pointerleave', 'pointercancel']) b.addEventListener(ev, stop);
  }
  document.getElementById('recent').innerHTML = s.recent.map(p =>
    '<div class="thumb"><img src="/photo?rel=' + encodeURIComponent(p.rel) + '" alt="' + esc(p.rel) + '">' +
    esc(p.label) + ' <button class="other undo" data-rel="' + esc(p.rel) + '"' + ro + '>undo</button></div>').join('');
  for (const b of document.querySelectorAll('#recent .undo'))
    b.addEventListener('click', async () => { const r = await send('/undo', {rel: b.dataset.rel}); if (r) render(r); });
}
async function capture(label, burst) {
  const r = await send('/capture', {label: label, burst: burst});
  if (r) render(r);
}
function start(label, el) {
  stop();
  if (!edgecls.canWrite()) return;
  holding = {label: label, el: el, timer: null, busy: false};
  if (el) el.classList.add('active');
  const h = holding;
  capture(label, false);
  h.timer = setInterval(async () => {  // held: a burst, one request at a time
    if (h.busy) return;
    h.busy = true;
    try { await capture(label, true); } finally { h.busy = false; }
  }, burstMs);
}
function stop() {
  if (!holding) return;
  clearInterval(holding.timer);
  if (holding.el) holding.el.classList.remove('active');
  holding = null;
}
document.addEventListener('keydown', e => {
  if (e.target.tagName === 'INPUT' || !edgecls.canWrite()) return;
  if (e.key >= '1' && e.key <= '9') {
    if (e.repeat) return;
    const c = classes[Number(e.key) - 1];
    if (c) start(c.label, document.getElementById('class-' + (Number(e.key) - 1)));
  } else if (e.key === 'z' || e.key === 'Z') {
    send('/undo', {}).then(r => r && render(r));
  }
});
document.addEventListener('keyup', e => { if (e.key >= '1' && e.key <= '9') stop(); });
document.getElementById('add').addEventListener('submit', async e => {
  e.preventDefault();
  const f = document.getElementById('newclass');
  const r = await send('/class', {label: f.value});
  if (r) { f.value = ''; render(r); }
});
async function refresh() {
  try {
    if (holding) return;
    const r = await fetch('/collect.json', {cache: 'no-store', credentials: 'same-origin'});
    if (r.status === 401) { edgecls.toLogin(); return; }
    render(await r.json());
  } catch (e) {}
}
edgecls.whoami().then(() => {
  if (!edgecls.canWrite()) {
    for (const el of document.querySelectorAll('#add input, #add button')) el.disabled = true;
    document.getElementById('help').textContent = 'You are a viewer: only an admin can take, undo or add.';
  }
  refresh();
  setInterval(refresh, 3000);
});
