/**
 * The hub's status page (GET /): a crm_mon-like live view made of the public API and the live
 * feed, with no build step and no third-party asset. The script re-reads the API when the feed
 * says something changed (debounced), so the page shows exactly what `vigil status` and the API
 * show. Served with a CSP that allows nothing but this hub.
 */

export const STATUS_PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

export const STATUS_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Vigil status</title>
<link rel="stylesheet" href="/status.css">
<link rel="icon" href="data:,">
</head>
<body>
<header>
  <h1>Vigil</h1>
  <span id="cluster"></span>
  <span id="hub-role" class="pill unknown" title="this hub: alone, or its role in its hub group">-</span>
  <span id="hub-health" class="pill unknown" title="/readyz: every part of this hub up">-</span>
  <span id="feed" class="pill unknown" title="live feed">connecting</span>
  <span id="updated"></span>
</header>
<main>
  <section id="summary" aria-label="summary"></section>
  <section>
    <h2>Nodes</h2>
    <table id="nodes"><thead><tr>
      <th>Node</th><th>Hub sees</th><th>Condition</th><th>Health</th><th>Fence</th><th>Last heartbeat</th><th>Agent</th>
    </tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Resources</h2>
    <table id="resources"><thead><tr>
      <th>Resource</th><th>Phase</th><th>Node</th><th>Health</th><th>Failures</th><th>Pending</th>
    </tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Recent decisions <small>click one for why</small></h2>
    <ol id="decisions"></ol>
  </section>
  <section class="two">
    <div>
      <h2>Fence devices</h2>
      <table id="devices"><thead><tr><th>Device</th><th>Driver</th><th>Health</th><th>Checked</th></tr></thead><tbody></tbody></table>
      <div id="pending"></div>
    </div>
    <div>
      <h2>If a node died now</h2>
      <table id="plan"><thead><tr><th>Node</th><th>Its resources would go</th><th>Could not be placed</th></tr></thead><tbody></tbody></table>
    </div>
  </section>
