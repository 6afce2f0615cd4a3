'use strict';
// The live page: polls /status.json; labels reach the page only through esc() (edgecls.js).
const $ = id => document.getElementById(id);
const PALETTE = ['#4fa3ff', '#3fb27f', '#e0a030', '#c77dff', '#e05d5d', '#35c4c4', '#f28cb1', '#a3be5c', '#ff9f6b', '#8e9bff'];
const colour = i => i === null ? '#333a46' : PALETTE[i % PALETTE.length];
function ago(s) { return s < 60 ? Math.round(s) + ' s' : s < 3600 ? Math.round(s / 60) + ' min' : (s / 3600).toFixed(1) + ' h'; }
function canvas(id) {
  const c = $(id), r = c.getBoundingClientRect(), d = window.devicePixelRatio || 1;
  if (c.width !== Math.round(r.width * d)) { c.width = Math.round(r.width * d); c.height = Math.round(42 * d); }
  const g = c.getContext('2d'); g.clearRect(0, 0, c.width, c.height); return [g, c.width, c.height];
}
function strip(h, now) {  // the label over the last minute, one colour per class
  const [g, w, ht] = canvas('labels');
  for (let i = 0; i < h.t.length; i++) {
    const x0 = w * (1 - (now - h.t[i]) / 60), x1 = i + 1 < h.t.length ? w * (1 - (now - h.t[i + 1]) / 60) : w;
    g.fillStyle = colour(h.label[i]); g.fillRect(Math.max(0, x0), 0, Math.max(1, x1 - x0), ht);
  }
  const names = h.names || {};
  const shown = [...new Set(h.label)];
  $('legend').innerHTML = shown.map(l => '<span><i></i>' + esc(l === null ? '(none)' : names[l] || l) + '</span>').join('');
  $('legend').querySelectorAll('i').forEach((el, k) => { el.style.background = colour(shown[k]); });  // CSSOM: no inline style
}
function spark(id, rangeId, h, key, now, unit) {
  const [g, w, ht] = canvas(id), v = h[key];
  if (!v.length) return;
  const hi = Math.max(...v) * 1.15 || 1;
  g.strokeStyle = '#4fa3ff'; g.lineWidth = 2 * (window.devicePixelRatio || 1); g.beginPath();
  v.forEach((y, i) => { const x = w * (1 - (now - h.t[i]) / 60), yy = ht - ht * y / hi; i ? g.lineTo(x, yy) : g.moveTo(x, yy); });
  g.stroke();
  $(rangeId).textContent = '(' + Math.min(...v).toFixed(1) + '-' + Math.max(...v).toFixed(1) + unit + ')';
}
function zoneTops(z) {  // with --zone: one bar per zone, its newest top-1, named "zone: label"
  return Object.entries(z).filter(([, v]) => v.classes && v.classes.length)
    .map(([n, v]) => ({label: n + ': ' + v.classes[0].label, score: v.classes[0].score}));
}
function zones(z) {  // each zone's box over the picture, with its label and score (placed through the CSSOM)
  const shown = Object.entries(z).filter(([, v]) => v.box && v.picture && v.picture.length);
  $('zones').innerHTML = shown.map(([n, v]) => {
    const c = v.classes && v.classes[0];
    return '<div class="zone" data-zone="' + esc(n) + '"><span>' + esc(n) + ': ' +
      esc(c ? c.label + ' ' + c.score.toFixed(2) : '(none)') + '</span></div>';
  }).join('');
  $('zones').querySelectorAll('.zone').forEach((el, i) => {
    const [x0, y0, x1, y1] = shown[i][1].box, [w, h] = shown[i][1].picture, pc = (a, b) => (100 * a / b).toFixed(2) + '%';
    Object.assign(el.style, {left: pc(x0, w), top: pc(y0, h), width: pc(x1 - x0, w), height: pc(y1 - y0, h),
                             borderColor: PALETTE[i % PALETTE.length]});
    el.querySelector('span').style.background = PALETTE[i % PALETTE.length];
  });
}
async function tick() {
  try {
    const s = await (await fetch('/status.json', {cache: 'no-store'})).json();
    const i = s.info || {}, b = s.bundle || {};
    $('model').textContent = [i.model, b.version && 'version ' + b.version, i.backend && i.backend + ' backend',
                              i.threads && i.threads + ' threads', i.interpreter,
                              b.refused && 'not running ' + b.refused.version + ': ' + b.refused.reason]
      .filter(Boolean).join(' \u00b7 ');
    if (s.zones) zones(s.zones);
    if (s.frame !== null) {
      const c = s.zones ? zoneTops(s.zones) : s.classes;
      $('top').textContent = c.length ? c[0].label : '(no class above the threshold)';
      $('since').textContent = c.length ? 'score ' + c[0].score.toFixed(2) + ' \u00b7 leading for ' + ago(s.label_seconds || 0) : '';
      $('bars').innerHTML = c.map(x => '<div class="bar" data-label="' + esc(x.label) + '" data-score="' + x.score.toFixed(4) +
        '"><span class="name">' + esc(x.label) + '</span><span class="track"><span class="fill"></span></span><span class="value">' +
        x.score.toFixed(3) + '</span></div>').join('');
      $('bars').querySelectorAll('.bar').forEach(b => { b.querySelector('.fill').style.width = (100 * b.dataset.score).toFixed(1) + '%'; });
      $('frame').textContent = s.frame;
      $('fps').textContent = s.fps.toFixed(1);
      $('invoke').textContent = (s.latency_ms.invoke || 0).toFixed(2);
      $('age').textContent = (s.latency_ms.age || 0).toFixed(1);
      $('dropped').textContent = s.dropped;
      const a = Object.values(s.actions || {});
      $('actions').textContent = a.length ? [a.reduce((n, x) => n + (x.sent || 0), 0), a.reduce((n, x) => n + (x.failed || 0), 0),
                                             a.reduce((n, x) => n + (x.dropped || 0), 0)].join(' / ') : 'none';
      const d = s.drift;
      $('drift').textContent = !d ? 'no reference' : d.score === null ? 'warming up (' + d.frames + ' frames)' :
        d.score.toFixed(2) + (d.score > 0.25 ? ' (significant)' : d.score >= 0.1 ? ' (moderate)' : ' (none)');
      const h = s.history || {t: []}, now = s.now || (h.t.length ? h.t[h.t.length - 1] : 0);
      strip(h, now); spark('fps-chart', 'fps-range', h, 'fps', now, ''); spark('lat-chart', 'lat-range', h, 'invoke_ms', now, ' ms');
    }
  } catch (e) {}
  setTimeout(tick, 400);
}
edgecls.whoami().then(tick, tick);
