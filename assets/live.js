// diagproxy's live page: the session's events from /events (Server-Sent Events) become rows;
// a click shows one in the detail pane. Plain JavaScript, no library, no inline handlers.
// Everything from the network is put in the page as text (textContent), never as markup;
// the overview is HTML the proxy rendered and escaped itself.
'use strict';
(function () {
  var MAX_ROWS = 10000;        // rows kept (and in the DOM); the oldest go first
  var OVERVIEW_EVERY = 1000;   // ms between overview refreshes while events arrive
  var rows = [];               // {id, ev, tr, text, problem}, oldest first
  var pending = [];            // rows waiting for the next frame (or for "resume")
  var paused = false, selected = null, tls = {}, lastOverview = 0, overviewTimer = null;
  var tbody = document.querySelector('#rows tbody');
  var q = document.getElementById('q'), problems = document.getElementById('problems');
  var pauseButton = document.getElementById('pause'), shown = document.getElementById('shown');
  var detail = document.getElementById('detail'), conn = document.getElementById('conn');

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function ms(v) { return v === null || v === undefined ? '' : (v < 10 ? v.toFixed(1) : Math.round(v)); }
  function bytes(n) {
    if (!n) return '0';
    if (n < 1024) return n + ' B';
    if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
    return (n / 1048576).toFixed(1) + ' MiB';
  }
  function pathOf(url) {
    var m = /^[a-z]+:\/\/[^\/]*(\/.*)?$/i.exec(url || '');
    return m ? (m[1] || '/') : (url || '');
  }

  // One event as a row: what the list shows, what the filter searches, how bad it is.
  function describe(ev) {
    var f = ev.failure, found = ev.findings || [];
    var outcome = f ? f.kind : (found.length ? found[0].kind : '');
    switch (ev.type) {
      case 'request':
        return { time: ev.ts, method: ev.method, host: ev.host + ':' + ev.port, path: pathOf(ev.url),
          status: ev.status === null ? '—' : ev.status,
          outcome: outcome || (ev.status >= 400 ? 'HTTP ' + ev.status : (ev.complete ? 'ok' : 'cut off')),
          ms: ev.timings.total_ms, bytes: ev.bytes_down,
          cls: f ? 'fail' : (found.length || ev.status >= 400 ? 'warn' : '') };
      case 'tunnel':
        return { time: ev.ts, method: ev.mode === 'intercept' ? 'TLS' : 'CONNECT',
          host: (ev.sni || ev.host) + ':' + ev.port, path: '', status: f ? '—' : '',
          outcome: outcome || ev.end, ms: ev.timings.total_ms, bytes: ev.bytes_up + ev.bytes_down,
          cls: f ? 'fail' : (found.length ? 'warn' : '') };
      case 'refused':
        return { time: ev.ts, method: ev.method, host: ev.target, path: '', status: ev.status,
          outcome: ev.reason, ms: null, bytes: 0, cls: 'fail' };
      case 'client_rejected_ca':
        return { time: ev.ts, method: 'TLS', host: ev.host + ':' + ev.port, path: '', status: '',
          outcome: 'client_rejected_ca', ms: null, bytes: 0, cls: 'warn' };
      default:
        return null;
    }
  }

  function makeRow(id, ev, d) {
    var tr = document.createElement('tr');
    if (d.cls) tr.className = d.cls;
    tr.dataset.id = id;
    var time = (d.time || '').replace(/^.*T/, '').replace(/Z$/, '');
    [time, d.method, d.host, d.path, d.status, d.outcome, ms(d.ms), bytes(d.bytes)].forEach(function (v) {
      tr.appendChild(el('td', v));
    });
    tr.title = d.host + d.path;
    var findings = (ev.findings || []).map(function (x) { return x.kind; }).join(' ');
    return { id: id, ev: ev, tr: tr, problem: !!d.cls,
      text: [d.method, d.host, d.path, d.status, d.outcome, findings].join(' ').toLowerCase(),
      host: String(d.host).toLowerCase(), status: String(d.status), findings: (d.outcome + ' ' + findings).toLowerCase() };
  }

  // The filter: free words match anywhere; host:, status: and finding: match one field.
  function matcher() {
    var words = q.value.toLowerCase().split(/\s+/).filter(Boolean);
    var onlyProblems = problems.checked;
    return function (r) {
      if (onlyProblems && !r.problem) return false;
      return words.every(function (w) {
        var i = w.indexOf(':');
        var key = i > 0 ? w.slice(0, i) : '', val = i > 0 ? w.slice(i + 1) : w;
        if (key === 'host') return r.host.indexOf(val) >= 0;
        if (key === 'status') return r.status.indexOf(val) === 0;
        if (key === 'finding') return r.findings.indexOf(val) >= 0;
        return r.text.indexOf(w) >= 0;
      });
    };
  }
  var matches = matcher();

  function applyFilter() {
    matches = matcher();
    var n = 0;
    for (var i = 0; i < rows.length; i++) {
      var show = matches(rows[i]);
      rows[i].tr.hidden = !show;
      if (show) n++;
    }
    count(n);
  }
  function count(n) {
    if (n === undefined) n = rows.reduce(function (a, r) { return a + (r.tr.hidden ? 0 : 1); }, 0);
    shown.textContent = n + ' of ' + rows.length + ' shown' + (paused ? ' · paused (' + pending.length + ' waiting)' : '');
  }

  // Rows arrive in bursts: they are added once per frame, newest on top.
  var scheduled = false;
  function schedule() {
    if (scheduled || paused) return;
    scheduled = true;
    requestAnimationFrame(flush);
  }
  function flush() {
    scheduled = false;
    if (paused || !pending.length) { count(); return; }
    var frag = document.createDocumentFragment();
    for (var i = pending.length - 1; i >= 0; i--) {
      var r = pending[i];
      r.tr.hidden = !matches(r);
      frag.appendChild(r.tr);
      rows.push(r);
    }
    pending = [];
    tbody.insertBefore(frag, tbody.firstChild);
    while (rows.length > MAX_ROWS) {
      var old = rows.shift();
      if (old.tr.parentNode) old.tr.parentNode.removeChild(old.tr);
    }
    count();
  }

  function onEvent(id, ev) {
    if (ev.type === 'tls_check') { tls[ev.host + ':' + ev.port] = ev; }
    if (ev.type === 'session_ended') { conn.textContent = 'session ended'; conn.className = 'conn down'; source.close(); }
    var d = describe(ev);
    if (d) {
      pending.push(makeRow(id, ev, d));
      if (pending.length > MAX_ROWS) pending.shift();
      schedule();
    }
    refreshOverviewSoon();
  }

  function gap(missed) {
    var tr = el('tr', null, 'gap');
    var td = el('td', missed + ' event(s) missed: this page fell behind the proxy. The session files have them all.');
    td.colSpan = 8;
    tr.appendChild(td);
    pending.push({ id: 0, ev: null, tr: tr, problem: true, text: 'missed', host: '', status: '', findings: '' });
    schedule();
  }

  function refreshOverviewSoon() {
    if (overviewTimer) return;
    var wait = Math.max(0, OVERVIEW_EVERY - (Date.now() - lastOverview));
    overviewTimer = setTimeout(refreshOverview, wait);
  }
  function refreshOverview() {
    overviewTimer = null;
    lastOverview = Date.now();
    fetch('/api/overview', { credentials: 'same-origin' }).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (html) {
      // Rendered by diagproxy, every network-controlled string escaped there.
      if (html !== null) document.getElementById('overview').innerHTML = html;
    }).catch(function () {});
  }
  setInterval(refreshOverviewSoon, 5000);

  // The detail pane.
  function kv(table, key, value) {
    if (value === null || value === undefined || value === '') return;
    var tr = el('tr');
    tr.appendChild(el('td', key));
    tr.appendChild(el('td', value));
    table.appendChild(tr);
  }
  function headerTable(title, list) {
    if (!list || !list.length) return null;
    var box = el('div');
    box.appendChild(el('h3', title));
    var t = el('table', null, 'kv');
    list.forEach(function (pair) { kv(t, pair[0], pair[1]); });
    box.appendChild(t);
    return box;
  }
  function timings(t) {
    var box = el('div');
    box.appendChild(el('h3', 'Timings'));
    var parts = [['dns', t.dns_ms], ['connect', (t.connect_ms || 0) + (t.proxy_connect_ms || 0)], ['ssl', t.ssl_ms],
      ['wait', t.wait_ms], ['receive', t.receive_ms]];
    var total = t.total_ms || 0, bar = el('div', null, 'wf');
    parts.forEach(function (p) {
      if (!p[1] || !total) return;
      var s = el('span', null, 'w-' + p[0]);
      s.style.width = Math.max(1, 100 * p[1] / total) + '%';
      s.title = p[0] + ' ' + ms(p[1]) + ' ms';
      bar.appendChild(s);
    });
    box.appendChild(bar);
    var table = el('table', null, 'kv');
    kv(table, 'DNS', t.dns_ms !== null && t.dns_ms !== undefined ? ms(t.dns_ms) + ' ms' : 'none (IP, pin or reused)');
    kv(table, 'connect', t.connect_ms !== null && t.connect_ms !== undefined ? ms(t.connect_ms) + ' ms' : 'reused connection');
    if (t.proxy_connect_ms) kv(table, 'proxy CONNECT', ms(t.proxy_connect_ms) + ' ms');
    if (t.ssl_ms) kv(table, 'TLS', ms(t.ssl_ms) + ' ms');
    if (t.wait_ms !== null && t.wait_ms !== undefined) kv(table, 'wait', ms(t.wait_ms) + ' ms');
    if (t.receive_ms) kv(table, 'receive', ms(t.receive_ms) + ' ms');
    kv(table, 'total', ms(t.total_ms) + ' ms');
    box.appendChild(table);
    return box;
  }
  function copyButton(text) {
    var b = el('button', 'copy', 'copy');
    b.type = 'button';
    b.addEventListener('click', function () {
      function fallback() {
        var area = el('textarea');
        area.value = text;
        document.body.appendChild(area);
        area.select();
        try { document.execCommand('copy'); } catch (e) { /* the text stays selectable */ }
        document.body.removeChild(area);
      }
      if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).catch(fallback);
      else fallback();
      b.textContent = 'copied';
    });
    return b;
  }
  function findingBox(f) {
    var box = el('div', null, 'finding');
    var h = el('div');
    h.appendChild(el('span', f.kind, 'tag fail'));
    h.appendChild(document.createTextNode(' ' + f.host + (f.vendor ? ' — ' + f.vendor : '')));
    box.appendChild(h);
    box.appendChild(el('p', f.detail));
    if (f.evidence) box.appendChild(el('p', 'Evidence: ' + f.evidence));
    if (f.excerpt) box.appendChild(el('p', 'What the user saw: “' + f.excerpt + '”'));
    if (f.feature) box.appendChild(el('p', 'What breaks: ' + f.feature));
    var remedy = el('p');
    remedy.appendChild(el('b', 'Change: '));
    remedy.appendChild(document.createTextNode(f.remedy));
    box.appendChild(remedy);
    if (f.reproduce) {
      var p = el('p', 'Reproduce without diagproxy: ');
      p.appendChild(el('code', f.reproduce, 'reproduce'));
      p.appendChild(copyButton(f.reproduce));
      box.appendChild(p);
    }
    return box;
  }
  function chainBox(v) {
    var box = el('div');
    box.appendChild(el('h3', 'Certificate chain: ' + v.verdict + (v.vendor ? ' — ' + v.vendor : '') +
      (v.reason ? ' (' + v.reason + ')' : '')));
    var t = el('table');
    var head = el('tr');
    ['subject', 'issuer', 'valid until'].forEach(function (x) { head.appendChild(el('th', x)); });
    t.appendChild(head);
    (v.chain || []).forEach(function (c) {
      var tr = el('tr');
      tr.appendChild(el('td', c.subject));
      tr.appendChild(el('td', c.issuer));
      tr.appendChild(el('td', (c.not_after || '').slice(0, 10)));
      t.appendChild(tr);
    });
    box.appendChild(t);
    return box;
  }
  function bodyBox(b) {
    var box = el('div');
    box.appendChild(el('h3', 'Body (' + bytes(b.size) + (b.truncated ? ', cut at 64 KiB' : '') + ', ' + (b.mime || 'no type') + ')'));
    var link = el('a', 'open as a file');
    link.href = '/api/body/' + b.sha256;
    link.setAttribute('download', b.sha256);
    if (b.encoding !== 'text') {
      box.appendChild(el('p', 'Binary; ')).appendChild(link);
      return box;
    }
    var pre = el('pre', 'loading…', 'body');
    box.appendChild(pre);
    fetch('/api/body/' + b.sha256, { credentials: 'same-origin' }).then(function (r) {
      return r.ok ? r.text() : 'not available: ' + r.status;
    }).then(function (text) { pre.textContent = text; }).catch(function (e) { pre.textContent = String(e); });
    return box;
  }

  function show(row) {
    if (selected) selected.tr.classList.remove('sel');
    selected = row;
    row.tr.classList.add('sel');
    var ev = row.ev;
    fetch('/api/event/' + row.id, { credentials: 'same-origin' }).then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (full) {
      if (selected === row) render(ev, full);
    }).catch(function () { if (selected === row) render(ev, null); });
  }
  function render(ev, full) {
    detail.textContent = '';
    var d = describe(ev);
    detail.appendChild(el('h3', d.method + ' ' + (ev.url || d.host)));
    var t = el('table', null, 'kv');
    kv(t, 'status', ev.status);
    kv(t, 'outcome', d.outcome);
    if (ev.failure) kv(t, 'failure', ev.failure.kind + ' (' + ev.failure.side + '): ' + ev.failure.detail);
    kv(t, 'allowlist', ev.allowlist || 'not in the profile');
    kv(t, 'route', (ev.route || 'DIRECT') + (ev.route_source ? ' (' + ev.route_source + ')' : ''));
    if (ev.proxy_auth) kv(t, 'proxy sign-in', [ev.proxy_auth.scheme, ev.proxy_auth.outcome, ev.proxy_auth.failure].filter(Boolean).join(' '));
    kv(t, 'server', ev.server_ip);
    kv(t, 'SNI', ev.sni);
    kv(t, 'client', ev.downstream ? ev.downstream.addr + (ev.downstream.user_agent ? ' — ' + ev.downstream.user_agent : '') : null);
    kv(t, 'bytes', 'up ' + bytes(ev.bytes_up || 0) + ', down ' + bytes(ev.bytes_down || 0));
    if (ev.detail) kv(t, 'detail', ev.detail);
    detail.appendChild(t);
    var findings = full ? full.findings : (ev.findings || []);
    if (findings.length) {
      detail.appendChild(el('h3', 'Findings'));
      findings.forEach(function (f) { detail.appendChild(findingBox(f)); });
    }
    if (ev.timings) detail.appendChild(timings(ev.timings));
    var chain = full && full.tls ? full.tls : (tls[(ev.sni || ev.host) + ':' + ev.port] || {}).tls;
    if (chain) detail.appendChild(chainBox(chain));
    if (ev.headers) {
      [headerTable('Request headers', ev.headers.request), headerTable('Response headers', ev.headers.response)]
        .forEach(function (box) { if (box) detail.appendChild(box); });
    }
    if (ev.body) detail.appendChild(bodyBox(ev.body));
    else if (ev.block_page_body) { detail.appendChild(el('h3', 'Body')); detail.appendChild(el('pre', ev.block_page_body, 'body')); }
  }

  tbody.addEventListener('click', function (e) {
    var tr = e.target.closest('tr');
    if (!tr || !tr.dataset.id) return;
    var id = Number(tr.dataset.id);
    for (var i = rows.length - 1; i >= 0; i--) if (rows[i].id === id) { show(rows[i]); return; }
  });
  q.addEventListener('input', applyFilter);
  problems.addEventListener('change', applyFilter);
  pauseButton.addEventListener('click', function () {
    paused = !paused;
    pauseButton.textContent = paused ? 'Resume' : 'Pause';
    if (!paused) schedule(); else count();
  });

  var source = new EventSource('/events');
  source.onopen = function () { conn.textContent = 'live'; conn.className = 'conn live'; };
  source.onerror = function () {
    if (conn.textContent !== 'session ended') { conn.textContent = 'reconnecting…'; conn.className = 'conn down'; }
  };
  source.onmessage = function (m) {
    var ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    onEvent(Number(m.lastEventId), ev);
  };
  source.addEventListener('resync', function (m) {
    var missed = 0;
    try { missed = JSON.parse(m.data).missed; } catch (e) { /* keep 0 */ }
    gap(missed);
    refreshOverviewSoon();
  });
  window.diagproxy = { rows: function () { return rows.length + pending.length; } };
})();
