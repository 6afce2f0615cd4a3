// edgecls pages (camera, collect, review, login): the one escaper, who is logged in, and writes.
// No page has inline script (the Content-Security-Policy forbids it); each loads this file first.
'use strict';

const ESCAPES = {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'};

// Text -> HTML text or attribute value (double- or single-quoted): labels and file names are
// text, never markup. Every string a page puts into innerHTML goes through here.
function esc(s) { return String(s).replace(/[&<>"']/g, c => ESCAPES[c]); }

const edgecls = {
  session: {user: null, role: null, csrf: null, login: false},

  // Who is logged in (GET /session.json); a page behind a login sends a stranger to /login.
  async whoami() {
    const r = await fetch('/session.json', {cache: 'no-store', credentials: 'same-origin'});
    this.session = await r.json();
    if (this.session.login && !this.session.role) this.toLogin();
    this.userbar();
    return this.session;
  },

  canWrite() { return this.session.role === 'admin'; },

  toLogin() { location.href = '/login?next=' + encodeURIComponent(location.pathname); },

  // A write: a JSON POST with the session's CSRF token. Returns {ok, status, body}.
  async post(path, body) {
    const headers = {'Content-Type': 'application/json'};
    if (this.session.csrf) headers['X-CSRF-Token'] = this.session.csrf;
    const r = await fetch(path, {method: 'POST', headers: headers, body: JSON.stringify(body), credentials: 'same-origin'});
    let data = {};
    try { data = await r.json(); } catch (e) { data = {error: r.statusText}; }
    if (r.status === 401 && path !== '/login') this.toLogin();
    return {ok: r.ok, status: r.status, body: data};
  },

  async logout() {
    await this.post('/logout', {});
    location.href = '/login';
  },

  // "NAME (role) · log out" in the header's #user, when there are users.
  userbar() {
    const bar = document.getElementById('user');
    if (!bar || !this.session.user) return;
    bar.textContent = '';
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = this.session.user + ' (' + this.session.role + ')';
    const out = document.createElement('button');
    out.id = 'logout';
    out.className = 'other';
    out.type = 'button';
    out.textContent = 'log out';
    out.addEventListener('click', () => this.logout());
    bar.append(who, ' ', out);
  },
};