</main>
<script src="/status.js"></script>
</body>
</html>
`

export const STATUS_CSS = `
:root { --ok:#1b7f3a; --warn:#a86400; --bad:#b3261e; --mute:#667; --bg:#f5f6f8; --card:#fff; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:#1d1d24; }
header { display:flex; gap:12px; align-items:center; padding:10px 20px; background:#1d2330; color:#fff; }
header h1 { margin:0; font-size:18px; }
#updated { margin-left:auto; color:#bcc; font-size:12px; }
main { padding:12px 20px; display:grid; gap:14px; }
section { background:var(--card); border-radius:6px; padding:10px 14px; box-shadow:0 1px 2px #0002; }
section.two { display:grid; grid-template-columns:1fr 1fr; gap:20px; }
h2 { font-size:15px; margin:0 0 8px; } h2 small { color:var(--mute); font-weight:normal; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:4px 8px; border-bottom:1px solid #e4e6ea; white-space:nowrap; }
th { color:var(--mute); font-weight:600; font-size:12px; }
.pill { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; color:#fff; background:var(--mute); }
.ok { background:var(--ok); } .warn { background:var(--warn); } .bad { background:var(--bad); }
#summary { display:flex; gap:24px; }
#summary div { font-size:13px; color:var(--mute); } #summary b { display:block; font-size:22px; color:#1d1d24; }
#decisions { list-style:none; margin:0; padding:0; max-height:340px; overflow:auto; }
#decisions li { padding:4px 0; border-bottom:1px solid #eee; cursor:pointer; }
#decisions li .when { color:var(--mute); font-variant-numeric:tabular-nums; margin-right:8px; }
#decisions li .rule { color:var(--mute); font-size:12px; margin-left:6px; }
#decisions li pre { white-space:pre-wrap; background:#f1f3f6; padding:6px 8px; margin:4px 0 0; font-size:12px; }
.empty { color:var(--mute); font-style:italic; }
.hypervisor { color:var(--mute); font-size:11px; }
`

export const STATUS_JS = `'use strict'
const $ = (sel) => document.querySelector(sel)
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])
const GOOD = ['online', 'healthy', 'running', 'idle', 'confirmed-on']
const WARN = ['suspect', 'partitioned', 'isolated', 'starting', 'stopping', 'recovering', 'migrating', 'waiting', 'delayed', 'running-fence', 'verifying', 'unknown', 'unmanaged']
function pill(text, cls) {
  const c = cls || (GOOD.includes(text) ? 'ok' : WARN.includes(text) ? 'warn' : 'bad')
  return '<span class="pill ' + c + '">' + esc(text) + '</span>'
}
function ago(ms) {
  if (ms == null) return '-'
  const s = Math.max(0, (Date.now() - ms) / 1000)
  return s < 10 ? s.toFixed(1) + ' s ago' : s < 120 ? Math.round(s) + ' s ago' : Math.round(s / 60) + ' min ago'
}
// With api.anonymous: none, open the page as /#token=<token>: kept for this tab only, never sent in a URL
// except on the WebSocket (browsers cannot set its headers).
if (location.hash.startsWith('#token=')) {
  sessionStorage.setItem('vigil-token', decodeURIComponent(location.hash.slice(7)))
  history.replaceState(null, '', location.pathname)
}
const token = sessionStorage.getItem('vigil-token')
async function get(path) {
  const headers = { accept: 'application/json' }
  if (token) headers.authorization = 'Bearer ' + token
  const res = await fetch(path, { headers })
  if (!res.ok) throw new Error(path + ': HTTP ' + res.status)
  return res.json()
}
function rows(tbody, items, render, emptyText, cols) {
  tbody.innerHTML = items.length ? items.map(render).join('') : '<tr><td colspan="' + cols + '" class="empty">' + esc(emptyText) + '</td></tr>'
}
const open = new Set()
let decisions = []
function renderDecisions() {
  const list = $('#decisions')
  if (!decisions.length) { list.innerHTML = '<li class="empty">no decisions yet</li>'; return }
  list.innerHTML = decisions.map((d) => {
    const subject = [d.node, d.resource].filter(Boolean).join(' / ')
    let why = ''
    if (open.has(d.id)) {
      const lines = []
      if (d.classification) lines.push('classification: ' + d.classification)
      for (const e of d.evidence || []) lines.push('evidence ' + e.channel + ': ' + e.says)
      for (const c of d.candidates || []) lines.push('candidate ' + c.node + ' score ' + c.score + (c.eliminated ? ' - ' + c.eliminated : ''))
      lines.push('rule ' + d.rule + ', policy ' + d.policyVersion + ', correlation ' + d.correlationId + ', id ' + d.id)
      why = '<pre>' + esc(lines.join('\\n')) + '</pre>'
    }
    return '<li data-id="' + esc(d.id) + '" data-kind="' + esc(d.kind) + '"><span class="when">' + esc(new Date(d.at).toLocaleTimeString()) + '</span>' +
      pill(d.kind, d.kind === 'refuse' || d.kind === 'blocked' || d.kind === 'fence' ? 'bad' : 'ok') + ' <b>' + esc(subject) + '</b> ' + esc(d.summary) +
      '<span class="rule">' + esc(d.rule) + '</span>' + why + '</li>'
  }).join('')
}
$('#decisions').addEventListener('click', (ev) => {
  const li = ev.target.closest('li[data-id]')
  if (!li) return
  const id = li.dataset.id
  open.has(id) ? open.delete(id) : open.add(id)
  renderDecisions()
})
async function refresh() {
  const [info, nodes, resources, recent, fence, plan, group, ready] = await Promise.all([
    get('/api'), get('/api/nodes'), get('/api/resources'), get('/api/decisions?limit=50'), get('/api/fence'), get('/api/plan'),
    get('/api/group'), fetch('/readyz').then((r) => r.json()).catch(() => null),
  ])
  $('#cluster').textContent = 'cluster ' + info.cluster + ' - hub ' + info.name + ' (epoch ' + info.epoch + ')'
  // Who acts, and whether this hub can: the first two questions at 3 a.m.
  const role = group.enabled ? group.role : 'alone'
  $('#hub-role').textContent = role
  $('#hub-role').className = 'pill ' + (role === 'leader' || role === 'alone' ? 'ok' : role === 'standby' ? 'unknown' : 'bad')
  const isReady = ready !== null && ready.status === 'ready'
  $('#hub-health').textContent = isReady ? 'ready' : 'not ready'
  $('#hub-health').className = 'pill ' + (isReady ? 'ok' : 'bad')
  $('#hub-health').title = isReady ? 'every part of this hub is up' : (ready ? ready.reasons.join('; ') : '/readyz did not answer')
  const ns = nodes.nodes
  const rs = resources.resources
  const count = (xs, f) => xs.filter(f).length
  $('#summary').innerHTML =
    '<div><b id="sum-nodes">' + count(ns, (n) => n.engine ? n.engine.condition === 'healthy' : n.state === 'online') + ' / ' + ns.length + '</b>nodes healthy</div>' +
    '<div><b id="sum-resources">' + count(rs, (r) => r.phase === 'running') + ' / ' + rs.length + '</b>resources running</div>' +
    '<div><b>' + count(rs, (r) => r.phase === 'blocked' || r.phase === 'waiting') + '</b>blocked or waiting</div>' +
    '<div><b>' + count(fence.devices, (d) => d.up === false) + '</b>fence devices down</div>'
  rows($('#nodes tbody'), ns, (n) => '<tr data-node="' + esc(n.id) + '"><td>' + esc(n.id) + '</td><td>' + pill(n.state) + '</td><td class="condition">' +
    (n.engine ? pill(n.engine.condition) : '-') + '</td><td>' + (n.engine ? n.engine.health : '-') + '</td><td>' + (n.engine ? esc(n.engine.fence) : '-') +
    '</td><td>' + ago(n.lastHeartbeatAt) + '</td><td>' + esc(n.agentVersion || '-') + '</td></tr>', 'no node has reported yet', 7)
  // A vm says what runs it (kvm, qemu, xen, vsphere): a cluster may mix them.
  rows($('#resources tbody'), rs, (r) => '<tr data-resource="' + esc(r.id) + '"><td>' + esc(r.id) +
    (r.hypervisor ? ' <small class="hypervisor" title="hypervisor">' + esc(r.hypervisor) + '</small>' : '') + '</td><td class="phase">' + pill(r.phase) + '</td><td class="node">' +
    esc(r.node || '-') + '</td><td>' + r.health + '</td><td>' + r.failures + '</td><td>' + (r.pending ? esc(r.pending.type + ' on ' + r.pending.node) : '') + '</td></tr>',
    'no resources (no cluster file, or none defined)', 6)
  rows($('#devices tbody'), fence.devices, (d) => '<tr><td>' + esc(d.id) + '</td><td>' + esc(d.driver) + '</td><td>' +
    (d.up === null ? pill('not checked', 'warn') : d.up ? pill('up', 'ok') : pill('down', 'bad')) + '</td><td>' + ago(d.checkedAt) + '</td></tr>', 'no fence devices configured', 4)
  $('#pending').innerHTML = fence.pending.filter((p) => !p.confirmedBy).map((p) =>
    '<p>' + pill('waiting for an operator', 'bad') + ' confirm that <b>' + esc(p.node) + '</b> is off: <code>vigil fence confirm ' + esc(p.node) + '</code></p>').join('')
  rows($('#plan tbody'), plan.plan, (p) => '<tr><td>' + esc(p.node) + '</td><td>' + esc(p.moves.map((m) => m.resource + ' to ' + m.to).join(', ') || '-') +
    '</td><td>' + (p.unplaceable.length ? pill(p.unplaceable.map((u) => u.resource).join(', '), 'bad') : '-') + '</td></tr>', 'no node runs resources', 3)
  decisions = recent.decisions
  renderDecisions()
  $('#updated').textContent = 'updated ' + new Date().toLocaleTimeString()
}
let timer = null
function soon() {
  if (timer) return
  timer = setTimeout(() => { timer = null; refresh().catch(showError) }, 150)
}
function showError(err) { $('#updated').textContent = String(err.message || err) }
let backoff = 500
function connect() {
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/live' + (token ? '?token=' + encodeURIComponent(token) : ''))
  ws.onopen = () => { backoff = 500; $('#feed').className = 'pill ok'; $('#feed').textContent = 'live'; soon() }
  ws.onmessage = () => soon()
  ws.onclose = () => {
    $('#feed').className = 'pill bad'; $('#feed').textContent = 'reconnecting'
    setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 10000)
  }
}
refresh().catch(showError)
connect()
// Ages ("3 s ago") move on by themselves; the data only changes when the feed says so.
setInterval(soon, 5000)
`
