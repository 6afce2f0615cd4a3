'use strict';
// The collect page's bundle (edgecls collect --serve --bundle BUNDLE): what it sees in the live
// picture, and the Teach button (admins): teach in the background, its progress, each class's
// held-out photo as the taught bundle classifies it, then Keep or Undo. Polls /teach.json; labels
// and file names reach the page only through esc() (edgecls.js).
let teachTimer = null;
let teachBusy = false;  // a Teach, Keep or Undo request in flight

function pct(x) { return (100 * x).toFixed(0) + '%'; }

function teachRender(t) {
  const el = id => document.getElementById(id);
  const admin = edgecls.canWrite();
  el('sees').textContent = t.sees && t.sees.length ?
    'the bundle sees: ' + t.sees.map(c => c.label + ' ' + pct(c.score)).join(' \u00b7 ') : '';
  el('bundle').textContent = t.bundle ?
    t.name + ' (' + t.classes.length + ' classes: ' + t.classes.join(', ') + ')' + (t.can_teach ? '' : '. ' + t.why_not) :
    t.why_not;
  const running = t.state === 'running';
  el('teach').disabled = !admin || teachBusy || !t.bundle || !t.can_teach || running || t.state === 'done';
  el('teach').title = admin ? '' : 'only an admin can teach';
  el('teach-progress').hidden = !running;
  if (running && t.step.total) el('teach-progress').value = t.step.done / t.step.total;
  el('teach-step').textContent = running ? t.step.message + ' (' + Math.round(t.elapsed || 0) + ' s)' : '';
  if (t.state === 'failed') el('teach-error').textContent = t.error;
  else if (running || t.state === 'done') el('teach-error').textContent = '';
  el('teach-note').textContent = t.note || '';
  const r = t.result;
  el('teach-result').hidden = !(t.state === 'done' && r);
  if (t.state === 'done' && r) {
    const parts = [r.added.length ? 'added ' + r.added.join(', ') : '', r.refined.length ? 'refined ' + r.refined.join(', ') : '',
                   r.kept.length ? 'kept ' + r.kept.length + ' from the bundle' : ''].filter(Boolean).join('; ');
    el('teach-summary').textContent = 'Taught ' + r.photos + ' photos in ' + r.seconds.toFixed(2) + ' s (' + parts + '): ' +
      r.right + ' of ' + r.tested + ' held-out photos right. ' + t.out + ' waits: keep it, or undo it.';
    el('teach-checks').innerHTML = r.checks.map(c =>
      '<tr><td>' + esc(c.label) + '</td><td>' + esc(c.photo) + (c.source === 'golden' ? ' (golden)' : ' (held out)') +
      '</td><td>' + esc(c.predicted) + ' ' + esc(pct(c.score)) + '</td><td class="' + (c.right ? 'right">right' : 'wrong">wrong') +
      '</td></tr>').join('');
    const few = r.untested.filter(c => !r.kept.includes(c)), old = r.untested.filter(c => r.kept.includes(c));
    el('teach-untested').textContent = [few.length ? 'Not tested (fewer than 4 photos: none to hold out): ' + few.join(', ') : '',
      old.length ? 'Kept without a golden photo to test: ' + old.join(', ') : ''].filter(Boolean).join('. ');
    el('keep').disabled = el('teach-undo').disabled = !admin || teachBusy;
  }
  clearTimeout(teachTimer);
  teachTimer = setTimeout(teachRefresh, running ? 500 : 1000);
}

async function teachRefresh() {
  try {
    const r = await fetch('/teach.json', {cache: 'no-store', credentials: 'same-origin'});
    if (r.status === 401) { edgecls.toLogin(); return; }
    teachRender(await r.json());
  } catch (e) {
    clearTimeout(teachTimer);
    teachTimer = setTimeout(teachRefresh, 2000);
  }
}

async function teachSend(path) {
  teachBusy = true;
  try {
    const r = await edgecls.post(path, {});
    document.getElementById('teach-error').textContent = r.ok ? '' : (r.body.error || 'refused (' + r.status + ')');
  } finally {
    teachBusy = false;
    teachRefresh();
  }
}

document.getElementById('teach').addEventListener('click', () => teachSend('/teach'));
document.getElementById('keep').addEventListener('click', () => teachSend('/teach/keep'));
document.getElementById('teach-undo').addEventListener('click', () => teachSend('/teach/undo'));
edgecls.whoami().then(teachRefresh);
