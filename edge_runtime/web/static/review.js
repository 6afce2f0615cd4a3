'use strict';
// The review page: each mined frame with its predicted label and score, a button per class to move
// it there, and discard. Labels and file names reach the page only through esc() (edgecls.js).
async function send(path, body) {
  const r = await edgecls.post(path, body);
  document.getElementById('msg').textContent = r.ok ? (r.body.message || '') : (r.body.error || 'refused (' + r.status + ')');
  return r.ok ? r.body : null;
}
function render(s) {
  const ro = edgecls.canWrite() ? '' : ' disabled';
  document.getElementById('root').textContent = s.root;
  document.getElementById('left').textContent = s.pending.length;
  document.getElementById('frames').innerHTML = s.pending.map(f =>
    '<div class="frame panel" data-rel="' + esc(f.rel) + '"><img src="/image?rel=' + encodeURIComponent(f.rel) + '" alt="' +
    esc(f.rel) + '"><div>predicted <b class="predicted">' + esc(f.predicted || '?') + '</b> ' +
    (f.score === null ? '' : '<span class="score">' + esc(f.score.toFixed(3)) + '</span>') + '</div>' +
    s.classes.map(c => '<button class="move" data-label="' + esc(c) + '"' + ro + '>' + esc(c) + '</button>').join('') +
    '<button class="other discard"' + ro + '>discard</button></div>').join('');
  for (const d of document.querySelectorAll('.frame')) {
    for (const b of d.querySelectorAll('.move'))
      b.addEventListener('click', async () => { const r = await send('/move', {rel: d.dataset.rel, label: b.dataset.label}); if (r) render(r); });
    d.querySelector('.discard').addEventListener('click', async () => { const r = await send('/discard', {rel: d.dataset.rel}); if (r) render(r); });
  }
}
document.getElementById('add').addEventListener('submit', async e => {
  e.preventDefault();
  const f = document.getElementById('newclass');
  const r = await send('/class', {label: f.value});
  if (r) { f.value = ''; render(r); }
});
edgecls.whoami().then(async () => {
  if (!edgecls.canWrite()) {
    for (const el of document.querySelectorAll('#add input, #add button')) el.disabled = true;
    document.getElementById('help').textContent = 'You are a viewer: only an admin can move or discard frames.';
  }
  const r = await fetch('/review.json', {cache: 'no-store', credentials: 'same-origin'});
  if (r.status === 401) { edgecls.toLogin(); return; }
  render(await r.json());
});
