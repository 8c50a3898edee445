#!/usr/bin/env node
// A reproduction of what the hub-group chaos runs found (seed 18): a host fenced, powered on again
// and rejoined; the leader hub killed right after the rejoin, before it committed a state that
// knows of the fence's result or of the rejoin (the leader writes the engine state to etcd every
// 2 s, and at once only before an action: neither is one). The next leader resumes the state it
// finds in etcd:
//   --case crash   the host crashes 0.5 s after the kill (the chaos run's fault 137 of its first
//                  attempt). If the resumed state has the host dead and its fence confirmed (the host
//                  is powered on 3 s after the fence, so that the leader's periodic write records
//                  it), the silence after the crash is never judged and the host is never fenced.
//   --case none    nothing else happens (fault 85 of the recorded run, there with the leader cut
//                  from etcd instead of killed). If the resumed state still has the fence in flight,
//                  the next leader resumes it, reads the host's power back on (it was powered on
//                  and rejoined) and powers the healthy host off a second time.
// Not a test: prints what each run saw, then a summary, as JSON and a line.
//
//   node bench/chaos/takeover-after-rejoin.mjs [--case crash|none] [--runs 5] [--power-on-after-ms N] [--logs DIR]
//
// The lab is scripts/lab.mjs --hub-group 2 --no-vm (root: network namespaces). The victim is a host
// that runs neither web nor db, so that nothing placed on it after its rejoin forces a commit.
import { execFileSync, spawn } from 'node:child_process'
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { gunzipSync } from 'node:zlib'
import { freePort, sleep } from '../lib.mjs'

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    case: { type: 'string', default: 'crash' },
    /**
     * How long after the fence's confirmation the host is powered on (default: 3 s for --case crash,
     * so that the leader's periodic write has recorded the confirmed fence, and 0 for --case none).
     */
    'power-on-after-ms': { type: 'string' },
    /** Keep the lab's logs here. */
    logs: { type: 'string' },
  },
})
const root = join(import.meta.dirname, '..', '..')
const dir = mkdtempSync(join(tmpdir(), 'vigil-rejoin-'))
const labDir = join(dir, 'lab')
const lab = (...args) =>
  execFileSync(process.execPath, [join(root, 'scripts/lab.mjs'), ...args, '--dir', labDir], {
    encoding: 'utf8',
  })
