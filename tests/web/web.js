// The web page in headless Chromium (playwright-core over Debian's /usr/bin/chromium),
// against the daemons tests/web/web.py started. Every check compares what the page shows
// with what the API answers. Prints "browser: N passed, N failed".
//   node tests/web/web.js CONFIG.json   (written by web.py: urls, token, input files, tmp dir)
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { chromium } = require(cfg.playwright);
const U = cfg.url;            // open daemon (hang@'hangme' fault injection)
const UT = cfg.token_url;     // daemon with --token

let passed = 0, failed = 0;
function check(cond, name, detail) {
  if (cond) {
    passed++;
    console.log('ok   ' + name);
  } else {
    failed++;
    let d = detail === undefined ? '' : typeof detail === 'string' ? detail : JSON.stringify(detail);
    console.log('FAIL ' + name + (d ? ': ' + d.slice(0, 1500) : ''));
  }
  return cond;
}

async function apiGet(base, p, token) {
  const r = await fetch(base + p.replace(/^\//, ''), { headers: token ? { Authorization: 'Bearer ' + token } : {} });
  const buf = Buffer.from(await r.arrayBuffer());
  return { status: r.status, buf, json: () => JSON.parse(buf.toString('utf8')) };
}
async function apiJson(base, p, token) { return (await apiGet(base, p, token)).json(); }
async function apiPost(base, p, body, token) {
  const h = { 'Content-Type': 'application/json' };
  if (token)
    h.Authorization = 'Bearer ' + token;
  const r = await fetch(base + p.replace(/^\//, ''), { method: 'POST', headers: h, body: JSON.stringify(body) });
  return { status: r.status, json: await r.json() };
}
const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');
function getPath(obj, key) {
  return key.split('.').reduce((o, k) => (o === undefined || o === null ? undefined : o[k]), obj);
}
async function waitFor(fn, ms, step) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v || Date.now() > end)
      return v;
    await new Promise((r) => setTimeout(r, step || 100));
  }
}

const XSS_NAME = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">job & "quotes"';
const XSS_MODEL = '<b>bold</b><img src=x onerror="window.__xss=3">.onnx';

async function main() {
  const browser = await chromium.launch({ executablePath: cfg.chromium, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'], headless: true });
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 900 }, acceptDownloads: true });
  const page = await ctx.newPage();
  page.setDefaultTimeout(20000);
  const consoleErrors = [], pageErrors = [], jobPosts = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('request', (r) => { if (r.method() === 'POST' && /\/v1\/jobs$/.test(r.url())) jobPosts.push(r.postData()); });

  // ---- 1. the page loads, empty list ----
  await page.goto(U);
  await page.waitForSelector('#jobs-body .empty');
  check((await page.textContent('#jobs-body')).includes('No jobs yet'), 'load: the empty jobs list says there are no jobs');
  check(consoleErrors.length === 0 && pageErrors.length === 0, 'load: no console errors, no script errors', { consoleErrors, pageErrors });
  check(await page.isHidden('#token-panel'), 'load: no token prompt on a server without a token');
  check(/^quantd \d/.test(await page.textContent('#server-version')), 'load: the footer shows the server version from /healthz');

  // ---- 2. uploads through the form ----
  await page.click('a[data-nav=new]');
  await page.waitForSelector('#up-model-form');
  await page.setInputFiles('#up-model-file', cfg.inputs.model);
  await page.fill('#up-model-name', XSS_MODEL);
  await page.click('#up-model-submit');
  await page.waitForSelector('#up-model-out .uploaded-id');
  const modelId = (await page.textContent('#up-model-out .uploaded-id')).trim();
  const mbytes = fs.readFileSync(cfg.inputs.model);
  const ml = await apiJson(U, '/v1/models?sha256=' + sha256(mbytes));
  check(ml.items.length === 1 && ml.items[0].id === modelId && ml.items[0].size === mbytes.length && ml.items[0].name === XSS_MODEL,
    'upload: the model uploaded through the page is on the server (id, size, sha256, name)', { modelId, items: ml.items });
  check((await page.textContent('#up-model-out')).includes('Uploaded'), 'upload: the page says the model is new (201)');
  await page.waitForFunction((id) => document.querySelector('#job-model').value === id, modelId);
  check(true, 'upload: the new model is picked in the job form');
  const optText = await page.$eval('#job-model', (s) => s.options[s.selectedIndex].textContent);
  check(optText.includes(XSS_MODEL), 'upload: a model name with markup shows as text in the picker', optText);
  // the same bytes again: 200, "already stored"
  await page.setInputFiles('#up-model-file', cfg.inputs.model);
  await page.fill('#up-model-name', '');
  await page.click('#up-model-submit');
  await page.waitForFunction(() => /Already stored/.test(document.querySelector('#up-model-out').textContent));
  check((await apiJson(U, '/v1/models')).items.length === 1, 'upload: the second upload of the same bytes made no new model');

  await page.setInputFiles('#up-dataset-file', cfg.inputs.calib);
  await page.click('#up-dataset-submit');
  await page.waitForSelector('#up-dataset-out .uploaded-id');
  const dsId = (await page.textContent('#up-dataset-out .uploaded-id')).trim();
  const dl = await apiJson(U, '/v1/datasets?sha256=' + sha256(fs.readFileSync(cfg.inputs.calib)));
  check(dl.items.length === 1 && dl.items[0].id === dsId && dl.items[0].samples === 16,
    'upload: the dataset uploaded through the page is on the server (16 samples)', { dsId, items: dl.items });
  await page.waitForFunction((id) => document.querySelector('#job-dataset').value === id, dsId);
  const dsRow = await page.textContent('#datasets-table');
  check(dsRow.includes(dsId) && dsRow.includes('calib.npz') && dsRow.includes('x float32[16,64]'), 'upload: the stored datasets table lists it with its arrays', dsRow);

  // ---- 3. a dynamic job through the form ----
  const tmpl = JSON.parse(await page.inputValue('#job-workflow-input'));
  check(tmpl.passes && Object.values(tmpl.passes)[0].type === 'OnnxDynamicQuantization', 'submit: the workflow is prefilled with an OnnxDynamicQuantization example', tmpl);
  await page.fill('#job-name-input', XSS_NAME);
  await page.click('#job-submit');
  await page.waitForURL(/#\/jobs\/job_[0-9a-f]+$/);
  const jobId = decodeURIComponent(page.url().split('/').pop());
  check(/^job_[0-9a-f]{16}$/.test(jobId), 'submit: the page goes to the new job', jobId);
  await page.waitForSelector('#job-state[data-state=succeeded]', { timeout: 60000 });
  check(true, 'job: the detail page follows the job to succeeded');
  const job = await apiJson(U, '/v1/jobs/' + jobId);
  check(job.state === 'succeeded' && job.model === modelId && job.workflow.name === XSS_NAME, 'job: the API has the job as submitted (model, name)', job.workflow);
  await page.waitForSelector('#metrics');

  // escaping: the name and the model name are text
  check((await page.textContent('#job-name')) === XSS_NAME, 'escape: a job name with <script> and <img onerror> is shown as its text');
  check(await page.evaluate(() => window.__xss === undefined), 'escape: nothing from the server ran as script');
  check(await page.evaluate(() => document.querySelectorAll('#view script, #view img, #view b').length === 0), 'escape: no element came out of server strings');
  check((await page.textContent('#job-model-name')).includes(XSS_MODEL), 'escape: the model name with markup is shown as text on the job page');

  // figures against metrics.json (the artifact) and the job's result
  const mArt = job.artifacts.find((a) => a.kind === 'metrics');
  const metricsBuf = (await apiGet(U, mArt.url)).buf;
  const metrics = JSON.parse(metricsBuf.toString('utf8'));
  check(JSON.stringify(metrics) === JSON.stringify(job.result), 'job: metrics.json is the job\'s result');
  const figs = await page.$$eval('#metrics [data-metric]', (els) => els.map((e) => ({ key: e.dataset.metric, value: e.dataset.value, text: e.textContent })));
  const bad = figs.filter((f) => f.value !== JSON.stringify(getPath(metrics, f.key)));
  check(figs.length >= 10 && bad.length === 0, 'metrics: every figure on the page (' + figs.length + ') is the value in metrics.json', bad);
  const keys = new Set(figs.map((f) => f.key));
  check(['size.float_bytes', 'size.quantized_bytes', 'size.ratio', 'quantized_nodes_total', 'accuracy.min_cosine', 'accuracy.outputs.0.cosine',
    'accuracy.outputs.0.max_abs_error', 'passes.0.stats.quantized_nodes'].every((k) => keys.has(k)),
  'metrics: size, ratio, quantized nodes, cosine, errors and pass stats are shown', [...keys]);
  const figText = (k) => (figs.find((f) => f.key === k) || {}).text || '';
  check(figText('size.ratio').startsWith(metrics.size.ratio.toFixed(3) + ' (' + (metrics.size.ratio * 100).toFixed(1) + ' %'),
    'metrics: the ratio reads ' + metrics.size.ratio.toFixed(3), figText('size.ratio'));
  check(figText('accuracy.min_cosine') === metrics.accuracy.min_cosine.toFixed(6), 'metrics: the min cosine reads ' + metrics.accuracy.min_cosine.toFixed(6), figText('accuracy.min_cosine'));
  check(figText('size.float_bytes').startsWith(metrics.size.float_bytes.toLocaleString('en-US') + ' B') &&
    figText('size.quantized_bytes').startsWith(metrics.size.quantized_bytes.toLocaleString('en-US') + ' B'), 'metrics: the byte sizes read as in metrics.json',
  [figText('size.float_bytes'), figText('size.quantized_bytes')]);
  const qn = Object.entries(metrics.passes[0].stats.quantized_nodes).map(([k, v]) => k + ' ' + v).join(', ');
  check(figText('passes.0.stats.quantized_nodes') === qn && qn.includes('MatMul 2'), 'metrics: the pass stats list the quantized ops (' + qn + ')', figText('passes.0.stats.quantized_nodes'));
  const passRows = await page.$$eval('#passes-table tbody tr', (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent)));
  check(passRows.length === metrics.passes.length && passRows[0][0] === metrics.passes[0].name && passRows[0][1] === metrics.passes[0].type &&
    passRows[0][2] === metrics.passes[0].stats.quant_format, 'metrics: the passes table has each pass with its name, type and format', passRows);
  const ign = await page.$$eval('#ignored-table tbody tr', (rs) => rs.map((r) => [r.cells[0].textContent, r.cells[1].textContent]));
  check(JSON.stringify(ign) === JSON.stringify(metrics.ignored.map((x) => [x.field, x.why])) && ign.some((x) => x[0] === 'name'),
    'metrics: the ignored keys (the job name: informational) are listed with the reason', { ign, want: metrics.ignored });
  check(await page.isVisible('#search-none'), 'metrics: a job without a search says so where the trials go');
  const wfShown = JSON.parse(await page.textContent('#job-workflow'));
  check(JSON.stringify(wfShown) === JSON.stringify(job.workflow), 'job: the submitted workflow is shown');

  // artifacts: links download the bytes
  const artRows = await page.$$eval('#artifacts-table tbody tr', (rs) => rs.map((r) => r.dataset.artifact));
  check(JSON.stringify(artRows) === JSON.stringify(job.artifacts.map((a) => a.id)), 'artifacts: every artifact of the job is listed', artRows);
  for (const kind of ['model', 'metrics']) {
    const a = job.artifacts.find((x) => x.kind === kind);
    const [dlEv] = await Promise.all([page.waitForEvent('download'), page.click('tr[data-artifact="' + a.id + '"] a.download')]);
    const to = path.join(cfg.tmp, 'dl-' + a.name);
    await dlEv.saveAs(to);
    const got = fs.readFileSync(to);
    check(got.length === a.size && sha256(got) === a.sha256 && dlEv.suggestedFilename() === a.name,
      'artifacts: the ' + a.name + ' link downloads the artifact\'s bytes (sha256, size, file name)', { size: got.length, want: a.size, name: dlEv.suggestedFilename() });
  }

  // the log
  const log = await apiJson(U, '/v1/jobs/' + jobId + '/log?after=0&limit=10000');
  await page.waitForFunction((n) => document.querySelectorAll('#job-log .ll').length >= n, log.lines.length);
  const shown = await page.$$eval('#job-log .ll', (ls) => ls.map((l) => [Number(l.dataset.seq), l.textContent]));
  check(shown.length === log.lines.length && shown.every(([seq, t], i) => seq === log.lines[i].seq && t.includes(log.lines[i].line)),
    'log: the page shows every log line in order (' + log.lines.length + ')', { shown: shown.length, api: log.lines.length });
  await page.screenshot({ path: path.join(cfg.tmp, 'web-job.png'), fullPage: true });
  if (cfg.keep_screenshot) {                 // the README's picture: the top of the job page
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: cfg.keep_screenshot, fullPage: false });
  }

  // ---- 4. the jobs list ----
  await page.click('a[data-nav=jobs]');
  await page.waitForSelector('tr[data-job="' + jobId + '"]');
  const row = await page.$eval('tr[data-job="' + jobId + '"]', (r) => ({
    name: r.querySelector('td.name').textContent, state: r.querySelector('.badge').textContent,
    passes: r.cells[3].textContent, prog: r.querySelector('progress').value,
  }));
  check(row.name === XSS_NAME && row.state === 'succeeded' && row.passes === 'OnnxDynamicQuantization' && row.prog === 1,
    'list: the job\'s row has its name (as text), state, pass types and a full progress bar', row);
  // keyboard: Tab to the job's link, Enter opens it
  await page.focus('a[data-nav=jobs]');
  let reached = false;
  for (let i = 0; i < 30 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate((id) => document.activeElement && document.activeElement.textContent === id, jobId);
  }
  check(reached, 'keyboard: Tab reaches the job\'s link in the list');
  if (reached) {
    await page.keyboard.press('Enter');
    await page.waitForSelector('#job-state');
    check(page.url().endsWith('#/jobs/' + jobId), 'keyboard: Enter on it opens the job');
  }

  // ---- 5. validation errors with the field names ----
  await page.click('a[data-nav=new]');
  await page.waitForSelector('#job-form');
  await page.waitForFunction(() => document.querySelector('#job-model').value !== '');
  const badWf = { passes: { q: { type: 'OnnxDynamicQuantization', bogus: 1 }, p: { type: 'OnnxDynamicQuantization', per_channel: 'yes' }, r: { type: 'NoSuchPass' } } };
  await page.fill('#job-workflow-input', JSON.stringify(badWf));
  const nPosts = jobPosts.length;
  await page.click('#job-submit');
  await page.waitForSelector('#job-submit-out .problems');
  const fields = await page.$$eval('#job-submit-out .problems code.field', (cs) => cs.map((c) => c.textContent));
  const direct = await apiPost(U, '/v1/jobs', Object.assign({ model: modelId }, badWf));
  const want = direct.json.error.details.problems.map((p) => p.field);
  check(direct.status === 400 && JSON.stringify(fields) === JSON.stringify(want) && fields.includes('passes.q.bogus') && fields.includes('passes.p.per_channel') && fields.includes('passes.r.type'),
    'validation: the 400\'s problems are shown with their field names (' + want.join(', ') + ')', { fields, want });
  const msgs = await page.$$eval('#job-submit-out .problems li', (ls) => ls.map((l) => l.textContent));
  check(msgs.length === want.length && direct.json.error.details.problems.every((p, i) => msgs[i].includes(p.message)),
    'validation: each problem shows the server\'s message', msgs);
  check(jobPosts.length === nPosts + 1, 'validation: one POST /v1/jobs was sent');
  check(page.url().endsWith('#/new'), 'validation: the page stays on the form');
  await page.fill('#job-workflow-input', '{"passes": {');
  await page.click('#job-submit');
  await page.waitForFunction(() => /not valid JSON/.test(document.querySelector('#job-submit-out').textContent));
  check(jobPosts.length === nPosts + 1, 'validation: a workflow that is not JSON is refused in the page, nothing is sent');

  // ---- 6. the pass builder and a static job with the dataset picker ----
  let asked = '';
  page.once('dialog', (d) => { asked = d.message(); d.accept(); });   // the textarea was edited
  await page.selectOption('#job-template', 'static');
  await page.waitForFunction(() => /OnnxStaticQuantization/.test(document.querySelector('#job-workflow-input').value));
  await page.selectOption('#job-dataset', dsId);
  check(/Replace the edited workflow/.test(asked), 'static: the page asks before a template replaces an edited workflow', asked);
  let swf = JSON.parse(await page.inputValue('#job-workflow-input'));
  check(swf.data_configs && swf.data_configs.calib && swf.data_configs.calib.dataset === dsId,
    'static: picking the dataset binds it to data config calib in the workflow', swf);
  await page.click('#pass-helper summary');
  await page.selectOption('#pb-type', 'OnnxStaticQuantization');
  const nParams = await page.$$eval('#pass-helper tbody tr', (rs) => rs.length);
  const cat = await apiJson(U, '/v1/passes');
  const sp = cat.passes.find((p) => p.type === 'OnnxStaticQuantization');
  check(nParams === sp.parameters.length, 'builder: the pass form has every parameter of OnnxStaticQuantization from GET /v1/passes (' + sp.parameters.length + ')', nParams);
  const pidx = (n) => sp.parameters.findIndex((p) => p.name === n);
  await page.selectOption('#pb-p-' + pidx('calibrate_method'), 'Entropy');
  await page.fill('#pb-p-' + pidx('data_config'), 'calib');
  await page.selectOption('#pb-p-' + pidx('per_channel'), 'true');
  await page.click('#pb-add');
  swf = JSON.parse(await page.inputValue('#job-workflow-input'));
  const q = swf.passes.quantize || {};
  check(q.type === 'OnnxStaticQuantization' && q.calibrate_method === 'Entropy' && q.per_channel === true && q.data_config === 'calib' &&
    Object.keys(q).length === 4 && swf.data_configs.calib.dataset === dsId,
  'builder: the pass goes into the workflow with only the values set', swf.passes);
  await page.fill('#job-name-input', 'static through the page');
  await page.click('#job-submit');
  await page.waitForURL(/#\/jobs\/job_[0-9a-f]+$/);
  const sJob = decodeURIComponent(page.url().split('/').pop());
  await page.waitForSelector('#job-state[data-state=succeeded]', { timeout: 60000 });
  const sj = await apiJson(U, '/v1/jobs/' + sJob);
  check(sj.state === 'succeeded' && sj.workflow.data_configs.calib.dataset === dsId && sj.result.passes[0].stats.calibration.method === 'Entropy',
    'static: the job built in the page ran with the dataset and Entropy calibration', sj.state);
  await page.waitForSelector('#passes-table');
  const calCell = await page.$eval('#passes-table tbody tr', (r) => r.cells[7].textContent);
  const cal = sj.result.passes[0].stats.calibration;
  check(calCell === 'Entropy, ' + cal.tensors + ' tensors, ' + cal.batches + ' batches' + (cal.samples !== undefined ? ', ' + cal.samples + ' samples' : ''),
    'static: the calibration figures are shown', calCell);
  const sfigs = await page.$$eval('#metrics [data-metric]', (els) => els.map((e) => ({ key: e.dataset.metric, value: e.dataset.value })));
  check(sfigs.length > 0 && sfigs.every((f) => f.value === JSON.stringify(getPath(sj.result, f.key))), 'static: every figure is the job\'s result');

  // ---- 7. cancel a running job, the log follows it ----
  await page.click('a[data-nav=new]');
  await page.waitForSelector('#job-form');
  await page.waitForFunction(() => document.querySelector('#job-model').value !== '');
  await page.fill('#job-workflow-input', JSON.stringify({ passes: { hangme: { type: 'OnnxDynamicQuantization' } } }));
  await page.fill('#job-name-input', 'hangs until canceled');
  await page.click('#job-submit');
  await page.waitForURL(/#\/jobs\/job_[0-9a-f]+$/);
  const hJob = decodeURIComponent(page.url().split('/').pop());
  await page.waitForSelector('#job-state[data-state=running]', { timeout: 30000 });
  check(true, 'cancel: the page shows the job running');
  await page.waitForFunction(() => /job started on worker/.test(document.querySelector('#job-log').textContent), null, { timeout: 20000 });
  const runningLog = await apiJson(U, '/v1/jobs/' + hJob + '/log?after=0');
  check(runningLog.state === 'running' && (await apiJson(U, '/v1/jobs/' + hJob)).state === 'running',
    'log: the page shows the log of the job while it runs (following)', runningLog.state);
  check(await page.isVisible('#job-cancel') && await page.isEnabled('#job-cancel'), 'cancel: a running job has an enabled cancel button');
  await page.screenshot({ path: path.join(cfg.tmp, 'web-running.png'), fullPage: true });
  // a queued job (both workers busy with hanging jobs) is canceled at once from its page
  const hang2 = (await apiPost(U, '/v1/jobs', { model: modelId, passes: { hangme: { type: 'OnnxDynamicQuantization' } } })).json.id;
  await waitFor(async () => (await apiJson(U, '/v1/jobs/' + hang2)).state === 'running', 20000);
  const qj = await apiPost(U, '/v1/jobs', { model: modelId, name: 'waits in the queue', passes: { q: { type: 'OnnxDynamicQuantization' } } });
  // the list shows the running and queued jobs with their states
  await page.goto(U + '#/jobs');
  await page.waitForSelector('tr[data-job="' + qj.json.id + '"]');
  const states = await page.$$eval('table.jobs tbody tr', (rs) => Object.fromEntries(rs.map((r) => [r.dataset.job, r.querySelector('.badge').textContent])));
  check(states[hJob] === 'running' && states[hang2] === 'running' && states[qj.json.id] === 'queued',
    'list: running and queued jobs show their state', states);
  await page.goto(U + '#/jobs/' + qj.json.id);
  await page.waitForSelector('#job-state[data-state=queued]');
  check(qj.json.state === 'queued' && await page.isEnabled('#job-cancel'), 'cancel: a queued job has an enabled cancel button', qj.json.state);
  await page.click('#job-cancel');
  await page.waitForSelector('#job-state[data-state=canceled]');
  check((await apiJson(U, '/v1/jobs/' + qj.json.id)).state === 'canceled', 'cancel: the queued job is canceled on the server');
  // the list refreshes itself: a job canceled elsewhere turns canceled without a reload
  await page.goto(U + '#/jobs');
  await page.waitForSelector('tr[data-job="' + hang2 + '"] .st-running');
  await apiPost(U, '/v1/jobs/' + hang2 + '/cancel', {});
  const refreshed = await page.waitForSelector('tr[data-job="' + hang2 + '"] .st-canceled', { timeout: 15000 }).then(() => true, () => false);
  check(refreshed, 'list: auto-refresh shows a job canceled through the API as canceled');
  await page.goto(U + '#/jobs/' + hJob);
  await page.waitForSelector('#job-state[data-state=running]');
  await page.click('#job-cancel');
  await page.waitForSelector('#job-state[data-state=canceled]', { timeout: 30000 });
  const hj = await apiJson(U, '/v1/jobs/' + hJob);
  check(hj.state === 'canceled' && hj.error && hj.error.code === 'CANCELED', 'cancel: the job is canceled on the server', hj.state);
  check((await page.textContent('#job-error')).includes('CANCELED'), 'cancel: the page shows the CANCELED error');
  check(!(await page.$('#job-cancel')), 'cancel: no cancel button once the job ended');
  const hlog = await apiJson(U, '/v1/jobs/' + hJob + '/log?after=0&limit=10000');
  await page.waitForFunction((n) => document.querySelectorAll('#job-log .ll').length === n, hlog.lines.length, { timeout: 10000 }).catch(() => {});
  check((await page.$$('#job-log .ll')).length === hlog.lines.length, 'log: after the cancel the page has the whole log (' + hlog.lines.length + ' lines)');

  // delete the canceled job from its page (after a confirmation)
  let delAsked = '';
  page.once('dialog', (d) => { delAsked = d.message(); d.accept(); });
  await page.click('#job-delete');
  await page.waitForURL(/#\/jobs$/);
  await page.waitForSelector('table.jobs');
  check(delAsked.includes(hJob) && (await apiGet(U, '/v1/jobs/' + hJob)).status === 404 && !(await page.$('tr[data-job="' + hJob + '"]')),
    'delete: the page asks, deletes the finished job and goes back to a list without it', delAsked);

  // ---- 8. the pass catalogue ----
  await page.click('a[data-nav=passes]');
  await page.waitForSelector('section.pass');
  const secs = await page.$$eval('section.pass', (ss) => ss.map((s) => [s.dataset.pass, s.querySelectorAll('tbody tr').length]));
  check(JSON.stringify(secs) === JSON.stringify(cat.passes.map((p) => [p.type, p.parameters.length])), 'passes: every pass type with every parameter of GET /v1/passes', secs);
  check((await page.$$('#extra-options tbody tr')).length === cat.extra_options.length, 'passes: the extra_options keys are listed');

  // ---- 8b. the search trials view ----
  // Rendering details a small real search cannot show (a failed trial, markup in a value,
  // a long log) on an answer of its own (8c below checks a real search job): the real succeeded job with a "search" object added to
  // its result, served for a made-up job id by the browser's request routing. It checks
  // the rendering only (table, pareto marks, best, the SVG plot, escaping).
  const fakeId = 'job_5ea4c0000000000f';
  // the shape of quantd's trial loop (metrics.json "search"): trials numbered n, params,
  // measured values, pareto flags, best {trial, ...}, objectives in ranking order
  const search = {
    strategy: { execution_order: 'joint', sampler: 'tpe', max_iter: 5, max_time: 0, stop_when_goals_met: false, seed: 1 },
    objectives: [{ key: 'accuracy', higher_is_better: true, priority: 1, goal: { type: 'min-value', value: 0.9 } }, { key: 'size_ratio', higher_is_better: false, priority: 2 }],
    trials: [
      { n: 1, params: { 'quantize.per_channel': false, 'quantize.calibrate_method': 'MinMax' }, values: { accuracy: 0.91, size_ratio: 0.30 }, goals_met: true, seconds: 0.2, status: 'ok', pareto: false },
      { n: 2, params: { 'quantize.per_channel': true, 'quantize.calibrate_method': 'Entropy' }, values: { accuracy: 0.97, size_ratio: 0.31 }, goals_met: true, seconds: 0.3, status: 'ok', pareto: true },
      { n: 3, params: { 'quantize.per_channel': true, 'quantize.calibrate_method': '<img src=x onerror="window.__xss=4">' }, values: { accuracy: 0.95, size_ratio: 0.26 }, goals_met: true, seconds: 0.2, status: 'ok', pareto: true },
      { n: 4, params: { 'quantize.per_channel': false, 'quantize.calibrate_method': 'Percentile' }, values: { accuracy: 0.90, size_ratio: 0.33 }, goals_met: true, seconds: 0.2, status: 'ok', pareto: false },
      { n: 5, params: { 'quantize.per_channel': false, 'quantize.calibrate_method': 'Distribution' }, values: null, goals_met: false, seconds: 0.1, status: 'failed', error: 'calibration failed', pareto: false },
    ],
    best: { trial: 2, params: { 'quantize.per_channel': true, 'quantize.calibrate_method': 'Entropy' }, values: { accuracy: 0.97, size_ratio: 0.31 }, goals_met: true },
    pareto: [2, 3],
    stopped: 'max_iter',
  };
  const FAKE_LOG = 6000;
  const fakeJob = Object.assign({}, job, { id: fakeId, log_url: '/v1/jobs/' + fakeId + '/log', result: Object.assign({}, job.result, { search }) });
  await page.route(/\/v1\/jobs\/job_5ea4c0000000000f(\/log.*)?(\?.*)?$/, (route) => {
    const u = new URL(route.request().url());
    let body = fakeJob;
    if (/\/log$/.test(u.pathname)) {    // a long log: 6000 lines in pages of 1000
      const after = Number(u.searchParams.get('after') || 0), n = Math.min(1000, FAKE_LOG - after);
      const lines = Array.from({ length: n }, (_, i) => ({ seq: after + i + 1, ts: 1796167161 + i, level: 'info', line: 'line ' + (after + i + 1) }));
      body = { job: fakeId, state: 'succeeded', lines, next_after: after + n, more: after + n < FAKE_LOG };
    }
    route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(body) });
  });
  await page.goto(U + '#/jobs/' + fakeId);
  await page.waitForSelector('#trials-table');
  const trows = await page.$$eval('#trials-table tbody tr', (rs) => rs.map((r) => ({ trial: r.dataset.trial, pareto: r.dataset.pareto, best: r.classList.contains('best'), text: r.textContent })));
  check(trows.length === 5 && trows.map((r) => r.trial).join() === '1,2,3,4,5', 'search: the trials table has every trial (by its number n)', trows);
  check(trows.filter((r) => r.pareto === 'true').map((r) => r.trial).join() === '2,3', 'search: the pareto set (trials 2, 3) is marked', trows.map((r) => r.pareto));
  check(trows.filter((r) => r.best).map((r) => r.trial).join() === '2', 'search: the best trial (best.trial) is marked');
  const thead = await page.$$eval('#trials-table thead th', (hs) => hs.map((x) => x.textContent));
  check(thead.includes('params.quantize.per_channel') && thead.includes('values.accuracy') && thead.includes('values.size_ratio') && thead.includes('status') &&
    !thead.includes('values') && !thead.includes('pareto'), 'search: a column per parameter and per measured value', thead);
  check(trows[1].text.includes('Entropy') && trows[1].text.includes('0.970000'), 'search: the trial\'s values are shown', trows[1].text);
  check(trows[4].text.includes('failed') && trows[4].text.includes('calibration failed'), 'search: a failed trial shows its status and error', trows[4].text);
  check(trows[2].text.includes('<img src=x') && await page.evaluate(() => window.__xss === undefined && !document.querySelector('#trials-table img')),
    'search: a value with markup is text');
  const summary = await page.textContent('#search-summary');
  check(/^5 trials; ◆ pareto set \(2\); best: trial 2; stopped: max_iter$/.test(summary), 'search: the summary counts trials, the pareto set, the best and why it stopped', summary);
  check((await page.textContent('#search-objectives')) === 'accuracy (higher is better, priority 1, goal min-value 0.9); size_ratio (lower is better, priority 2)',
    'search: the objectives with their direction, priority and goal', await page.textContent('#search-objectives'));
  const pts = await page.$$eval('svg.plot circle', (cs) => cs.map((c) => [c.getAttribute('class'), c.querySelector('title').textContent]));
  check(pts.length === 4 && pts.filter((c) => c[0] === 'pt front').map((c) => c[1].split(':')[0]).join() === 'trial 2,trial 3',
    'search: the SVG plot has a point per measured trial (accuracy against size_ratio), the pareto front highlighted', pts);
  check((await page.getAttribute('svg.plot', 'aria-label')) === 'trials: values.accuracy against values.size_ratio', 'search: the plot\'s axes are the first two objectives');
  await page.waitForFunction(() => /earlier lines/.test(document.querySelector('#log-status').textContent));
  const kept = await page.$$eval('#job-log .ll', (ls) => [ls.length, ls[0].dataset.seq, ls[ls.length - 1].dataset.seq]);
  check(JSON.stringify(kept) === JSON.stringify([5000, '1001', '6000']) && /1000 earlier lines are in GET \/v1\/jobs\//.test(await page.textContent('#log-status')),
    'log: a 6000-line log keeps its last 5000 lines in the page and says where the rest is', kept);
  await page.screenshot({ path: path.join(cfg.tmp, 'web-search.png'), fullPage: true });
  await page.unroute(/\/v1\/jobs\/job_5ea4c0000000000f(\/log.*)?(\?.*)?$/);

  // ---- 8c. a real search job: the daemon's own trial loop, rendered ----
  const rs = await apiPost(U, '/v1/jobs', { model: modelId, name: 'a real search', search_strategy: { execution_order: 'joint', sampler: 'sequential' },
    passes: { q: { type: 'OnnxDynamicQuantization', per_channel: [true, false], reduce_range: [false, true], disable_search: true } } });
  check(rs.status === 202, 'search job: submitted (202)', rs);
  const rsId = rs.json.id;
  const rsJob = await waitFor(async () => { const j = await apiJson(U, '/v1/jobs/' + rsId); return ['succeeded', 'failed', 'canceled'].includes(j.state) ? j : null; }, 120000, 300);
  const real = rsJob && rsJob.result && rsJob.result.search;
  check(rsJob && rsJob.state === 'succeeded' && real && real.trials.length === 4, 'search job: succeeded with 4 trials (per_channel x reduce_range)', rsJob && (rsJob.error || real));
  if (real) {
    await page.goto(U + '#/jobs/' + rsId);
    await page.waitForSelector('#trials-table');
    const rrows = await page.$$eval('#trials-table tbody tr', (rs2) => rs2.map((r) => ({ trial: r.dataset.trial, pareto: r.dataset.pareto, best: r.classList.contains('best') })));
    check(rrows.map((r) => r.trial).join() === real.trials.map((t) => String(t.n)).join(), 'search job: the page lists the trials of metrics.json', { rrows, n: real.trials.map((t) => t.n) });
    check(rrows.filter((r) => r.best).map((r) => r.trial).join() === String(real.best.trial), 'search job: the page marks metrics.json\'s best trial', { rrows, best: real.best.trial });
    check(rrows.filter((r) => r.pareto === 'true').map((r) => Number(r.trial)).join() === real.pareto.join(), 'search job: the page marks metrics.json\'s pareto set', { rrows, pareto: real.pareto });
  }

  // ---- 9. labels and a narrow window ----
  await page.click('a[data-nav=new]');
  await page.waitForSelector('#job-form');
  const unlabeled = await page.$$eval('#view input, #view select, #view textarea',
    (els) => els.filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map((e) => e.id || e.outerHTML.slice(0, 80)));
  check(unlabeled.length === 0, 'a11y: every form control of the new-job page has a label', unlabeled);
  await page.setViewportSize({ width: 360, height: 740 });
  for (const [what, hash, sel] of [['job detail', '#/jobs/' + jobId, '#metrics'], ['jobs list', '#/jobs', 'table.jobs'], ['new job', '#/new', '#job-form'], ['passes', '#/passes', 'section.pass']]) {
    await page.goto(U + hash);
    await page.waitForSelector(sel);
    const sw = await page.evaluate(() => document.documentElement.scrollWidth);
    check(sw <= 360, 'narrow: the ' + what + ' page fits a 360 px window (tables scroll in their box)', sw);
  }
  await page.screenshot({ path: path.join(cfg.tmp, 'web-narrow.png') });
  await page.setViewportSize({ width: 1200, height: 900 });

  check(pageErrors.length === 0, 'no script errors on any page', pageErrors);
  const unexpected = consoleErrors.filter((t) => !/Failed to load resource: the server responded with a status of 400/.test(t));
  check(unexpected.length === 0, 'no console errors besides the 400 of the refused workflow', consoleErrors);

  // ---- 10. a server with a token ----
  const tpage = await ctx.newPage();
  const tErrors = [];
  tpage.on('pageerror', (e) => tErrors.push(e.message));
  await tpage.goto(UT);
  await tpage.waitForSelector('#token-panel:not([hidden])');
  check(/needs a token/.test(await tpage.textContent('#token-state')), 'token: a 401 opens the token prompt', await tpage.textContent('#token-state'));
  check(await tpage.evaluate(() => document.activeElement && document.activeElement.id === 'token-input'), 'token: the token field has the focus');
  await tpage.fill('#token-input', 'wrong-token');
  await tpage.press('#token-input', 'Enter');
  await tpage.waitForFunction(() => /refused/.test(document.querySelector('#token-state').textContent));
  check(true, 'token: a wrong token is refused and the prompt says so');
  await tpage.fill('#token-input', cfg.token);
  await tpage.click('#token-panel button[type=submit]');
  await tpage.waitForSelector('#jobs-body .empty');
  check(await tpage.evaluate(() => localStorage.getItem('quantd.token')) === cfg.token && await tpage.isHidden('#token-panel'),
    'token: the right token is kept in localStorage and the jobs list loads');
  // upload and submit with the token, then download through the blob path
  await tpage.click('a[data-nav=new]');
  await tpage.setInputFiles('#up-model-file', cfg.inputs.model2);
  await tpage.click('#up-model-submit');
  await tpage.waitForSelector('#up-model-out .uploaded-id');
  const tModel = (await tpage.textContent('#up-model-out .uploaded-id')).trim();
  await tpage.waitForFunction((id) => document.querySelector('#job-model').value === id, tModel);
  await tpage.click('#job-submit');
  await tpage.waitForURL(/#\/jobs\/job_[0-9a-f]+$/);
  const tJob = decodeURIComponent(tpage.url().split('/').pop());
  await tpage.waitForSelector('#job-state[data-state=succeeded]', { timeout: 60000 });
  const tj = await apiJson(UT, '/v1/jobs/' + tJob, cfg.token);
  check(tj.state === 'succeeded' && tj.model === tModel, 'token: upload and job through the page with the token');
  const ta = tj.artifacts.find((a) => a.kind === 'model');
  await tpage.waitForSelector('#artifacts-table');
  const [tdl] = await Promise.all([tpage.waitForEvent('download'), tpage.click('tr[data-artifact="' + ta.id + '"] a.download')]);
  const tto = path.join(cfg.tmp, 'dl-token-' + ta.name);
  await tdl.saveAs(tto);
  const tgot = fs.readFileSync(tto);
  check(tgot.length === ta.size && sha256(tgot) === ta.sha256 && tdl.suggestedFilename() === ta.name,
    'token: the download link sends the token and saves the artifact\'s bytes', { size: tgot.length, want: ta.size, name: tdl.suggestedFilename() });
  await tpage.reload();
  await tpage.waitForSelector('#job-state[data-state=succeeded]');
  check(await tpage.isHidden('#token-panel'), 'token: after a reload the kept token is used, no prompt');
  check(tErrors.length === 0, 'token: no script errors', tErrors);

  await browser.close();
}

main().catch((e) => {
  check(false, 'the browser script ran to its end', e && e.stack ? e.stack : String(e));
}).finally(() => {
  console.log('browser: ' + passed + ' passed, ' + failed + ' failed');
  process.exit(failed ? 1 : 0);
});
