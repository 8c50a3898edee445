#!/usr/bin/env node
// A reproduction of what the hub-group chaos run of seed 19 found at its fault 125 (an etcd member
// killed): the group lost its leader for good. The standby's campaign created the leader key with
// its own lease, but by then the standby could no longer prove that lease alive (no renewal
// answered within its 1.5 s budget: etcd's raft leader was the member killed), so it did not take
// the leadership; nor did it give the key up. Its lease renewals then succeeded again, and from then
// on every hub, that one included, saw "a leader" (itself) and stayed a standby.
//
// Here the same state is made with signals: the leader hub is SIGKILLed, and the standby is
// SIGSTOPped from 0.2-0.6 s after that until 2.1 s after it, so that it wakes up when the dead
// leader's key has expired while its own lease (renewed at most 2 s before) may still be alive in
// etcd but is past its own 1.5 s budget. Attempts repeat (the phases are random) until the group is
// seen with no leader for 30 s while a hub's view names that hub as the leader, or `--attempts`.
//
//   node bench/chaos/orphan-leader-key.mjs [--attempts 20] [--logs DIR]
//
// Not a test: prints each attempt and a JSON summary. Root: scripts/lab.mjs --hub-group 2 --no-vm.
import { execFileSync, spawn } from 'node:child_process'
import {
  closeSync,
  copyFileSync,
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
import { freePort, sleep } from '../lib.mjs'

const { values } = parseArgs({
  options: {
    attempts: { type: 'string', default: '20' },
    logs: { type: 'string' },
  },
})
const root = join(import.meta.dirname, '..', '..')
const dir = mkdtempSync(join(tmpdir(), 'vigil-orphan-'))
const labDir = join(dir, 'lab')
const lab = (...args) =>
  execFileSync(process.execPath, [join(root, 'scripts/lab.mjs'), ...args, '--dir', labDir], {
    encoding: 'utf8',
  })
const log = (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`)

let state
const hubs = () => Object.keys(state.hubs)
const view = (hub) =>
  fetch(`${state.hubs[hub].http}/api/group`, { signal: AbortSignal.timeout(2000) })
    .then((r) => r.json())
    .catch(() => null)
const signal = (hub, sig) => process.kill(-state.pids[hub], sig)
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
/** A leader and its standby, both agreeing (up to 60 s), or null. */
async function pair() {
  const end = Date.now() + 60_000
  while (Date.now() < end) {
    const views = await Promise.all(hubs().map(view))
    const lead = hubs().find((_, i) => views[i]?.role === 'leader')
    const epoch = views[hubs().indexOf(lead)]?.epoch
    if (
      lead &&
      views.every((v) => v?.leader?.epoch === epoch && (v.role === 'leader' || v.role === 'standby'))
    )
      return { lead, standby: hubs().find((h) => h !== lead) }
    await sleep(200)
  }
  return null
}

const attempts = []
let stuck = null
try {
  lab('up', '--hub-group', '2', '--no-vm', '--http', `127.0.0.1:${await freePort()}`)
  state = JSON.parse(readFileSync(join(labDir, 'lab.json'), 'utf8'))
  for (let n = 1; n <= Number(values.attempts) && !stuck; n++) {
    const p = await pair()
    if (!p) {
      log(`attempt ${n}: no leader with a standby in 60 s`)
      stuck = { attempt: n, views: await Promise.all(hubs().map(view)) }
      break
    }
    await sleep(Math.random() * 1000) // a random phase against the lease renewals
    const killedAt = Date.now()
    signal(p.lead, 'SIGKILL')
    await sleep(200 + Math.random() * 400)
    signal(p.standby, 'SIGSTOP')
    await sleep(killedAt + 2100 - Date.now())
    signal(p.standby, 'SIGCONT')
    // The standby leads within a few seconds, or the group has no leader for 30 s.
    let led = null
    const end = Date.now() + 30_000
    while (!led && Date.now() < end) {
      const v = await view(p.standby)
      if (v?.role === 'leader') led = v.epoch
      else await sleep(100)
    }
    const v = await view(p.standby)
    attempts.push({ attempt: n, killed: p.lead, standby: p.standby, led: led !== null })
    log(
      `attempt ${n}: ${p.lead} killed, ${p.standby} stopped until 2.1 s after: ${led !== null ? `${p.standby} leads (epoch ${led})` : `NO LEADER for 30 s; ${p.standby} says: role ${v?.role}, leader ${JSON.stringify(v?.leader)}`}`,
    )
    if (led === null) {
      stuck = { attempt: n, standby: p.standby, view: v }
      break
    }
    startHub(p.lead)
  }
} finally {
  console.log(JSON.stringify({ bench: 'orphan-leader-key', attempts, stuck }, null, 2))
  console.log(
    stuck
      ? `\nthe group lost its leader for good at attempt ${stuck.attempt}`
      : `\n${attempts.length} attempts: a leader every time`,
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
