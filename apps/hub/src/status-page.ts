/**
 * The hub's status page (GET /): a crm_mon-like live view made of the public API and the live
 * feed, with no build step and no third-party asset, and an operator's console: sign in with an
 * API token (kept in this tab's sessionStorage), then act on the cluster, a node or a resource
 * through the same API, roles and audit log as the CLI. The script re-reads the API when the feed
 * says something changed (debounced), so the page shows exactly what `vigil status` and the API
 * show; small plots draw the hub's last 15 minutes (GET /api/history). Served with a CSP that allows
 * nothing but this hub.
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
  <span id="who" title="signed in as"></span>
  <button id="signin" type="button">Sign in</button>
  <button id="signout" type="button" hidden>Sign out</button>
</header>
<dialog id="login">
  <form id="login-form" method="dialog">
    <label>API token <input id="login-token" type="password" autocomplete="off" required></label>
    <p class="hint">From <code>vigil token issue &lt;name&gt; --role operator</code>. Kept in this tab only.</p>
    <p id="login-error" class="error"></p>
    <button type="submit">Sign in</button> <button id="login-cancel" type="button">Cancel</button>
  </form>
</dialog>
<div id="notice" role="status"></div>
<main>
  <section id="summary" aria-label="summary"></section>
  <section id="history">
    <h2>Last 15 minutes <small id="history-note"></small></h2>
    <div class="plots">
      <figure><figcaption>Resources running</figcaption><div id="plot-running"></div></figure>
      <figure><figcaption>Health score per node</figcaption><div id="plot-health"></div></figure>
      <figure><figcaption>Worst heartbeat delay per node (ms)</figcaption><div id="plot-delay"></div></figure>
    </div>
    <div id="plot-legend"></div>
  </section>
  <section>
    <h2>Nodes</h2>
    <table id="nodes"><thead><tr>
      <th>Node</th><th>Condition</th><th>Health</th><th>Fence</th><th>Last heartbeat</th><th>Agent</th><th class="act">Actions</th>
    </tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Resources</h2>
    <table id="resources"><thead><tr>
      <th>Resource</th><th>Phase</th><th>Node</th><th>Health</th><th>Failures</th><th>Pending</th><th class="act">Actions</th>
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
.hypervisor, .why { color:var(--mute); font-size:11px; }
header button { margin-left:4px; }
#who { color:#cde; font-size:12px; }
button { font:inherit; font-size:12px; padding:1px 8px; border:1px solid #aab; border-radius:4px; background:#fff; cursor:pointer; }
button.danger { border-color:var(--bad); color:var(--bad); }
td.act, th.act { white-space:nowrap; } td.act button, td.act select { margin-right:4px; font-size:12px; }
#notice { padding:0 20px; min-height:0; } #notice p { margin:8px 0 0; padding:6px 10px; border-radius:4px; background:#e8f4ec; }
#notice p.error, .error { background:#fbe9e7; color:var(--bad); }
dialog { border:1px solid #ccd; border-radius:6px; } dialog input { width:28em; } .hint { color:var(--mute); font-size:12px; }
.plots { display:grid; grid-template-columns:repeat(3, 1fr); gap:16px; }
figure { margin:0; } figcaption { color:var(--mute); font-size:12px; margin-bottom:2px; }
svg.plot { width:100%; height:70px; background:#fafbfc; border:1px solid #eef; }
#plot-legend span { margin-right:12px; font-size:12px; }
#decisions li .timeline { color:#333; }
`

export const STATUS_JS = `'use strict'
const $ = (sel) => document.querySelector(sel)
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])
const GOOD = ['healthy', 'running', 'idle', 'confirmed-on']
const WARN = ['suspect', 'partitioned', 'isolated', 'agent-stopped', 'starting', 'stopping', 'recovering', 'migrating', 'waiting', 'delayed', 'running-fence', 'verifying', 'unknown', 'unmanaged', 'suspended']
function pill(text, cls) {
  const c = cls || (GOOD.includes(text) ? 'ok' : WARN.includes(text) ? 'warn' : 'bad')
  return '<span class="pill ' + c + '">' + esc(text) + '</span>'
}
function ago(ms) {
  if (ms == null) return '-'
  const s = Math.max(0, (Date.now() - ms) / 1000)
  return s < 10 ? s.toFixed(1) + ' s ago' : s < 120 ? Math.round(s) + ' s ago' : Math.round(s / 60) + ' min ago'
}
// A token comes from the sign-in dialog, or from /#token=<token> (kept for this tab only, never sent
// in a URL except on the WebSocket, whose headers browsers cannot set).
if (location.hash.startsWith('#token=')) {
  sessionStorage.setItem('vigil-token', decodeURIComponent(location.hash.slice(7)))
  history.replaceState(null, '', location.pathname)
}
let token = sessionStorage.getItem('vigil-token')
/** Who the token is ({name, role}); role null: anonymous without rights. */
let me = { name: 'anonymous', role: null }
const RANK = { viewer: 1, operator: 2, admin: 3 }
const can = (role) => me.role !== null && RANK[me.role] >= RANK[role]
function authHeaders() {
  const headers = { accept: 'application/json' }
  if (token) headers.authorization = 'Bearer ' + token
  return headers
}
async function get(path) {
  const res = await fetch(path, { headers: authHeaders() })
  if (res.status === 401) { showSignedOut(); throw new Error('sign in to see this hub') }
  if (!res.ok) throw new Error(path + ': HTTP ' + res.status)
  return res.json()
}
/** An operator verb: the same API, roles and audit log as the CLI. */
async function act(label, path, body) {
  const headers = { ...authHeaders(), 'content-type': 'application/json' }
  const res = await fetch(path, { method: 'POST', headers, body: JSON.stringify({ by: me.name, ...body }) })
  const answer = await res.json().catch(() => ({}))
  if (res.status === 202 || res.ok) notice(label + ': accepted; the decisions below show what Vigil does with it')
  else notice(label + ': ' + ((answer.error && answer.error.message) || 'HTTP ' + res.status), true)
  soon()
}
function notice(text, error) {
  $('#notice').innerHTML = '<p class="' + (error ? 'error' : '') + '">' + esc(text) + '</p>'
}
function showSignedOut() {
  // What a token showed goes with it.
  for (const tbody of document.querySelectorAll('main tbody')) tbody.innerHTML = ''
  $('#summary').innerHTML = ''
  $('#decisions').innerHTML = ''
  $('#who').textContent = ''
  $('#signin').hidden = false
  $('#signout').hidden = true
}
async function whoAmI() {
  const res = await fetch('/api/me', { headers: authHeaders() })
  me = res.ok ? await res.json() : { name: 'anonymous', role: null }
  const signedIn = Boolean(token) && res.ok
  $('#who').textContent = signedIn ? me.name + ' (' + me.role + ')' : me.role ? 'anonymous (' + me.role + ')' : ''
  $('#signin').hidden = signedIn
  $('#signout').hidden = !signedIn
  document.body.dataset.role = me.role || 'none'
  return res.ok
}
$('#signin').addEventListener('click', () => { $('#login-error').textContent = ''; $('#login').showModal() })
$('#login-cancel').addEventListener('click', () => $('#login').close())
$('#login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault()
  const candidate = $('#login-token').value.trim()
  const res = await fetch('/api/me', { headers: { accept: 'application/json', authorization: 'Bearer ' + candidate } })
  if (!res.ok) { $('#login-error').textContent = 'that token is not valid here'; return }
  token = candidate
  sessionStorage.setItem('vigil-token', token)
  $('#login-token').value = ''
  $('#login').close()
  await whoAmI()
  reconnect()
  refresh().catch(showError)
})
$('#signout').addEventListener('click', async () => {
  sessionStorage.removeItem('vigil-token')
  token = null
  await whoAmI()
  notice('signed out')
  reconnect()
  refresh().catch(showError)
})
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
      const story = stories.get(d.correlationId)
      if (story) {
        lines.push('', 'why: the story of ' + d.correlationId + ' (vigil why ' + d.id + ')')
        for (const s of story) lines.push(new Date(s.at).toLocaleTimeString() + '  ' + [s.node, s.resource].filter(Boolean).join(' / ') + '  ' + s.summary + '  [' + s.rule + ']')
      }
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
  // Each decision opens its why: every record of its incident, oldest first (what \`vigil why\` tells).
  const d = decisions.find((x) => x.id === id)
  if (open.has(id) && d && d.correlationId) {
    get('/api/decisions?correlation=' + encodeURIComponent(d.correlationId) + '&limit=200').then((r) => {
      stories.set(d.correlationId, r.decisions.slice().reverse())
      renderDecisions()
    }).catch(showError)
  }
})
const stories = new Map()
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
    '<div><b id="sum-nodes">' + count(ns, (n) => n.state === 'healthy') + ' / ' + ns.length + '</b>nodes healthy</div>' +
    '<div><b id="sum-resources">' + count(rs, (r) => r.phase === 'running') + ' / ' + rs.length + '</b>resources running</div>' +
    '<div><b>' + count(rs, (r) => r.phase === 'blocked' || r.phase === 'waiting') + '</b>blocked or waiting</div>' +
    '<div><b>' + count(fence.devices, (d) => d.up === false) + '</b>fence devices down</div>' +
    (can('operator') ? '<div><b>' + (info.maintenance ? 'on' : 'off') + '</b>cluster maintenance <button data-act="cluster-maintenance" data-on="' + (info.maintenance ? 'off' : 'on') + '">turn ' + (info.maintenance ? 'off' : 'on') + '</button></div>' : '')
  // A node's state is the engine's classification; an agent that shut down cleanly says so beside it.
  rows($('#nodes tbody'), ns, (n) => '<tr data-node="' + esc(n.id) + '"><td>' + esc(n.id) + '</td><td class="condition">' + pill(n.state) +
    (n.shutdownAt != null && n.state !== 'agent-stopped' ? ' <small class="why shutdown" title="its agent announced a clean shutdown ' + esc(ago(n.shutdownAt)) + '">agent shut down</small>' : '') +
    '</td><td>' + (n.engine ? n.engine.health : '-') + '</td><td>' + (n.engine ? esc(n.engine.fence) : '-') +
    '</td><td>' + ago(n.lastHeartbeatAt) + '</td><td>' + esc(n.agentVersion || '-') + '</td><td class="act">' + nodeActions(n) + '</td></tr>', 'no node has reported yet', 7)
  // A vm says what runs it (kvm, qemu, xen, vsphere): a cluster may mix them.
  rows($('#resources tbody'), rs, (r) => '<tr data-resource="' + esc(r.id) + '"><td>' + esc(r.id) +
    (r.hypervisor ? ' <small class="hypervisor" title="hypervisor">' + esc(r.hypervisor) + '</small>' : '') + '</td><td class="phase">' + pill(r.phase) +
    (r.reason && !['running', 'stopped', 'unmanaged', 'suspended'].includes(r.phase) ? ' <small class="why" title="' + esc(r.reason.rule) + '">' + esc(r.reason.why) + '</small>' : '') + '</td><td class="node">' +
    esc(r.node || '-') + '</td><td>' + r.health + '</td><td>' + r.failures + '</td><td>' + (r.pending ? esc(r.pending.type + ' on ' + r.pending.node) : '') + '</td><td class="act">' + resourceActions(r, ns) + '</td></tr>',
    'no resources (no cluster file, or none defined)', 7)
  rows($('#devices tbody'), fence.devices, (d) => '<tr><td>' + esc(d.id) + '</td><td>' + esc(d.driver) + '</td><td>' +
    (d.up === null ? pill('not checked', 'warn') : d.up ? pill('up', 'ok') : pill('down', 'bad')) + '</td><td>' + ago(d.checkedAt) + '</td></tr>', 'no fence devices configured', 4)
  $('#pending').innerHTML = fence.pending.filter((p) => !p.confirmedBy).map((p) =>
    '<p>' + pill('waiting for an operator', 'bad') + ' confirm that <b>' + esc(p.node) + '</b> is off: <code>vigil fence confirm ' + esc(p.node) + '</code></p>').join('')
  rows($('#plan tbody'), plan.plan, (p) => '<tr><td>' + esc(p.node) + '</td><td>' + esc(p.moves.map((m) => m.resource + ' to ' + m.to).join(', ') || '-') +
    '</td><td>' + (p.unplaceable.length ? pill(p.unplaceable.map((u) => u.resource).join(', '), 'bad') : '-') + '</td></tr>', 'no node runs resources', 3)
  decisions = recent.decisions
  renderDecisions()
  await refreshHistory()
  $('#updated').textContent = 'updated ' + new Date().toLocaleTimeString()
}
function nodeActions(n) {
  if (!can('operator') || !n.engine) return ''
  const m = n.engine.maintenance
  let html = '<button data-act="node-maintenance" data-node="' + esc(n.id) + '" data-on="' + (m ? 'off' : 'on') + '">maintenance ' + (m ? 'off' : 'on') + '</button>' +
    '<button data-act="evacuate" data-node="' + esc(n.id) + '">evacuate</button>'
  if (can('admin')) html += '<button class="danger" data-act="fence" data-node="' + esc(n.id) + '">fence</button>'
  return html
}
function resourceActions(r, nodes) {
  if (!can('operator')) return ''
  const others = nodes.map((n) => n.id).filter((id) => id !== r.node)
  return '<select data-for="' + esc(r.id) + '" aria-label="move ' + esc(r.id) + ' to">' + others.map((id) => '<option>' + esc(id) + '</option>').join('') + '</select>' +
    '<button data-act="move" data-resource="' + esc(r.id) + '"' + (others.length ? '' : ' disabled') + '>move</button>' +
    (r.hypervisor ? '<button data-act="migrate" data-resource="' + esc(r.id) + '"' + (others.length ? '' : ' disabled') + '>migrate live</button>' : '') +
    '<button data-act="cleanup" data-resource="' + esc(r.id) + '">cleanup</button>' +
    '<button data-act="' + (r.stoppedByOperator ? 'start' : 'stop') + '" data-resource="' + esc(r.id) + '">' + (r.stoppedByOperator ? 'start' : 'stop') + '</button>' +
    (r.hypervisor ? '<button data-act="' + (r.phase === 'suspended' ? 'resume' : 'suspend') + '" data-resource="' + esc(r.id) + '">' + (r.phase === 'suspended' ? 'resume' : 'suspend') + '</button>' : '') +
    '<button data-act="resource-maintenance" data-resource="' + esc(r.id) + '" data-on="' + (r.maintenance ? 'off' : 'on') + '">maintenance ' + (r.maintenance ? 'off' : 'on') + '</button>'
}
document.addEventListener('click', (ev) => {
  const b = ev.target.closest('button[data-act]')
  if (!b) return
  const { act: verb, node, resource, on } = b.dataset
  const path = (p) => encodeURIComponent(p)
  if (verb === 'cluster-maintenance') act('cluster maintenance ' + on, '/api/maintenance', { on: on === 'on' })
  else if (verb === 'node-maintenance') act('maintenance ' + on + ' ' + node, '/api/maintenance', { on: on === 'on', node })
  else if (verb === 'resource-maintenance') act('maintenance ' + on + ' ' + resource, '/api/maintenance', { on: on === 'on', resource })
  else if (verb === 'evacuate') act('evacuate ' + node, '/api/nodes/' + path(node) + '/evacuate', {})
  else if (['cleanup', 'stop', 'start', 'suspend', 'resume'].includes(verb)) act(verb + ' ' + resource, '/api/resources/' + path(resource) + '/' + verb, {})
  else if (verb === 'move' || verb === 'migrate') {
    const to = document.querySelector('select[data-for="' + CSS.escape(resource) + '"]').value
    act(verb + ' ' + resource + ' to ' + to, '/api/resources/' + path(resource) + '/' + verb, { node: to })
  } else if (verb === 'fence') {
    // Fencing powers a host off: the node's name typed back confirms it (as the API requires).
    const typed = prompt('Fencing powers ' + node + ' off. Type its name to confirm:')
    if (typed === null) return
    act('fence ' + node, '/api/nodes/' + path(node) + '/fence', { confirm: typed })
  }
})
const PALETTE = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2', '#be185d', '#4b5563']
/** An SVG line plot of series [{name, points: [[at, value|null]]}] over [from, to]. */
function plot(series, from, to, maxHint) {
  const W = 300, H = 70
  const values = series.flatMap((s) => s.points.map((p) => p[1]).filter((v) => v !== null))
  const max = Math.max(maxHint || 0, ...values, 1)
  const x = (t) => ((t - from) / Math.max(1, to - from)) * W
  const y = (v) => H - 4 - (v / max) * (H - 12)
  const lines = series.map((s, i) => {
    const pts = s.points.filter((p) => p[1] !== null).map((p) => x(p[0]).toFixed(1) + ',' + y(p[1]).toFixed(1)).join(' ')
    return pts ? '<polyline fill="none" stroke-width="1.5" stroke="' + PALETTE[i % PALETTE.length] + '" points="' + pts + '"><title>' + esc(s.name) + '</title></polyline>' : ''
  }).join('')
  return '<svg class="plot" viewBox="0 0 ' + W + ' ' + H + '" preserveAspectRatio="none" role="img"><text x="2" y="10" font-size="9" fill="#889">' + esc(Math.round(max)) + '</text>' + lines + '</svg>'
}
async function refreshHistory() {
  const h = await get('/api/history')
  // The x axis spans what the ring holds (at most the window), so a young hub's plots fill the width.
  const to = Date.now()
  const from = h.samples.length ? Math.max(to - h.windowMs, h.samples[0].at) : to - h.windowMs
  const names = [...new Set(h.samples.flatMap((s) => Object.keys(s.nodes)))].sort()
  $('#history-note').textContent = h.samples.length ? h.samples.length + ' samples, one per ' + h.everyMs / 1000 + ' s, kept in memory by this hub' : 'the first sample comes ' + h.everyMs / 1000 + ' s after the hub starts'
  $('#plot-running').innerHTML = plot([{ name: 'running', points: h.samples.map((s) => [s.at, s.resourcesRunning]) }], from, to, Math.max(0, ...h.samples.map((s) => s.resourcesTotal)))
  const per = (field) => names.map((n) => ({ name: n, points: h.samples.map((s) => [s.at, s.nodes[n] ? s.nodes[n][field] : null]) }))
  $('#plot-health').innerHTML = plot(per('health'), from, to, 100)
  $('#plot-delay').innerHTML = plot(per('heartbeatDelayMs'), from, to, 10)
  // Swatches as SVG: the page's CSP allows no inline style attribute.
  $('#plot-legend').innerHTML = names.map((n, i) => '<span><svg width="12" height="4"><rect width="12" height="4" fill="' + PALETTE[i % PALETTE.length] + '"/></svg> ' + esc(n) + '</span>').join('')
}
let timer = null
function soon() {
  if (timer) return
  timer = setTimeout(() => { timer = null; refresh().catch(showError) }, 150)
}
function showError(err) { $('#updated').textContent = String(err.message || err) }
let backoff = 500
let ws = null
function reconnect() {
  if (ws) { ws.onclose = null; ws.close() }
  connect()
}
function connect() {
  ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/live' + (token ? '?token=' + encodeURIComponent(token) : ''))
  ws.onopen = () => { backoff = 500; $('#feed').className = 'pill ok'; $('#feed').textContent = 'live'; soon() }
  ws.onmessage = () => soon()
  ws.onclose = () => {
    $('#feed').className = 'pill bad'; $('#feed').textContent = 'reconnecting'
    setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 10000)
  }
}
whoAmI().then(() => refresh()).catch(showError)
connect()
// Ages ("3 s ago") move on by themselves; the data only changes when the feed says so.
setInterval(soon, 5000)
`
