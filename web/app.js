/* quantd's web page: jobs list, job detail (progress, metrics, search trials, artifacts,
 * log), uploads and job submission, the pass catalogue. Plain JS, no build step, served
 * by the daemon itself (api/web.c). Every string from the server is put into the page as
 * text (textContent / createTextNode), never parsed as HTML; the server's CSP forbids
 * inline scripts besides. URLs are relative to the page, so a reverse proxy may mount the
 * daemon under a path prefix. */
'use strict';

(function () {
  const TOKEN_KEY = 'quantd.token';
  const STATES = ['queued', 'running', 'succeeded', 'failed', 'canceled'];
  const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);
  const LIST_POLL_MS = 2000;
  const JOB_POLL_MS = 1000;
  const LOG_KEEP = 5000;       /* log lines kept in the page */

  /* ---- DOM helpers: text only ---- */

  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false)
        continue;
      if (k === 'class')
        e.className = v;
      else if (k === 'data')
        for (const [dk, dv] of Object.entries(v))
          e.dataset[dk] = String(dv);
      else if (k.startsWith('on') && typeof v === 'function')
        e.addEventListener(k.slice(2), v);
      else if (k === 'value')
        e.value = v;
      else
        e.setAttribute(k, v === true ? '' : String(v));
    }
    add(e, kids);
    return e;
  }

  function add(e, ...kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false)
        continue;
      e.append(k instanceof Node ? k : String(k));   /* append(string) makes a text node */
    }
    return e;
  }

  /* replace e's children (arrays flattened, strings as text) */
  function put(e, ...kids) {
    e.replaceChildren();
    return add(e, kids);
  }

  function $(sel, root) { return (root || document).querySelector(sel); }

  function table(head, rows, attrs) {
    return h('div', { class: 'table-wrap' },
      h('table', attrs || {},
        h('thead', null, h('tr', null, head.map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', null, rows)));
  }

  /* a figure: the exact value in data-value, the formatted one as text */
  function fig(tag, key, value, text) {
    return h(tag, { data: value === undefined ? { metric: key } : { metric: key, value: JSON.stringify(value) } },
      text === undefined ? fmtAny(value) : text);
  }

  function dl(pairs) {
    return h('dl', { class: 'kv' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k), v instanceof Node && v.tagName === 'DD' ? v : h('dd', null, v)]));
  }

  /* ---- formatting ---- */

  function fmtAny(v) {
    if (v === null || v === undefined)
      return '—';
    if (typeof v === 'number')
      return Number.isInteger(v) ? String(v) : fmtFloat(v, 6);
    if (typeof v === 'object')
      return JSON.stringify(v);
    return String(v);
  }
  function fmtFloat(v, d) { return typeof v === 'number' && isFinite(v) ? v.toFixed(d) : fmtAny(v === undefined ? null : v); }
  function fmtInt(n) { return typeof n === 'number' ? n.toLocaleString('en-US') : '—'; }
  function fmtBytes(n) {
    if (typeof n !== 'number')
      return '—';
    const units = ['KiB', 'MiB', 'GiB', 'TiB'];
    let s = fmtInt(n) + ' B';
    let v = n, u = -1;
    while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
    if (u >= 0)
      s += ' (' + v.toFixed(1) + ' ' + units[u] + ')';
    return s;
  }
  function fmtTime(iso) {
    if (!iso)
      return '—';
    const d = new Date(iso);
    if (isNaN(d))
      return String(iso);
    const p = (x) => String(x).padStart(2, '0');
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' +
      p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }
  function fmtDuration(a, b) {
    if (!a)
      return '—';
    const s = ((b ? new Date(b) : new Date()) - new Date(a)) / 1000;
    if (!isFinite(s))
      return '—';
    return s < 60 ? s.toFixed(1) + ' s' : Math.floor(s / 60) + ' min ' + Math.round(s % 60) + ' s';
  }
  function pct(p) { return typeof p === 'number' ? Math.round(p * 100) + ' %' : '—'; }

  function badge(state) { return h('span', { class: 'badge st-' + (STATES.includes(state) ? state : 'other') }, state || '?'); }

  function progressBar(p, label) {
    const v = typeof p === 'number' ? Math.max(0, Math.min(1, p)) : 0;
    return h('span', { class: 'prog' },
      h('progress', { max: '1', value: String(v), 'aria-label': label || 'progress' }),
      h('span', { class: 'prog-pct' }, pct(v)));
  }

  function jobName(j) {
    const w = j && j.workflow;
    return w && typeof w.name === 'string' && w.name ? w.name : (w && typeof w.description === 'string' ? w.description : '');
  }

  function passTypes(j) {
    const p = j && j.workflow && j.workflow.passes;
    if (!p || typeof p !== 'object')
      return [];
    const list = Array.isArray(p) ? p : Object.values(p);
    return list.map((x) => (x && typeof x === 'object' && typeof x.type === 'string' ? x.type : '?'));
  }

  /* ---- the API ---- */

  function token() {
    try { return localStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }
  /* "/v1/x" → "v1/x": relative to the page's directory */
  function rel(p) { return String(p).replace(/^\/+/, ''); }

  class ApiError extends Error {
    constructor(status, body, text) {
      const e = body && body.error;
      super(e && e.message ? e.message : 'HTTP ' + status + (text ? ': ' + text.slice(0, 200) : ''));
      this.status = status;
      this.code = e ? e.code : null;
      this.details = (e && e.details) || {};
    }
  }

  function parseBody(text) {
    if (!text)
      return null;
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  async function api(method, path, body) {
    const headers = {};
    const t = token();
    if (t)
      headers.Authorization = 'Bearer ' + t;
    let b;
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      b = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(rel(path), { method, headers, body: b, cache: 'no-store' });
    } catch (e) {
      throw new ApiError(0, null, 'cannot reach the server (' + e.message + ')');
    }
    const text = await r.text();
    const data = parseBody(text);
    if (r.status === 401)
      askToken(data && data.error ? data.error.message : 'the server wants a bearer token');
    if (!r.ok)
      throw new ApiError(r.status, data, text);
    return data;
  }

  /* POST raw bytes with upload progress (fetch has none) */
  function uploadFile(path, file, onprogress) {
    return new Promise((resolve, reject) => {
      const x = new XMLHttpRequest();
      x.open('POST', rel(path));
      x.setRequestHeader('Content-Type', 'application/octet-stream');
      const t = token();
      if (t)
        x.setRequestHeader('Authorization', 'Bearer ' + t);
      x.upload.onprogress = (e) => { if (e.lengthComputable) onprogress(e.loaded / e.total); };
      x.onload = () => {
        const data = parseBody(x.responseText);
        if (x.status === 401)
          askToken(data && data.error ? data.error.message : 'the server wants a bearer token');
        if (x.status >= 200 && x.status < 300)
          resolve({ status: x.status, body: data });
        else
          reject(new ApiError(x.status, data, x.responseText));
      };
      x.onerror = () => reject(new ApiError(0, null, 'the upload was interrupted'));
      x.send(file);
    });
  }

  /* ---- token panel ---- */

  function askToken(why) {
    const panel = $('#token-panel');
    const open = panel.hidden;
    panel.hidden = false;
    $('#token-toggle').setAttribute('aria-expanded', 'true');
    $('#token-state').textContent = token() ? 'The saved token was refused: ' + why : 'This server needs a token: ' + why;
    if (open)
      $('#token-input').focus();
  }

  function initToken() {
    const panel = $('#token-panel');
    $('#token-toggle').addEventListener('click', () => {
      panel.hidden = !panel.hidden;
      $('#token-toggle').setAttribute('aria-expanded', String(!panel.hidden));
      if (!panel.hidden)
        $('#token-input').focus();
    });
    panel.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = $('#token-input').value.trim();
      try { localStorage.setItem(TOKEN_KEY, v); } catch (e) { /* private mode: this page only */ }
      $('#token-input').value = '';
      $('#token-state').textContent = v ? 'Token saved.' : 'Token cleared.';
      panel.hidden = true;
      $('#token-toggle').setAttribute('aria-expanded', 'false');
      route();
    });
    $('#token-forget').addEventListener('click', () => {
      try { localStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing kept */ }
      $('#token-state').textContent = 'Token forgotten.';
    });
  }

  /* ---- views and their timers ---- */

  let gen = 0;                 /* bumped on every navigation: stale callbacks stop */
  const timers = new Set();
  function later(my, fn, ms) {
    const t = setTimeout(() => { timers.delete(t); if (my === gen) fn(); }, ms);
    timers.add(t);
    return t;
  }
  function cancelLater(t) {
    if (t) {
      clearTimeout(t);
      timers.delete(t);
    }
  }
  function view() { return $('#view'); }

  function errorBox(err, title) {
    const box = h('div', { class: 'error', role: 'alert' },
      h('p', null, h('strong', null, title || 'Error'), ': ', err.code ? h('code', null, err.code) : null,
        err.code ? ' ' : null, err.message));
    const d = err.details || {};
    const probs = Array.isArray(d.problems) ? d.problems : [];
    if (probs.length)
      add(box, h('ul', { class: 'problems' }, probs.map((p) =>
        h('li', null, h('code', { class: 'field' }, p.field || '(workflow)'), ': ', p.message || '', p.code ? ' (' + p.code + ')' : ''))));
    else if (d.field)
      add(box, h('p', null, 'Field: ', h('code', { class: 'field' }, d.field)));
    return box;
  }

  function route() {
    gen++;
    for (const t of timers)
      clearTimeout(t);
    timers.clear();
    const hash = location.hash.replace(/^#\/?/, '');
    const [page, arg] = hash.split('/');
    for (const a of document.querySelectorAll('[data-nav]'))
      a.toggleAttribute('aria-current', a.dataset.nav === (page || 'jobs') && !arg);
    const v = view();
    put(v);
    if (page === 'jobs' && arg)
      return jobView(decodeURIComponent(arg));
    if (page === 'new')
      return newView();
    if (page === 'passes')
      return passesView();
    return jobsView();
  }

  /* ---- jobs list ---- */

  function jobsView() {
    const my = gen;
    const v = view();
    document.title = 'Jobs · quantd';
    const state = h('select', { id: 'jobs-state' }, h('option', { value: '' }, 'all'), STATES.map((s) => h('option', { value: s }, s)));
    const auto = h('input', { type: 'checkbox', id: 'jobs-auto', checked: true });
    const status = h('span', { class: 'muted', role: 'status', id: 'jobs-status' });
    const body = h('div', { id: 'jobs-body' });
    let limit = 50, last = '';
    const more = h('button', { type: 'button', hidden: true, onclick: () => { limit = Math.min(limit + 50, 1000); load(); } }, 'Show more');
    add(v, h('h1', null, 'Jobs'),
      h('div', { class: 'toolbar' },
        h('label', { for: 'jobs-state' }, 'State '), state,
        h('label', { class: 'check' }, auto, ' auto-refresh'),
        h('button', { type: 'button', onclick: () => load() }, 'Refresh'), status),
      body, more);
    state.addEventListener('change', () => { last = ''; load(); });
    auto.addEventListener('change', () => { if (auto.checked) load(); });

    let next = null, seq = 0;
    async function load() {
      cancelLater(next);           /* one refresh chain, whatever the buttons did */
      next = null;
      const mine = ++seq;          /* only the latest request draws and reschedules */
      let page;
      try {
        page = await api('GET', '/v1/jobs?limit=' + limit + (state.value ? '&state=' + encodeURIComponent(state.value) : ''));
      } catch (e) {
        if (my !== gen || mine !== seq)
          return;
        put(body, errorBox(e, 'Cannot list jobs'));
        if (auto.checked && e.status !== 401)
          next = later(my, load, LIST_POLL_MS * 2);
        return;
      }
      if (my !== gen || mine !== seq)
        return;
      const items = page.items || [];
      const sig = JSON.stringify(items);
      if (sig !== last) {              /* redraw only on change: keeps focus and selection */
        last = sig;
        put(body, items.length ? jobsTable(items) :
          h('p', { class: 'empty' }, state.value ? 'No ' + state.value + ' jobs.' : 'No jobs yet. ', state.value ? null : h('a', { href: '#/new' }, 'Submit one.')));
      }
      more.hidden = !page.next_cursor || limit >= 1000;
      status.textContent = 'updated ' + fmtTime(new Date().toISOString());
      if (auto.checked)
        next = later(my, load, LIST_POLL_MS);
    }
    load();
  }

  function jobsTable(items) {
    return table(['Job', 'Name', 'State', 'Passes', 'Created', 'Progress', 'Message'], items.map((j) =>
      h('tr', { data: { job: j.id } },
        h('td', null, h('a', { href: '#/jobs/' + encodeURIComponent(j.id), class: 'mono' }, j.id)),
        h('td', { class: 'name' }, jobName(j)),
        h('td', null, badge(j.state), j.cancel_requested && !TERMINAL.has(j.state) ? h('span', { class: 'muted' }, ' cancel requested') : null),
        h('td', null, passTypes(j).join(', ')),
        h('td', { class: 'nowrap' }, fmtTime(j.created_at)),
        h('td', null, progressBar(j.progress, 'progress of ' + j.id)),
        h('td', { class: 'msg' }, j.error ? [h('code', null, j.error.code), ' ', j.error.message || ''] : (j.progress_message || '')))),
    { class: 'jobs' });
  }

  /* ---- one job ---- */

  function jobView(id) {
    const my = gen;
    const v = view();
    document.title = id + ' · quantd';
    const head = h('div', { id: 'job-head' });
    const res = h('div', { id: 'job-result' });
    const logBox = h('pre', { id: 'job-log', class: 'log', tabindex: '0', 'aria-label': 'job log' });
    const follow = h('input', { type: 'checkbox', id: 'log-follow', checked: true });
    const logStatus = h('span', { class: 'muted', id: 'log-status', role: 'status' });
    add(v, h('p', null, h('a', { href: '#/jobs' }, '← all jobs')),
      h('h1', null, 'Job ', h('span', { class: 'mono' }, id)), head, res,
      h('section', { 'aria-labelledby': 'log-h' },
        h('h2', { id: 'log-h' }, 'Log'),
        h('div', { class: 'toolbar' }, h('label', { class: 'check' }, follow, ' follow'), logStatus),
        logBox));
    let job = null, resultShown = false, logAfter = 0, logDone = false, logBusy = false, logDropped = 0;
    let modelName = null, next = null, seq = 0;

    async function loadJob() {
      cancelLater(next);           /* one poll chain, also after a cancel's reload */
      next = null;
      const mine = ++seq;          /* only the latest request draws and reschedules */
      let got;
      try {
        got = await api('GET', '/v1/jobs/' + encodeURIComponent(id));
      } catch (e) {
        if (my !== gen || mine !== seq)
          return;
        put(head, errorBox(e, 'Cannot load the job'));
        if (e.status !== 404 && e.status !== 401)
          next = later(my, loadJob, JOB_POLL_MS * 3);
        return;
      }
      if (my !== gen || mine !== seq)
        return;
      job = got;
      if (modelName === null && job.model) {
        modelName = '';
        api('GET', '/v1/models/' + encodeURIComponent(job.model)).then((m) => {
          modelName = m && m.name ? m.name : '';
          const el = $('#job-model-name');
          if (el && my === gen)
            el.textContent = modelName ? ' (' + modelName + ')' : '';
        }, () => {});
      }
      put(head, jobHead(job, modelName, () => loadJob()));
      if (TERMINAL.has(job.state) && !resultShown) {
        resultShown = true;
        put(res, jobResult(job));
      }
      loadLog();
      if (!TERMINAL.has(job.state))
        next = later(my, loadJob, JOB_POLL_MS);
    }

    async function loadLog() {
      if (logBusy || logDone)
        return;
      logBusy = true;
      try {
        for (;;) {
          const page = await api('GET', '/v1/jobs/' + encodeURIComponent(id) + '/log?after=' + logAfter + '&limit=1000');
          if (my !== gen)
            return;
          const atEnd = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
          for (const l of page.lines || []) {
            const ts = typeof l.ts === 'number' ? fmtTime(new Date(l.ts * 1000).toISOString()).slice(11) : '';
            add(logBox, h('span', { class: 'll lv-' + (/^[a-z]+$/.test(l.level) ? l.level : 'info'), data: { seq: l.seq } },
              h('span', { class: 'muted' }, ts + ' '), h('span', { class: 'lvl' }, (l.level || '').padEnd(5) + ' '), l.line, '\n'));
          }
          /* the page keeps the last LOG_KEEP lines (the API has them all) */
          while (logBox.childElementCount > LOG_KEEP) {
            logBox.firstElementChild.remove();
            logDropped++;
          }
          logAfter = page.next_after;
          if (follow.checked && atEnd)
            logBox.scrollTop = logBox.scrollHeight;
          if (!page.more) {
            logDone = TERMINAL.has(page.state);
            logStatus.textContent = (logBox.childElementCount || 0) + ' lines' +
              (logDropped ? ' (the last ones; ' + logDropped + ' earlier lines are in GET ' + (job && job.log_url ? job.log_url : 'the log endpoint') + ')' : '') +
              (logDone ? '' : ', following');
            break;
          }
        }
      } catch (e) {
        if (my === gen)
          logStatus.textContent = 'cannot read the log: ' + e.message;
      } finally {
        logBusy = false;
      }
      /* the job may have ended while we read: one more round picks up its last lines */
      if (!logDone && job && TERMINAL.has(job.state))
        later(my, loadLog, 200);
    }
    loadJob();
  }

  function jobHead(j, modelName, reload) {
    const msg = h('span', { role: 'status', class: 'muted', id: 'job-action-status' });
    const actions = h('div', { class: 'toolbar' });
    if (!TERMINAL.has(j.state))
      add(actions, h('button', {
        type: 'button', id: 'job-cancel', disabled: j.cancel_requested ? true : null,
        onclick: async (ev) => {
          ev.target.disabled = true;
          try {
            const r = await api('POST', '/v1/jobs/' + encodeURIComponent(j.id) + '/cancel');
            msg.textContent = r && r.state === 'canceled' ? 'Canceled.' : 'Cancel requested: the worker stops the job.';
          } catch (e) {
            put(msg, errorBox(e, 'Cannot cancel'));
            ev.target.disabled = false;
          }
          reload();
        },
      }, j.cancel_requested ? 'Cancel requested…' : 'Cancel job'));
    else
      add(actions, h('button', {
        type: 'button', id: 'job-delete', class: 'danger',
        onclick: async () => {
          if (!window.confirm('Delete job ' + j.id + ' with its log and artifacts?'))
            return;
          try {
            await api('DELETE', '/v1/jobs/' + encodeURIComponent(j.id));
            location.hash = '#/jobs';
          } catch (e) {
            put(msg, errorBox(e, 'Cannot delete'));
          }
        },
      }, 'Delete job'));
    add(actions, msg);
    const name = jobName(j);
    const out = [
      dl([
        name ? ['Name', h('dd', { id: 'job-name' }, name)] : null,
        ['State', h('dd', { id: 'job-state', data: { state: j.state } }, badge(j.state), j.cancel_requested && !TERMINAL.has(j.state) ? ' (cancel requested)' : '')],
        ['Progress', h('dd', { id: 'job-progress' }, progressBar(j.progress, 'job progress'), ' ', h('span', { class: 'muted' }, j.progress_message || ''))],
        ['Model', h('dd', null, j.model ? [h('span', { class: 'mono' }, j.model), h('span', { id: 'job-model-name' }, modelName ? ' (' + modelName + ')' : '')] : '(deleted)')],
        ['Passes', h('dd', { id: 'job-passes' }, passTypes(j).join(', ') || '—')],
        ['Attempts', h('dd', null, (j.attempts || 0) + ' of ' + (j.max_attempts || '?'))],
        ['Created', h('dd', null, fmtTime(j.created_at))],
        ['Started', h('dd', null, fmtTime(j.started_at))],
        ['Finished', h('dd', null, fmtTime(j.finished_at))],
        ['Run time', h('dd', null, j.started_at ? fmtDuration(j.started_at, j.finished_at) : '—')],
        j.worker ? ['Worker', h('dd', null, j.worker)] : null,
      ]),
      actions,
    ];
    if (j.error) {
      const err = { code: j.error.code, message: j.error.message || '', details: j.error.details || {} };
      out.push(h('div', { id: 'job-error' }, errorBox(err, 'The job ' + j.state)));
    }
    return out;
  }

  function jobResult(j) {
    const out = [];
    const r = j.result;
    if (r && typeof r === 'object') {
      out.push(metricsView(r));
      out.push(searchView(j, r));
    }
    out.push(artifactsView(j.artifacts || []));
    out.push(h('section', { 'aria-labelledby': 'wf-h' },
      h('h2', { id: 'wf-h' }, 'Workflow'),
      h('pre', { class: 'json', id: 'job-workflow' }, JSON.stringify(j.workflow, null, 2))));
    return out;
  }

  function metricsView(r) {
    const s = r.size || {};
    const acc = r.accuracy || {};
    const sec = h('section', { id: 'metrics', 'aria-labelledby': 'metrics-h' }, h('h2', { id: 'metrics-h' }, 'Result against the float model'));
    add(sec, h('h3', null, 'Size'), dl([
      ['Float model', fig('dd', 'size.float_bytes', s.float_bytes, fmtBytes(s.float_bytes))],
      ['Quantized model', fig('dd', 'size.quantized_bytes', s.quantized_bytes, fmtBytes(s.quantized_bytes))],
      ['Ratio', fig('dd', 'size.ratio', s.ratio, typeof s.ratio === 'number' ? s.ratio.toFixed(3) + ' (' + (s.ratio * 100).toFixed(1) + ' % of the float size)' : '—')],
      ['Quantized nodes', fig('dd', 'quantized_nodes_total', r.quantized_nodes_total,
        fmtInt(r.quantized_nodes_total) + (r.quantized_nodes && Object.keys(r.quantized_nodes).length ? ': ' +
          Object.entries(r.quantized_nodes).map(([op, n]) => op + ' ' + n).join(', ') : ''))],
      typeof r.seconds === 'number' ? ['Run time', fig('dd', 'seconds', r.seconds, r.seconds.toFixed(2) + ' s')] : null,
    ]));

    /* accuracy / fidelity */
    add(sec, h('h3', null, 'Accuracy vs the float model'));
    const inp = acc.inputs || {};
    let on = '—';
    if (inp.data_config !== undefined)
      on = 'held-out data config ' + inp.data_config + ' (' + fmtInt(inp.samples) + ' samples, ' + fmtInt(inp.batches) + ' batches)';
    else if (inp.seed !== undefined)
      on = 'seeded random inputs (seed ' + inp.seed + (inp.shapes ? '; ' + Object.entries(inp.shapes).map(([k, v]) => k + ' ' + JSON.stringify(v)).join(', ') : '') + ')';
    add(sec, dl([
      ['Status', fig('dd', 'accuracy.status', acc.status, (acc.status || '—') + (acc.reason ? ': ' + acc.reason : ''))],
      ['Measured on', h('dd', null, on)],
      acc.min_cosine !== undefined ? ['Min cosine', fig('dd', 'accuracy.min_cosine', acc.min_cosine, fmtFloat(acc.min_cosine, 6))] : null,
      acc.min_top1_agreement !== undefined ? ['Min top-1 agreement', fig('dd', 'accuracy.min_top1_agreement', acc.min_top1_agreement, fmtFloat(acc.min_top1_agreement, 4))] : null,
    ]));
    const outs = Array.isArray(acc.outputs) ? acc.outputs : [];
    if (outs.length) {
      const cols = [['cosine', 6], ['min_batch_cosine', 6], ['max_abs_error', 6], ['mean_abs_error', 6], ['top1_agreement', 4], ['elements', 0]];
      add(sec, table(['Output', 'Cosine', 'Min batch cosine', 'Max abs error', 'Mean abs error', 'Top-1 agreement', 'Elements'],
        outs.map((o, i) => h('tr', null, h('td', null, o.name, o.comparable === false ? h('span', { class: 'muted' }, ' not comparable: ' + (o.reason || '')) : null),
          cols.map(([k, d]) => fig('td', 'accuracy.outputs.' + i + '.' + k, o[k], o[k] === undefined ? '—' : d ? fmtFloat(o[k], d) : fmtInt(o[k]))))),
        { id: 'accuracy-outputs' }));
    }
    const snr = Array.isArray(r.lowest_snr_activations) ? r.lowest_snr_activations : [];
    if (snr.length) {
      add(sec, h('h3', null, 'Lowest-SNR activations'),
        h('p', { class: 'muted' }, 'The activations furthest from the float model: candidates for nodes_to_exclude.'),
        table(['Tensor', 'Node', 'SNR (dB)'], snr.map((a, i) => h('tr', null, h('td', null, a.tensor), h('td', null, a.node),
          fig('td', 'lowest_snr_activations.' + i + '.snr_db', a.snr_db, fmtFloat(a.snr_db, 2))))));
    }

    /* passes */
    const passes = Array.isArray(r.passes) ? r.passes : [];
    if (passes.length) {
      add(sec, h('h3', null, 'Passes'), table(['Pass', 'Type', 'Format', 'Weights', 'Activations', 'Quantized nodes', 'Skipped', 'Calibration', 'Seconds'],
        passes.map((p, i) => {
          const st = p.stats || {};
          const qn = st.quantized_nodes || {};
          const cal = st.calibration;
          return h('tr', null,
            h('td', null, p.name), h('td', null, p.type),
            h('td', null, st.quant_format || '—'), h('td', null, st.weight_type || '—'), h('td', null, st.activation_type || '—'),
            fig('td', 'passes.' + i + '.stats.quantized_nodes', qn, Object.entries(qn).map(([op, n]) => op + ' ' + n).join(', ') || '0'),
            h('td', null, Array.isArray(st.skipped_nodes) ? String(st.skipped_nodes.length) : '—'),
            h('td', null, cal ? cal.method + ', ' + fmtInt(cal.tensors) + ' tensors, ' + fmtInt(cal.batches) + ' batches' +
              (cal.samples !== undefined ? ', ' + fmtInt(cal.samples) + ' samples' : '') : '—'),
            fig('td', 'passes.' + i + '.seconds', p.seconds, fmtFloat(p.seconds, 3)));
        }), { id: 'passes-table' }));
      for (const p of passes) {
        const st = p.stats || {};
        add(sec, h('details', { class: 'pass-details' },
          h('summary', null, 'Pass ', h('code', null, p.name), ': parameters and statistics'),
          h('h4', null, 'Resolved parameters'), h('pre', { class: 'json' }, JSON.stringify(p.config, null, 2)),
          Array.isArray(st.skipped_nodes) && st.skipped_nodes.length ?
            [h('h4', null, 'Skipped nodes'), table(['Node', 'Op', 'Reason'], st.skipped_nodes.map((n) => h('tr', null, h('td', null, n.node), h('td', null, n.op), h('td', null, n.reason))))] : null,
          h('h4', null, 'Statistics'), h('pre', { class: 'json' }, JSON.stringify(st, null, 2))));
      }
    }

    /* ignored keys */
    const ign = Array.isArray(r.ignored) ? r.ignored : [];
    add(sec, h('h3', null, 'Ignored workflow keys'), ign.length ?
      table(['Key', 'Why'], ign.map((x) => h('tr', null, h('td', null, h('code', null, x.field)), h('td', null, x.why))), { id: 'ignored-table' }) :
      h('p', { class: 'muted', id: 'ignored-none' }, 'None: every key of the workflow was acted on.'));
    return sec;
  }

  /* The hyperparameter search: metrics.json "search" ({trials, best, pareto}) when the job
   * ran one. A table of the trials (the pareto set and the best one marked) and an SVG
   * scatter of the first two objectives. */
  function searchView(j, r) {
    const s = r.search;
    const sec = h('section', { id: 'search', 'aria-labelledby': 'search-h' }, h('h2', { id: 'search-h' }, 'Search trials'));
    if (!s || typeof s !== 'object' || !Array.isArray(s.trials)) {
      add(sec, h('p', { class: 'muted', id: 'search-none' }, 'This job ran no search: each pass ran once with its values.'));
      return sec;
    }
    const trials = s.trials;
    /* a trial's number: "n" (quantd's trial loop), else id / trial / index, else its position */
    const key = (t, i) => {
      for (const f of ['n', 'id', 'trial', 'index'])
        if (t && (typeof t[f] === 'number' || typeof t[f] === 'string'))
          return t[f];
      return i;
    };
    const pareto = new Set((Array.isArray(s.pareto) ? s.pareto : []).map((p) => (p && typeof p === 'object' ? key(p) : p)).map(String));
    const best = s.best && typeof s.best === 'object' ? String(key(s.best)) : s.best !== undefined && s.best !== null ? String(s.best) : null;
    /* columns: scalar fields, and one level into objects (params.x, metrics.y) */
    const cols = [];
    const seen = new Set();
    for (const t of trials)
      for (const [k, v] of Object.entries(t || {})) {
        if (v === null)
          continue;            /* e.g. no values for a failed trial: no column of its own */
        if (typeof v === 'object' && !Array.isArray(v)) {
          for (const k2 of Object.keys(v))
            if (!seen.has(k + '.' + k2)) { seen.add(k + '.' + k2); cols.push([k, k2]); }
        } else if (!seen.has(k) && k !== 'pareto') {
          seen.add(k);
          cols.push([k]);
        }
      }
    const get = (t, c) => (c.length === 1 ? t[c[0]] : t[c[0]] && t[c[0]][c[1]]);
    const front = (t, i) => pareto.has(String(key(t, i))) || (t && t.pareto === true);
    add(sec, h('p', { id: 'search-summary' }, fmtInt(trials.length) + ' trials; ', h('span', { class: 'pareto-mark' }, '◆'),
      ' pareto set (' + trials.filter(front).length + ')', best !== null ? ['; ', h('strong', null, 'best'), ': trial ' + best] : '',
      typeof s.stopped === 'string' ? '; stopped: ' + s.stopped : ''));
    const st = s.strategy && typeof s.strategy === 'object' ? s.strategy : null;
    const objs = Array.isArray(s.objectives) ? s.objectives.filter((o) => o && typeof o.key === 'string') : [];
    if (st || objs.length)
      add(sec, dl([
        st ? ['Strategy', h('dd', { id: 'search-strategy' }, Object.entries(st).map(([k, v]) => k + ' ' + fmtAny(v)).join(', '))] : null,
        objs.length ? ['Objectives', h('dd', { id: 'search-objectives' }, objs.map((o) => o.key + (o.higher_is_better === true ? ' (higher is better' : o.higher_is_better === false ? ' (lower is better' : ' (') +
          (o.priority !== undefined ? ', priority ' + o.priority : '') + (o.goal && typeof o.goal === 'object' ? ', goal ' + fmtAny(o.goal.type) + ' ' + (typeof o.goal.value === 'number' ? String(o.goal.value) : fmtAny(o.goal.value)) : '') + ')').join('; '))] : null,
      ]));
    add(sec, table(['', ...cols.map((c) => c.join('.'))], trials.map((t, i) => {
      const k = String(key(t, i));
      const onFront = front(t, i);
      return h('tr', { class: (onFront ? 'pareto' : '') + (k === best ? ' best' : ''), data: { trial: k, pareto: onFront } },
        h('td', { class: 'nowrap' }, onFront ? h('span', { class: 'pareto-mark', title: 'on the pareto front' }, '◆') : '', k === best ? h('strong', null, ' best') : ''),
        cols.map((c) => h('td', null, fmtAny(get(t, c)))));
    }), { id: 'trials-table' }));
    /* scatter of the first two objectives (their order is the ranking's), else of the first
     * two numeric measured values; failed trials (no number) are left out of the plot */
    const measured = cols.filter((c) => (c[0] === 'values' || c[0] === 'metrics') && c.length === 2 && trials.some((t) => typeof get(t, c) === 'number'));
    const byObj = objs.map((o) => measured.find((c) => c[1] === o.key)).filter(Boolean);
    const axes = byObj.length >= 2 ? byObj : measured;
    if (axes.length >= 2) {
      const pts = trials.map((t, i) => [t, i]).filter(([t]) => typeof get(t, axes[0]) === 'number' && typeof get(t, axes[1]) === 'number');
      add(sec, paretoPlot(pts.map(([t]) => t), axes[0], axes[1], get, (t, i) => front(t, pts[i][1]), pts.map(([t, i]) => String(key(t, i)))));
    }
    return sec;
  }

  function paretoPlot(trials, cx, cy, get, onFront, names) {
    const NS = 'http://www.w3.org/2000/svg';
    const W = 440, H = 290, M = 58, PAD = 12;   /* margin for the labels, padding inside the axes */
    const xs = trials.map((t) => get(t, cx)), ys = trials.map((t) => get(t, cy));
    const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    const sx = (x) => M + PAD + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * (W - 2 * M - 2 * PAD);
    const sy = (y) => H - M - PAD - (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5) * (H - 2 * M - 2 * PAD);
    const tick = (v) => String(Number(v.toPrecision(4)));
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    svg.setAttribute('class', 'plot');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', 'trials: ' + cx.join('.') + ' against ' + cy.join('.'));
    const el = (tag, attrs, text) => {
      const e = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs))
        e.setAttribute(k, String(v));
      if (text !== undefined)
        e.textContent = text;
      svg.append(e);
      return e;
    };
    el('line', { x1: M, y1: H - M, x2: W - M, y2: H - M, class: 'axis' });
    el('line', { x1: M, y1: M, x2: M, y2: H - M, class: 'axis' });
    el('text', { x: W / 2, y: H - 8, 'text-anchor': 'middle' }, cx.join('.'));
    el('text', { x: 14, y: H / 2, 'text-anchor': 'middle', transform: 'rotate(-90 14 ' + H / 2 + ')' }, cy.join('.'));
    el('text', { x: sx(x0), y: H - M + 14, 'text-anchor': 'middle', class: 'tick' }, tick(x0));
    el('text', { x: sx(x1), y: H - M + 14, 'text-anchor': 'middle', class: 'tick' }, tick(x1));
    el('text', { x: M - 4, y: sy(y0) + 4, 'text-anchor': 'end', class: 'tick' }, tick(y0));
    el('text', { x: M - 4, y: sy(y1) + 4, 'text-anchor': 'end', class: 'tick' }, tick(y1));
    trials.forEach((t, i) => {
      const c = el('circle', { cx: sx(xs[i]), cy: sy(ys[i]), r: onFront(t, i) ? 6 : 4, class: onFront(t, i) ? 'pt front' : 'pt' });
      const title = document.createElementNS(NS, 'title');
      title.textContent = 'trial ' + names[i] + ': ' + fmtAny(xs[i]) + ', ' + fmtAny(ys[i]);
      c.append(title);
    });
    return h('figure', null, svg, h('figcaption', null, 'Trials (larger dots: the pareto front).'));
  }

  function artifactUrl(a) {
    return typeof a.url === 'string' && /^\/v1\/artifacts\/[A-Za-z0-9_.-]+$/.test(a.url) ? rel(a.url) : 'v1/artifacts/' + encodeURIComponent(a.id);
  }

  /* With a token a plain link cannot send the header: fetch the bytes and hand them to the
   * browser as a blob download instead. */
  async function downloadWithToken(ev, a) {
    if (!token())
      return;                       /* the plain link works */
    ev.preventDefault();
    const link = ev.currentTarget;
    const note = link.parentElement.querySelector('.dl-note');
    try {
      if (note)
        note.textContent = ' downloading…';
      const r = await fetch(artifactUrl(a), { headers: { Authorization: 'Bearer ' + token() } });
      if (!r.ok) {
        const data = parseBody(await r.text());
        if (r.status === 401)
          askToken(data && data.error ? data.error.message : 'token refused');
        throw new ApiError(r.status, data, '');
      }
      const blob = await r.blob();
      const u = URL.createObjectURL(blob);
      const tmp = h('a', { href: u, download: a.name || a.id, hidden: true });
      document.body.append(tmp);
      tmp.click();
      tmp.remove();
      setTimeout(() => URL.revokeObjectURL(u), 60000);
      if (note)
        note.textContent = '';
    } catch (e) {
      if (note)
        note.textContent = ' download failed: ' + e.message;
    }
  }

  function artifactsView(arts) {
    return h('section', { id: 'artifacts', 'aria-labelledby': 'art-h' }, h('h2', { id: 'art-h' }, 'Artifacts'),
      arts.length ? table(['Name', 'Kind', 'Size', 'sha256', ''], arts.map((a) => h('tr', { data: { artifact: a.id } },
        h('td', null, a.name || a.id), h('td', null, a.kind), h('td', { class: 'nowrap' }, fmtBytes(a.size)),
        h('td', { class: 'mono', title: a.sha256 }, String(a.sha256 || '').slice(0, 16) + '…'),
        h('td', null, h('a', { href: artifactUrl(a), download: a.name || a.id, class: 'download', onclick: (ev) => downloadWithToken(ev, a) }, 'Download'),
          h('span', { class: 'dl-note muted', role: 'status' })))), { id: 'artifacts-table' }) :
        h('p', { class: 'muted' }, 'No artifacts.'));
  }

  /* ---- new job: uploads and the workflow ---- */

  const TEMPLATES = {
    dynamic: () => ({
      passes: {
        quantize: { type: 'OnnxDynamicQuantization', precision: 'int8', per_channel: true, quant_format: 'QOperator' },
      },
    }),
    static: (ds) => ({
      passes: {
        quantize: { type: 'OnnxStaticQuantization', data_config: 'calib', quant_format: 'QDQ', per_channel: true, calibrate_method: 'MinMax' },
      },
      data_configs: { calib: { dataset: ds || 'dst_… (upload a calibration .npz, then pick it above)' } },
    }),
  };

  function newView() {
    const my = gen;
    const v = view();
    document.title = 'New job · quantd';
    const modelSel = h('select', { id: 'job-model', required: true });
    const dsSel = h('select', { id: 'job-dataset' });
    const dcName = h('input', { id: 'job-dc', type: 'text', value: 'calib', size: '10', spellcheck: 'false' });
    const tmplSel = h('select', { id: 'job-template' },
      h('option', { value: 'dynamic' }, 'OnnxDynamicQuantization (no data needed)'),
      h('option', { value: 'static' }, 'OnnxStaticQuantization (calibration dataset)'));
    const nameIn = h('input', { id: 'job-name-input', type: 'text', placeholder: 'optional: shown in the jobs list', maxlength: '200' });
    const wfText = h('textarea', { id: 'job-workflow-input', rows: '14', spellcheck: 'false', 'aria-describedby': 'wf-help' });
    wfText.value = JSON.stringify(TEMPLATES.dynamic(), null, 2);
    let edited = false;
    wfText.addEventListener('input', () => { edited = true; });
    const submitOut = h('div', { id: 'job-submit-out', 'aria-live': 'polite' });
    const modelsBox = h('div', { id: 'models-list' });
    const dsBox = h('div', { id: 'datasets-list' });

    function applyTemplate(force) {
      if (edited && !force && !window.confirm('Replace the edited workflow with the template?'))
        return;
      wfText.value = JSON.stringify(TEMPLATES[tmplSel.value](dsSel.value), null, 2);
      edited = false;
    }
    tmplSel.addEventListener('change', () => applyTemplate(false));
    dsSel.addEventListener('change', () => {
      /* put the chosen dataset into the workflow's data config */
      let wf;
      try { wf = JSON.parse(wfText.value); } catch (e) { return; }
      if (!dsSel.value || !wf || typeof wf !== 'object')
        return;
      bindDataset(wf, dcName.value.trim() || 'calib', dsSel.value);
      wfText.value = JSON.stringify(wf, null, 2);
    });

    async function loadLists(selectModel, selectDs) {
      try {
        const [ms, ds] = await Promise.all([api('GET', '/v1/models?limit=200'), api('GET', '/v1/datasets?limit=200')]);
        if (my !== gen)
          return;
        const keepM = selectModel || modelSel.value, keepD = selectDs || dsSel.value;
        put(modelSel, h('option', { value: '' }, ms.items.length ? '— pick a model —' : '— upload a model first —'),
          ms.items.map((m) => h('option', { value: m.id }, (m.name || '(no name)') + ' — ' + m.id + ' — ' + fmtBytes(m.size))));
        modelSel.value = ms.items.some((m) => m.id === keepM) ? keepM : (ms.items[0] ? ms.items[0].id : '');
        put(dsSel, h('option', { value: '' }, '(none)'),
          ds.items.map((d) => h('option', { value: d.id }, (d.name || '(no name)') + ' — ' + d.id + ' — ' + (d.samples === null ? 'mixed' : fmtInt(d.samples)) + ' samples')));
        dsSel.value = ds.items.some((d) => d.id === keepD) ? keepD : '';
        put(modelsBox, ms.items.length ? table(['Name', 'Id', 'Size', 'Inputs', 'Opsets', 'Uploaded'], ms.items.map((m) => h('tr', null,
          h('td', null, m.name || '—'), h('td', { class: 'mono' }, m.id), h('td', { class: 'nowrap' }, fmtBytes(m.size)),
          h('td', null, (m.inputs || []).map((t) => t.name + ' ' + t.dtype + JSON.stringify(t.shape)).join(', ')),
          h('td', null, Object.entries(m.opsets || {}).map(([k, n]) => k + ' ' + n).join(', ')), h('td', { class: 'nowrap' }, fmtTime(m.created_at)))),
        { id: 'models-table' }) : h('p', { class: 'muted' }, 'No models yet.'));
        put(dsBox, ds.items.length ? table(['Name', 'Id', 'Format', 'Samples', 'Arrays', 'Uploaded'], ds.items.map((d) => h('tr', null,
          h('td', null, d.name || '—'), h('td', { class: 'mono' }, d.id), h('td', null, d.format), h('td', null, d.samples === null ? 'mixed' : fmtInt(d.samples)),
          h('td', null, (d.arrays || []).map((a) => a.name + ' ' + a.dtype + JSON.stringify(a.shape)).join(', ')), h('td', { class: 'nowrap' }, fmtTime(d.created_at)))),
        { id: 'datasets-table' }) : h('p', { class: 'muted' }, 'No datasets yet.'));
      } catch (e) {
        if (my === gen)
          put(modelsBox, errorBox(e, 'Cannot list models and datasets'));
      }
    }

    function uploadForm(kind, path, accept, onDone) {
      const id = 'up-' + kind;
      const file = h('input', { type: 'file', id: id + '-file', accept, required: true });
      const name = h('input', { type: 'text', id: id + '-name', placeholder: 'the file name', maxlength: '200' });
      const bar = h('progress', { max: '1', value: '0', hidden: true, 'aria-label': kind + ' upload progress' });
      const out = h('div', { id: id + '-out', 'aria-live': 'polite' });
      const btn = h('button', { type: 'submit', id: id + '-submit' }, 'Upload ' + kind);
      const form = h('form', { class: 'card', id: id + '-form' },
        h('h2', null, 'Upload a ' + kind),
        h('div', { class: 'field' }, h('label', { for: id + '-file' }, kind === 'model' ? 'ONNX file' : 'Dataset (.npz, or a tar of test_data_set_* folders)'), file),
        h('div', { class: 'field' }, h('label', { for: id + '-name' }, 'Name'), name),
        h('div', { class: 'toolbar' }, btn, bar), out);
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const f = file.files[0];
        if (!f)
          return;
        btn.disabled = true;
        bar.hidden = false;
        bar.value = 0;
        put(out, h('p', { class: 'muted' }, 'Uploading ' + f.name + ' (' + fmtBytes(f.size) + ')…'));
        try {
          const nm = name.value.trim() || f.name;
          const r = await uploadFile(path + '?name=' + encodeURIComponent(nm), f, (p) => { bar.value = p; });
          const b = r.body || {};
          put(out, h('p', { class: 'ok' }, r.status === 201 ? 'Uploaded ' : 'Already stored: ', kind + ' ', h('strong', null, b.name || nm), ' as ',
            h('code', { class: 'uploaded-id' }, b.id), ' (' + fmtBytes(b.size) + ')'));
          onDone(b);
        } catch (e) {
          put(out, errorBox(e, 'Upload refused'));
        } finally {
          btn.disabled = false;
          bar.hidden = true;
        }
      });
      return form;
    }

    const passHelper = h('div', { id: 'pass-helper' });
    const submitForm = h('form', { class: 'card', id: 'job-form' },
      h('h2', null, 'Submit a job'),
      h('div', { class: 'field' }, h('label', { for: 'job-model' }, 'Model'), modelSel),
      h('div', { class: 'field' }, h('label', { for: 'job-name-input' }, 'Job name'), nameIn),
      h('div', { class: 'field' }, h('label', { for: 'job-template' }, 'Template'), tmplSel,
        h('button', { type: 'button', onclick: () => applyTemplate(false) }, 'Use template')),
      h('div', { class: 'field' }, h('label', { for: 'job-dataset' }, 'Dataset'), dsSel,
        h('label', { for: 'job-dc', class: 'inline' }, 'for data config'), dcName),
      passHelper,
      h('div', { class: 'field col' }, h('label', { for: 'job-workflow-input' }, 'Workflow (JSON)'), wfText,
        h('p', { id: 'wf-help', class: 'muted' }, 'Olive-style: passes (name → {type, parameters}), data_configs, evaluator, search_strategy. ',
          'The parameters of every pass type are on the ', h('a', { href: '#/passes' }, 'Passes'), ' page.')),
      h('div', { class: 'toolbar' }, h('button', { type: 'submit', id: 'job-submit' }, 'Submit job')),
      submitOut);
    submitForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      put(submitOut);
      let wf;
      try {
        wf = JSON.parse(wfText.value);
      } catch (e) {
        put(submitOut, errorBox({ code: 'PARSE', message: 'the workflow is not valid JSON: ' + e.message }, 'Not submitted'));
        return;
      }
      if (!wf || typeof wf !== 'object' || Array.isArray(wf)) {
        put(submitOut, errorBox({ code: 'INVAL', message: 'the workflow must be a JSON object' }, 'Not submitted'));
        return;
      }
      if (!modelSel.value) {
        put(submitOut, errorBox({ code: 'INVAL', message: 'pick a model (upload one first)', details: { field: 'model' } }, 'Not submitted'));
        return;
      }
      if (nameIn.value.trim())
        wf.name = nameIn.value.trim();
      wf.model = modelSel.value;
      const btn = $('#job-submit');
      btn.disabled = true;
      try {
        const j = await api('POST', '/v1/jobs', wf);
        location.hash = '#/jobs/' + encodeURIComponent(j.id);
      } catch (e) {
        put(submitOut, errorBox(e, 'The server refused the job'));
      } finally {
        btn.disabled = false;
      }
    });

    add(v, h('h1', null, 'New job'),
      h('div', { class: 'grid2' },
        uploadForm('model', '/v1/models', '.onnx', (b) => loadLists(b.id, null)),
        uploadForm('dataset', '/v1/datasets', '.npz,.tar', (b) => loadLists(null, b.id))),
      submitForm,
      h('section', { 'aria-labelledby': 'stored-h' }, h('h2', { id: 'stored-h' }, 'Stored models'), modelsBox,
        h('h2', null, 'Stored datasets'), dsBox));
    loadLists();
    api('GET', '/v1/passes').then((cat) => {
      if (my === gen)
        put(passHelper, passBuilder(cat, wfText, () => { edited = true; }));
    }, () => {});
  }

  function bindDataset(wf, name, id) {
    if (Array.isArray(wf.data_configs)) {
      const c = wf.data_configs.find((x) => x && x.name === name);
      if (c)
        c.dataset = id;
      else
        wf.data_configs.push({ name, dataset: id });
      return;
    }
    if (!wf.data_configs || typeof wf.data_configs !== 'object')
      wf.data_configs = {};
    const c = wf.data_configs[name];
    wf.data_configs[name] = Object.assign(c && typeof c === 'object' ? c : {}, { dataset: id });
  }

  /* A form for one pass from GET /v1/passes: its parameters with their defaults; values
   * left at the default are not written into the workflow. */
  function passBuilder(cat, wfText, onEdit) {
    const passes = (cat.passes || []).filter((p) => p.implemented);
    const typeSel = h('select', { id: 'pb-type' }, passes.map((p) => h('option', { value: p.type }, p.type)));
    const nameIn = h('input', { id: 'pb-name', type: 'text', value: 'quantize', size: '12', spellcheck: 'false' });
    const params = h('div', { class: 'pb-params' });
    const out = h('span', { role: 'status', class: 'muted' });
    let inputs = [];
    function draw() {
      const p = passes.find((x) => x.type === typeSel.value);
      inputs = [];
      put(params);
      if (!p)
        return;
      const rows = p.parameters.map((prm, i) => {
        const id = 'pb-p-' + i;
        let inp;
        if (prm.type === 'bool')
          inp = h('select', { id }, h('option', { value: '' }, 'default (' + fmtAny(prm.default) + ')'), h('option', { value: 'true' }, 'true'), h('option', { value: 'false' }, 'false'));
        else if (prm.type === 'enum' && Array.isArray(prm.allowed_values))
          inp = h('select', { id }, h('option', { value: '' }, 'default (' + fmtAny(prm.default) + ')'), prm.allowed_values.map((a) => h('option', { value: a }, a)));
        else
          inp = h('input', { id, type: 'text', placeholder: 'default: ' + fmtAny(prm.default) + (prm.type === 'string' ? '' : ' (JSON)'), spellcheck: 'false' });
        inputs.push([prm, inp]);
        return h('tr', null, h('td', null, h('label', { for: id }, h('code', null, prm.name))), h('td', null, prm.type), h('td', null, inp), h('td', { class: 'desc' }, prm.description));
      });
      params.append(table(['Parameter', 'Type', 'Value', 'Meaning'], rows));
    }
    typeSel.addEventListener('change', draw);
    draw();
    const addBtn = h('button', {
      type: 'button', id: 'pb-add', onclick: () => {
        let wf;
        try { wf = JSON.parse(wfText.value); } catch (e) { out.textContent = 'the workflow below is not valid JSON: ' + e.message; return; }
        if (!wf || typeof wf !== 'object' || Array.isArray(wf))
          wf = {};
        const pass = { type: typeSel.value };
        for (const [prm, inp] of inputs) {
          const raw = inp.value.trim();
          if (raw === '')
            continue;
          if (prm.type === 'bool')
            pass[prm.name] = raw === 'true';
          else if (prm.type === 'enum' || prm.type === 'string')
            pass[prm.name] = raw;
          else {
            try { pass[prm.name] = JSON.parse(raw); } catch (e) { pass[prm.name] = raw; }
          }
        }
        if (!wf.passes || typeof wf.passes !== 'object' || Array.isArray(wf.passes))
          wf.passes = {};
        const nm = nameIn.value.trim() || 'quantize';
        wf.passes[nm] = pass;
        wfText.value = JSON.stringify(wf, null, 2);
        onEdit();
        out.textContent = 'pass ' + nm + ' written into the workflow';
      },
    }, 'Put this pass into the workflow');
    return h('details', { class: 'pb' }, h('summary', null, 'Build a pass from the catalogue'),
      h('div', { class: 'field' }, h('label', { for: 'pb-type' }, 'Pass type'), typeSel, h('label', { for: 'pb-name', class: 'inline' }, 'name'), nameIn),
      params, h('div', { class: 'toolbar' }, addBtn, out));
  }

  /* ---- the pass catalogue ---- */

  async function passesView() {
    const my = gen;
    const v = view();
    document.title = 'Passes · quantd';
    add(v, h('h1', null, 'Passes'), h('p', null, 'Every pass type of ', h('code', null, 'GET /v1/passes'), ' with its parameters; parameter values in a workflow may be a literal, ',
      h('code', null, '"DEFAULT_VALUE"'), ', ', h('code', null, '"SEARCHABLE_VALUES"'), ' or a list of values to search.'));
    let cat;
    try {
      cat = await api('GET', '/v1/passes');
    } catch (e) {
      if (my === gen)
        add(v, errorBox(e, 'Cannot load the pass catalogue'));
      return;
    }
    if (my !== gen)
      return;
    const passes = cat.passes || [];
    add(v, h('nav', { class: 'toc', 'aria-label': 'Pass types' }, passes.map((p) => h('a', { href: '#/passes', data: { target: 'pass-' + p.type }, onclick: (ev) => {
      ev.preventDefault();
      const t = document.getElementById(ev.currentTarget.dataset.target);
      if (t) { t.scrollIntoView(); t.focus(); }
    } }, p.type))));
    for (const p of passes)
      add(v, h('section', { id: 'pass-' + p.type, class: 'pass', tabindex: '-1', data: { pass: p.type } },
        h('h2', null, p.type, ' ', h('span', { class: 'badge ' + (p.implemented ? 'st-succeeded' : 'st-other') }, p.implemented ? 'implemented' : 'not implemented')),
        table(['Parameter', 'Type', 'Default', 'Search values', 'Allowed values', 'Meaning'], p.parameters.map((prm) => h('tr', null,
          h('td', null, h('code', null, prm.name)), h('td', null, prm.type), h('td', null, fmtAny(prm.default)),
          h('td', null, prm.search_values ? JSON.stringify(prm.search_values) : '—'),
          h('td', null, Array.isArray(prm.allowed_values) ? prm.allowed_values.join(', ') : '—'), h('td', { class: 'desc' }, prm.description))))));
    const eo = cat.extra_options || [];
    if (eo.length)
      add(v, h('section', { id: 'extra-options' }, h('h2', null, 'extra_options'),
        h('p', null, 'ONNX Runtime quantizer keys accepted in a pass\'s ', h('code', null, 'extra_options'), '.'),
        table(['Key', 'Type', 'Dynamic pass', 'Meaning'], eo.map((x) => h('tr', null, h('td', null, h('code', null, x.key)), h('td', null, x.type),
          h('td', null, x.dynamic ? 'yes' : 'static only'), h('td', { class: 'desc' }, x.description))))));
  }

  /* ---- start ---- */

  function start() {
    initToken();
    fetch('healthz', { cache: 'no-store' }).then((r) => r.json()).then((hz) => {
      $('#server-version').textContent = 'quantd ' + hz.version;
    }, () => { $('#server-version').textContent = 'quantd (server not answering)'; });
    window.addEventListener('hashchange', route);
    route();
  }
  start();
}());