const log = (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`)
const CONFIRMED = new Set(['fence.confirmed', 'fence.status-read-back', 'fence.proven-off'])

let state
const hubs = () => Object.keys(state.hubs)
const hubApi = async (hub, path) =>
  (await fetch(`${state.hubs[hub].http}${path}`, { signal: AbortSignal.timeout(2000) })).json()
async function leader() {
  for (const hub of hubs()) {
    const view = await hubApi(hub, '/api/group').catch(() => null)
    if (view?.role === 'leader') return { hub, epoch: view.epoch }
  }
  return null
}
async function until(what, fn, timeoutMs, everyMs = 50) {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await fn().catch(() => undefined)
    if (v) return v
    if (Date.now() >= end) throw new Error(`timed out: ${what}`)
    await sleep(everyMs)
  }
}
const power = (host, op) =>
  execFileSync(join(labDir, `${host}-power.sh`), [op], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  })
const bmcOffs = (host, since) => {
  const file = join(labDir, `${host}-bmc-off.log`)
  return existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map(Number)
        .filter((t) => t >= since)
    : []
}
/** The engine state the leader last committed to etcd (what the next leader resumes). */
async function committedState() {
  const key = Buffer.from('/vigil/default/engine-state').toString('base64')
  for (const m of state.etcd.members) {
    try {
      const res = await fetch(`${m.clientUrl}/v3/kv/range`, {
        method: 'POST',
        body: JSON.stringify({ key }),
        signal: AbortSignal.timeout(2000),
      })
      const kv = (await res.json()).kvs?.[0]
      if (kv) return JSON.parse(gunzipSync(Buffer.from(kv.value, 'base64')).toString('utf8'))
    } catch {}
  }
  return null
}
/** A leader, its standby hearing every host, every host healthy to the leader, web and db running. */
async function settled() {
  return until(
    'the group settled',
    async () => {
      const lead = await leader()
      if (!lead) return undefined
      for (const hub of hubs().filter((h) => h !== lead.hub)) {
        const view = await hubApi(hub, '/api/group')
        if (view.role !== 'standby') return undefined
        const { nodes } = await hubApi(hub, '/api/nodes')
        // A standby judges nothing (its nodes are "unknown"): it hears a host if its heartbeat is fresh.
        const hears = (h) => Date.now() - (nodes.find((n) => n.id === h)?.lastHeartbeatAt ?? 0) < 1000
        if (!Object.keys(state.lab.hosts).every(hears)) return undefined
      }
      const { nodes } = await hubApi(lead.hub, '/api/nodes')
      if (
        !Object.keys(state.lab.hosts).every(
          (h) => nodes.find((n) => n.id === h)?.engine?.condition === 'healthy',
        )
      )
        return undefined
      const { resources } = await hubApi(lead.hub, '/api/resources')
      if (!resources.every((r) => r.phase === 'running')) return undefined
      return { lead, resources }
    },
    120_000,
    200,
  )
}
function startHub(hub) {
  const fd = openSync(state.hubs[hub].log, 'a')
  const child = spawn(state.hubs[hub].argv[0], state.hubs[hub].argv.slice(1), {
    detached: true,
    stdio: ['ignore', fd, fd],
  })
  closeSync(fd)
  child.unref()
  state.pids[hub] = child.pid
}

const results = []
try {
  lab(
    'up',
    '--hub-group',
    '2',
    '--no-vm',
    '--http',
    `127.0.0.1:${await freePort()}`,
    '--max-fences',
    '100000',
  )
  state = JSON.parse(readFileSync(join(labDir, 'lab.json'), 'utf8'))
  for (let run = 1; run <= Number(values.runs); run++) {
    const { resources } = await settled()
    const busy = new Set(resources.map((r) => r.node))
    const victim = Object.keys(state.lab.hosts).find((h) => !busy.has(h))
    // 1. The victim crashes and is fenced.
    const t = Date.now()
    power(victim, 'crash')
    await until(
      `${victim} fenced`,
      async () => {
        for (const hub of hubs()) {
          const { decisions } = await hubApi(hub, `/api/decisions?node=${victim}&limit=50`).catch(() => ({
            decisions: [],
          }))
          if (decisions.some((d) => d.at >= t && d.kind === 'fence-result' && CONFIRMED.has(d.rule)))
            return true
        }
        return false
      },
      30_000,
    )
    // 2. Powered on again; the moment the leader has it healthy again (its rejoin), the leader dies.
    await sleep(Number(values['power-on-after-ms'] ?? (values.case === 'crash' ? 3000 : 0)))
    power(victim, 'on')
    const lead = await until('a leader', leader, 20_000)
    const rejoinedAt = await until(
      `${victim} rejoined`,
      async () => {
        const { nodes } = await hubApi(lead.hub, '/api/nodes')
        return nodes.find((n) => n.id === victim)?.engine?.condition === 'healthy' ? Date.now() : undefined
      },
      30_000,
      20,
    )
    process.kill(-state.pids[lead.hub], 'SIGKILL')
    const killedAt = Date.now()
    const committed = await committedState()
    const committedNode = committed?.nodes?.[victim]
    const crash = values.case === 'crash'
    if (crash) {
      // 3. The victim crashes again, 0.5 s after the leader's death.
      await sleep(500)
      power(victim, 'crash')
    }
    const other = hubs().find((h) => h !== lead.hub)
    const next = await until(
      `${other} leads`,
      async () => ((await leader())?.hub === other ? true : undefined),
      15_000,
    )
    // 4. What the next leader does about the victim in 15 s (a crash is fenced within about 2 s of a
    // takeover): its decisions, and the victim's BMC.
    await sleep(15_000)
    const offs = bmcOffs(victim, killedAt).length
    const view = (await hubApi(other, '/api/nodes')).nodes.find((n) => n.id === victim)
    const decisions = (await hubApi(other, `/api/decisions?node=${victim}&limit=20`)).decisions
      .filter((d) => d.at >= killedAt)
      .map((d) => d.rule)
      .reverse()
    // A crash must be fenced (a power-off, or its power read back off by a fence); nothing else
    // happening must leave the rejoined host alone.
    const fenced = offs > 0 || decisions.some((r) => r.startsWith('fence.') && r !== 'fence.rejoin')
    const ok = crash ? fenced : offs === 0
    const result = {
      run,
      victim,
      killed: lead.hub,
      rejoinToKillMs: killedAt - rejoinedAt,
      committedCondition: committedNode
        ? `${committedNode.condition} (fence ${committedNode.fence?.phase ?? '?'})`
        : 'unknown',
      nextLeader: next ? other : null,
      bmcPowerOffsAfterKill: offs,
      fenced,
      ok,
      conditionAtNextLeader: view?.engine?.condition ?? null,
      decisionsOfNextLeader: decisions,
    }
    results.push(result)
    log(
      `run ${run}: ${victim} rejoined, ${lead.hub} killed ${result.rejoinToKillMs} ms later (etcd's state: ${result.committedCondition})${crash ? `, ${victim} crashed 0.5 s after` : ''}; ${other}: ${ok ? 'as it should' : 'WRONG'}: ${offs} BMC power-offs of ${victim}, its engine has it ${result.conditionAtNextLeader}, its decisions on it: ${decisions.join(', ') || 'none'}`,
    )
    // Back to a settled lab: the killed hub started again, the victim powered on.
    startHub(lead.hub)
    power(victim, 'on')
  }
} finally {
  const wrong = results.filter((r) => !r.ok).length
  console.log(
    JSON.stringify(
      { bench: 'takeover-after-rejoin', case: values.case, runs: results.length, wrong, results },
      null,
      2,
    ),
  )
  console.log(
    values.case === 'crash'
      ? `\n${wrong} of ${results.length} crashes right after a rejoin and a leader kill were never fenced`
      : `\n${wrong} of ${results.length} hosts rejoined after a fence were fenced again by the next leader`,
  )
  if (values.logs) {
    mkdirSync(values.logs, { recursive: true })
    for (const name of readdirSync(labDir))
      if (/\.(log|yaml|json)$/.test(name)) copyFileSync(join(labDir, name), join(values.logs, name))
  }
  try {
    lab('down')
  } catch (err) {
    log(`lab down failed: ${err}`)
  }
  rmSync(dir, { recursive: true, force: true })
}
