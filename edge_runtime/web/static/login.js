'use strict';
// Where to go after logging in: a path on this server only (never //elsewhere).
function next() {
  const n = new URLSearchParams(location.search).get('next') || '/';
  return /^\/(?![\/\\])/.test(n) ? n : '/';
}
document.getElementById('login').addEventListener('submit', async e => {
  e.preventDefault();
  const msg = document.getElementById('msg');
  msg.textContent = '';
  const r = await edgecls.post('/login', {name: document.getElementById('name').value,
                                         password: document.getElementById('password').value});
  if (r.ok) { location.href = next(); return; }
  msg.textContent = r.body.error || ('refused (' + r.status + ')');
  document.getElementById('password').value = '';
});
