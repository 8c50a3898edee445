#!/usr/bin/env node
// bench/chaos: random faults on the lab, one after another, each followed by quiescence and checks
// against ground truth that does not come from Vigil. Not a test (not in CI): prints JSON and a table.
//
//   node bench/chaos/run.mjs --faults 1000 [--seed 1] [--hosts 3] [--minutes M] [--keep-going] [--no-vm]
//                            [--only KIND]
//
// SIGINT or SIGTERM: the fault under way is finished and checked, then the run reports and tears the
// lab down.
//
// The lab (scripts/lab.mjs): hosts as network namespaces, each with a real agent (peer mesh, shared
// disk heartbeat), an IPMI BMC (ipmi_sim) that powers it off by killing its namespace, its own
// libvirtd, and two applications, web and db, that append "<host> <ns>" to witness-<app>.log every
// 0.2 s wherever they run. The vm vm1 (QEMU under TCG) runs on one host at a time; its console's
// heartbeat lines (two a second) become witness-vm1.log lines, and its in-guest application
// guest-app (run beside it with Vigil's guest agent, for as long as the guest lives: see
// scripts/lab-guest.mjs) writes witness-guest-app.log like web and db. Faults are drawn from a
// seeded PRNG, so a seed replays the same sequence of choices (not the same timings: the machine
// is shared).
//
// After each fault: the faulted host (if fenced or crashed) is powered on again, then the run waits
// until the lab is quiescent (every host healthy in the engine, every workload running, no fence in
// flight, every witness advancing). Checked after each fault and over the whole run:
//   double run   two hosts' witness lines for one workload interleave in time (two copies alive at once)
//   false fence  a fence decided during a fault that must not fence (blips, app crash, hub restart),
//                or of a host other than the victim of one that must
//   double fence more than one fence decided for the victim of one fault
//   lost         an app not running again within the settle timeout
// Loss is iptables' statistic match; delay and jitter are netem's in user space (this kernel has no
// netem: packages/testbed/src/netdelay.ts, an NFQUEUE and native/netdelay.c). A disk hang
// is a SIGSTOP of the bindfs through which one host reaches the shared disk (scripts/lab.mjs).
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
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setPacketLoss, startNetworkDelay } from '@vigil/testbed'
import { freePort, markdownTable, median, quantile, sleep } from '../lib.mjs'

const { values } = parseArgs({
  options: {
    faults: { type: 'string', default: '50' },
    seed: { type: 'string', default: '1' },
    hosts: { type: 'string', default: '3' },
    /** How long the lab may take to become quiescent after a fault before the app counts as lost. */
    'settle-timeout-ms': { type: 'string', default: '60000' },
    /** Stop drawing faults after this many minutes (the run then reports what it did). */
    minutes: { type: 'string' },
    /** Go on after a lost app or a stuck lab (otherwise the run stops at the first). */
    'keep-going': { type: 'boolean', default: false },
    /** Keep the lab's logs, configs and witnesses, and the hub's decisions, in this directory. */
    logs: { type: 'string' },
    /** A lab without the vm and its guest application (and without their faults). */
    'no-vm': { type: 'boolean', default: false },
    /** Only the fault kinds whose name contains this (to replay or try out one kind). */
    only: { type: 'string' },
  },
})
/** The lab's host applications: the app-crash faults' targets. */
const APPS = ['web', 'db']
const withVm = !values['no-vm']
/**
 * Every workload with a witness, and the longest gap between two lines of one running copy: the
 * apps write every 0.2 s; the vm's line is its console heartbeat, two a second (slower under load).
 */
const WORKLOADS = { web: 1000, db: 1000, ...(withVm ? { vm1: 2500, 'guest-app': 1000 } : {}) }
const NAMES = Object.keys(WORKLOADS)
const SETTLE_MS = Number(values['settle-timeout-ms'])
const GRACE_MS = 4000 // detection.isolationGraceMs's default: a partition longer than this is fenced

/** mulberry32: a small seeded PRNG, enough to replay a run's choices. */
function prng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const random = prng(Number(values.seed))
const between = (lo, hi) => lo + random() * (hi - lo)
const pick = (list) => list[Math.floor(random() * list.length)]

const root = join(import.meta.dirname, '..', '..')
const dir = mkdtempSync(join(tmpdir(), 'vigil-chaos-'))
const labDir = join(dir, 'lab')
const http = `127.0.0.1:${await freePort()}`
const lab = (...args) =>
  execFileSync(process.execPath, [join(root, 'scripts/lab.mjs'), ...args, '--dir', labDir], {
    encoding: 'utf8',
  })
const quiet = (cmd, args) => {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    return String(err.stderr ?? err)
  }
}
const api = async (path) => {
  const res = await fetch(`http://${http}${path}`, { signal: AbortSignal.timeout(2000) })
  return res.json()
}
const log = (line) => process.stderr.write(`${line}\n`)

let state
const saveState = () => writeFileSync(join(labDir, 'lab.json'), JSON.stringify(state, null, 2))
const hostNames = () => Object.keys(state.lab.hosts)

// --- the world: what a fault does to a host, by hand, never through Vigil ---------------------
/**
 * A crash: the lab's power script silences the host's network first, kills every process of its
 * namespace (until none is left: a crash is atomic) and destroys its sockets, as dead hardware.
 */
const crash = (host) => quiet(join(labDir, `${host}-power.sh`), ['crash'])
const powerOn = (host) => quiet(join(labDir, `${host}-power.sh`), ['on'])
const powered = (host) => quiet(join(labDir, `${host}-power.sh`), ['status']).trim() === 'on'
function bmc(host, ...command) {
  const b = state.lab.hosts[host].bmc
  return quiet('ipmitool', [
    '-I',
    'lanplus',
    '-H',
    b.host,
    '-p',
    String(b.port),
    '-U',
    b.username,
    '-f',
    b.passwordFile,
    '-C',
    '3',
    '-L',
    'ADMINISTRATOR',
    ...command,
  ])
}
const link = (host, up) =>
  quiet('ip', ['-n', state.lab.bridgeNs, 'link', 'set', state.lab.hosts[host].port, up ? 'up' : 'down'])
const hubLink = (up) => quiet('ip', ['link', 'set', state.lab.hubLink, up ? 'up' : 'down'])
const loss = (host, percent) => setPacketLoss(state.lab.hosts[host].netns, percent)
/** Delay and jitter on a host's link for `ms` (netdelay, both ways); how many packets it held. */
async function delayFor(host, ms, options) {
  const delay = await startNetworkDelay(state.lab.hosts[host].netns, options)
  await sleep(ms)
  return (await delay.stop()).packets
}
/** The hub (and its embedded broker) SIGKILLed and started again with the same arguments. */
async function restartHub() {
  try {
    process.kill(-state.pids.hub, 'SIGKILL')
  } catch {
    try {
      process.kill(state.pids.hub, 'SIGKILL')
    } catch {}
  }
  await sleep(100)
  const fd = openSync(join(labDir, 'hub.log'), 'a')
  const child = spawn(state.hubArgv[0], state.hubArgv.slice(1), {
    detached: true,
    stdio: ['ignore', fd, fd],
  })
  closeSync(fd)
  child.unref()
  state.pids.hub = child.pid
  saveState()
}
/** Where an app runs now, per the hub. */
async function whereRuns(app) {
  const { resources } = await api('/api/resources')
  return resources.find((r) => r.id === app)?.node ?? null
}
/** The state of a host's shared-disk check, per the hub. */
async function diskCheck(host) {
  try {
    const { observations } = await api(`/api/nodes/${host}`)
    return observations.find((o) => o.target === 'shared-disk')?.state
  } catch {
    return undefined
  }
}
function appCrash(host, app) {
  const file = join(labDir, `${host}-${app}.pid`)
  if (!existsSync(file)) return false
  try {
    process.kill(Number(readFileSync(file, 'utf8')), 'SIGKILL')
    return true
  } catch {
    return false
  }
}

// --- the faults ----------------------------------------------------------------------------------
// fences: 'victim' (exactly one fence, of the victim), 'none' (a fence is a false fence).
// seen: the workloads a fault broke without touching their host; the run waits until the hub has
// decided something about each (the crash noticed) before it waits for quiescence, since their
// witnesses look fresh for a moment after the fault and the lab would seem settled before it is.
/**
 * A blip on one random host (its link, or its shared disk) for 2-10 s that must cost nothing: `draw()` picks the fault's
 * own values, `apply(host, ms, values)` makes it, waits it out, ends it and says what it was. The
 * draws keep their order (host, values, duration), so a seed replays the same faults.
 */
function hostBlip(kind, weight, draw, apply) {
  return {
    kind,
    weight,
    fences: 'none',
    async run() {
      const host = pick(hostNames())
      const values = draw()
      const ms = Math.round(between(2000, 10_000))
      return { victim: host, detail: await apply(host, ms, values) }
    },
  }
}

/**
 * A fault of the vm or what runs in it, on the host vm1 runs on: `act(host)` breaks it, and the
 * run waits until the hub has decided something about each of `seen`.
 */
function vmFault(kind, detail, seen, act) {
  return {
    kind,
    weight: 6,
    fences: 'none',
    async run() {
      const host = await whereRuns('vm1')
      act(host)
      return { victim: host, detail, seen }
    },
  }
}

const ALL_FAULTS = [
  {
    kind: 'app crash',
    weight: 24,
    fences: 'none',
    async run() {
      const app = pick(APPS)
      const host = await whereRuns(app)
      appCrash(host, app)
      return { victim: host, detail: app, seen: [app] }
    },
  },
  {
    kind: 'host crash',
    weight: 14,
    fences: 'victim',
    async run() {
      const host = pick(hostNames())
      crash(host)
      return { victim: host, detail: 'SIGKILL of its namespace' }
    },
  },
  {
    kind: 'power off (BMC)',
    weight: 8,
    fences: 'victim',
    async run() {
      const host = pick(hostNames())
      bmc(host, 'chassis', 'power', 'off')
      return { victim: host, detail: 'ipmitool chassis power off' }
    },
  },
  {
    kind: 'link flap <= 3 s',
    weight: 14,
    fences: 'none',
    async run() {
      const host = pick(hostNames())
      const flaps = random() < 0.3 ? 2 + Math.floor(random() * 2) : 1
      const downs = []
      for (let i = 0; i < flaps; i++) {
        const down = Math.round(between(300, 3000))
        downs.push(down)
        link(host, false)
        await sleep(down)
        link(host, true)
        if (i + 1 < flaps) await sleep(1000)
      }
      return { victim: host, detail: `down ${downs.join(' + ')} ms` }
    },
  },
  hostBlip(
    'packet loss <= 30 %, <= 10 s',
    10,
    () => Math.round(between(5, 30)),
    async (host, ms, percent) => {
      loss(host, percent)
      await sleep(ms)
      loss(host, 0)
      return `${percent} % for ${ms} ms`
    },
  ),
  hostBlip(
    'delay <= 500 ms, <= 10 s',
    6,
    () => Math.round(between(50, 500)),
    async (host, ms, delayMs) => {
      const packets = await delayFor(host, ms, { delayMs, jitterMs: delayMs / 10 })
      return `${delayMs} ms each way for ${ms} ms (${packets} packets)`
    },
  ),
  // netem's `delay 500ms 500ms`: each packet each way held 0-1,000 ms, reordered.
  hostBlip(
    'jitter 0-1,000 ms, <= 10 s',
    6,
    () => null,
    async (host, ms) => `for ${ms} ms (${await delayFor(host, ms, { delayMs: 500, jitterMs: 500 })} packets)`,
  ),
  // The shared disk hung under one host (its bindfs view stopped): its disk heartbeat and its disk
  // check's statfs and O_DIRECT probe wait in the kernel, as on a dead SAN path.
  hostBlip(
    'disk hang (one host), <= 10 s',
    6,
    () => null,
    async (host, ms) => {
      const { pid } = state.disk[host]
      process.kill(pid, 'SIGSTOP')
      let check
      try {
        await sleep(ms)
        check = await diskCheck(host)
      } finally {
        process.kill(pid, 'SIGCONT')
      }
      return `for ${ms} ms (its disk check ${check ?? 'unknown'} at the end)`
    },
  ),
  {
    kind: 'partition of a host (fenced)',
    weight: 6,
    fences: 'victim',
    async run() {
      const host = pick(hostNames())
      link(host, false)
      // Past the isolation grace: it must be fenced, and only then its apps start elsewhere.
      const until = Date.now() + GRACE_MS + 6000
      while (Date.now() < until && powered(host)) await sleep(100)
      link(host, true)
      return { victim: host, detail: 'link down until fenced' }
    },
  },
  {
    kind: 'hub cut from all hosts',
    weight: 6,
    fences: 'none',
    async run() {
      const ms = Math.round(between(1000, 5000))
      hubLink(false)
      await sleep(ms)
      hubLink(true)
      return { victim: null, detail: `${ms} ms` }
    },
  },
  {
    kind: 'hub + broker restart',
    weight: 6,
    fences: 'none',
    async run() {
      await restartHub()
      return { victim: null, detail: 'SIGKILL, started again' }
    },
  },
  {
    kind: 'host crash, hub restart mid-failover',
    weight: 6,
    fences: 'victim',
    async run() {
      const host = pick(hostNames())
      crash(host)
      const after = Math.round(between(300, 1500))
      await sleep(after)
      await restartHub()
      return { victim: host, detail: `hub restarted ${after} ms after the crash` }
    },
  },
  ...(withVm
    ? [
        vmFault('vm crash (QEMU killed)', 'SIGKILL of its QEMU', ['vm1'], (host) => {
          try {
            process.kill(Number(readFileSync(state.lab.hosts[host]?.libvirt.qemuPidFile, 'utf8')), 'SIGKILL')
          } catch {}
        }),
        vmFault('guest hang (NMI panic)', 'running to libvirt, its heartbeat stopped', ['vm1'], (host) =>
          quiet('virsh', ['-c', state.lab.hosts[host].libvirt.uri, 'inject-nmi', 'vm1']),
        ),
        vmFault('in-guest app crash', 'guest-app in vm1', ['guest-app'], () =>
          quiet('pkill', ['-KILL', '-f', join(labDir, 'guest-app.sh')]),
        ),
      ]
    : []),
  {
    kind: 'two app crashes at once',
    weight: 6,
    fences: 'none',
    async run() {
      const hosts = []
      for (const app of APPS) {
        const host = await whereRuns(app)
        appCrash(host, app)
        hosts.push(host)
      }
      return { victim: null, detail: `web on ${hosts[0]}, db on ${hosts[1]}`, seen: APPS }
    },
  },
]
const FAULTS = ALL_FAULTS.filter((f) => !values.only || f.kind.includes(values.only))
if (FAULTS.length === 0) {
  console.error(`--only ${values.only}: no such fault kind (${ALL_FAULTS.map((f) => f.kind).join('; ')})`)
  process.exit(2)
}
const totalWeight = FAULTS.reduce((s, f) => s + f.weight, 0)
function drawFault() {
  let x = random() * totalWeight
  for (const f of FAULTS) {
    x -= f.weight
    if (x < 0) return f
  }
  return FAULTS.at(-1)
}

// --- ground truth and checks -------------------------------------------------------------------
/** Witness lines of a workload: [{host, ms}] in time order. */
function witness(name) {
  const file = join(labDir, `witness-${name}.log`)
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [host, ns] = l.split(' ')
      return { host, ms: Number(BigInt(ns) / 1_000_000n) }
    })
    .sort((a, b) => a.ms - b.ms)
}
/**
 * Runs of one host's lines (a new run after a gap longer than the workload's: a copy stopped), and
 * every pair of runs on different hosts that overlap in time: two copies alive at once.
 */
function segments(name) {
  const open = new Map()
  const out = []
  for (const l of witness(name)) {
    const s = open.get(l.host)
    if (s && l.ms - s.end <= WORKLOADS[name]) s.end = l.ms
    else {
      const seg = { host: l.host, start: l.ms, end: l.ms }
      open.set(l.host, seg)
      out.push(seg)
    }
  }
  return out
}
function doubleRuns(app) {
  const segs = segments(app)
  const found = []
  for (let i = 0; i < segs.length; i++)
    for (let j = i + 1; j < segs.length; j++) {
      const a = segs[i]
      const b = segs[j]
      if (a.host !== b.host && a.start <= b.end && b.start <= a.end)
        found.push({ app, a, b, overlapMs: Math.min(a.end, b.end) - Math.max(a.start, b.start) })
    }
  return found
}
/** Longest gap between consecutive witness lines of a workload in [from, to] (its outage). */
function outage(app, from, to) {
  const lines = witness(app).filter((l) => l.ms >= from - WORKLOADS[app] && l.ms <= to)
  let worst = 0
  for (let i = 1; i < lines.length; i++) worst = Math.max(worst, lines[i].ms - lines[i - 1].ms)
  return worst
}
/** Moves of a workload between hosts in [from, to], per the witness log. */
function moves(app, from, to) {
  // The copy that was running when the fault began wrote its last line shortly before it.
  const segs = segments(app).filter((s) => s.end >= from - WORKLOADS[app] - 500 && s.start <= to)
  let n = 0
  for (let i = 1; i < segs.length; i++) if (segs[i].host !== segs[i - 1].host) n++
  return n
}

/** Everything settled: hosts healthy, apps running and writing, no fence in flight. */
async function quiescent() {
  try {
    // The guest agent (node vm1) is listed too; hosts are what must be healthy.
    const hosts = (await api('/api/nodes')).nodes.filter((n) => hostNames().includes(n.id))
    if (hosts.length !== hostNames().length || !hosts.every((n) => n.engine?.condition === 'healthy'))
      return false
    const { resources } = await api('/api/resources')
    for (const name of NAMES) if (resources.find((r) => r.id === name)?.phase !== 'running') return false
    const fence = await api('/api/fence')
    if (fence.nodes.some((n) => n.phase !== 'idle')) return false
    const now = Date.now()
    for (const name of NAMES) if (!(witness(name).at(-1)?.ms > now - WORKLOADS[name])) return false
    return true
  } catch {
    return false // the hub restarting
  }
}
async function settle(timeoutMs) {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    // A host that was powered off (crash, BMC, fence) is powered on again, as a person would, but
    // never while a fence of it is under way: powering it on under the BMC makes the fence read it
    // back on and fail (the fourth run did exactly that, and then never settled).
    const fencing = await api('/api/fence')
      .then(
        (v) =>
          new Set(v.nodes.filter((n) => n.phase !== 'idle' && n.phase !== 'confirmed').map((n) => n.node)),
      )
      .catch(() => null)
    for (const h of hostNames()) if (fencing && !fencing.has(h) && !powered(h)) powerOn(h)
    if (await quiescent()) return true
    await sleep(200)
  }
  return false
}

/** The workloads of `names` the hub has decided nothing about since `t0`, after waiting up to `timeoutMs`. */
async function unnoticed(names, t0, timeoutMs) {
  const end = Date.now() + timeoutMs
  let left = [...names]
  while (left.length > 0 && Date.now() < end) {
    const still = []
    for (const name of left) {
      const { decisions } = await api(`/api/decisions?resource=${name}&limit=20`).catch(() => ({
        decisions: [],
      }))
      if (!decisions.some((d) => d.at >= t0)) still.push(name)
    }
    left = still
    if (left.length > 0) await sleep(100)
  }
  return left
}

/** Waits until the hub has confirmed a fence of `host` decided after `t0`. */
async function fenceConfirmed(host, t0, timeoutMs) {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    try {
      const { decisions } = await api(`/api/decisions?node=${host}&limit=100`)
      if (decisions.some((d) => d.at >= t0 && d.kind === 'fence-result' && CONFIRMED.has(d.rule))) return
    } catch {}
    await sleep(100)
  }
}
const CONFIRMED = new Set(['fence.confirmed', 'fence.status-read-back', 'fence.proven-off'])
const FENCE_RULES = new Set(['fence.dead', 'fence.isolated', 'fence.stop-failed', 'fence.operator'])
async function fencesSince(t) {
  const { decisions } = await api('/api/decisions?limit=1000')
  return decisions.filter((d) => d.at >= t && d.kind === 'fence' && FENCE_RULES.has(d.rule))
}

// --- the run ---------------------------------------------------------------------------------------
const faults = Number(values.faults)
const records = []
let stopReason = null
const startedAt = Date.now()
let interrupted = false
for (const signal of ['SIGINT', 'SIGTERM'])
  process.on(signal, () => {
    interrupted = true
  })
try {
  lab(
    'up',
    '--hosts',
    values.hosts,
    '--http',
    http,
    '--max-fences',
    '100000',
    '--max-restarts',
    '100000',
    ...(withVm ? [] : ['--no-vm']),
  )
  state = JSON.parse(readFileSync(join(labDir, 'lab.json'), 'utf8'))
  if (!(await settle(60_000))) throw new Error('the lab never became quiescent')
  for (let i = 0; i < faults; i++) {
    if (interrupted) {
      stopReason = `interrupted after ${i} faults`
      break
    }
    if (values.minutes && Date.now() - startedAt > Number(values.minutes) * 60_000) {
      stopReason = `--minutes ${values.minutes} reached after ${i} faults`
      break
    }
    const fault = drawFault()
    await sleep(between(200, 1200)) // a random phase against heartbeats and the engine's tick
    const t0 = Date.now()
    const { victim, detail, seen = [] } = await fault.run()
    const injectedMs = Date.now() - t0
    const unseen = await unnoticed(seen, t0, 15_000)
    // A host that must be fenced stays off until it is (then settle powers it on, as a person would).
    if (fault.fences === 'victim') await fenceConfirmed(victim, t0, 30_000)
    const settled = await settle(SETTLE_MS)
    const t1 = Date.now()
    const fences = await fencesSince(t0 - 50).catch(() => [])
    const ofVictim = fences.filter((d) => d.node === victim)
    const falseFences = fault.fences === 'none' ? fences.length : fences.length - ofVictim.length
    const record = {
      n: i + 1,
      kind: fault.kind,
      victim,
      detail,
      injectedMs,
      settleMs: t1 - t0 - injectedMs,
      settled,
      unseen,
      fences: fences.length,
      falseFences,
      doubleFence: fault.fences === 'victim' && ofVictim.length > 1,
      missedFence: fault.fences === 'victim' && ofVictim.length === 0,
      moves: NAMES.reduce((s, name) => s + moves(name, t0, t1), 0),
      outageMs: Object.fromEntries(NAMES.map((name) => [name, outage(name, t0, t1)])),
    }
    records.push(record)
    const flags = [
      !settled && 'NOT SETTLED',
      unseen.length > 0 && `NOT NOTICED: ${unseen.join(', ')}`,
      falseFences > 0 && `FALSE FENCE x${falseFences}`,
      record.doubleFence && 'DOUBLE FENCE',
      record.missedFence && 'no fence',
    ].filter(Boolean)
    log(
      `${i + 1}/${faults} ${fault.kind} ${victim ?? ''} (${detail}): settled in ${record.settleMs} ms, fences ${fences.length}, moves ${record.moves}${flags.length ? `  <-- ${flags.join(', ')}` : ''}`,
    )
    if (!settled) {
      log(JSON.stringify({ nodes: await api('/api/nodes').catch(() => null) }))
      if (!values['keep-going']) {
        stopReason = `fault ${i + 1} (${fault.kind}) never settled`
        break
      }
    }
  }
} finally {
  const doubles = NAMES.flatMap(doubleRuns)
  report(doubles)
  if (values.logs) await keepLogs(values.logs)
  try {
    lab('down')
  } catch (err) {
    log(`lab down failed: ${err}`)
  }
  rmSync(dir, { recursive: true, force: true })
}

/** The lab's own files (not its libvirt state or disk) and the hub's decisions, for a post-mortem. */
async function keepLogs(to) {
  mkdirSync(to, { recursive: true })
  for (const name of readdirSync(labDir))
    if (/\.(log|yaml|json|sh|sqlite|sqlite-wal|sqlite-shm)$/.test(name))
      copyFileSync(join(labDir, name), join(to, name))
  const decisions = await api('/api/decisions?limit=1000').catch((err) => ({ error: String(err) }))
  writeFileSync(join(to, 'decisions.json'), JSON.stringify(decisions, null, 1))
  log(`lab logs and the hub's decisions kept in ${to}`)
}

function report(doubles) {
  const rows = FAULTS.map((f) => {
    const rs = records.filter((r) => r.kind === f.kind)
    const settles = rs.filter((r) => r.settled).map((r) => r.settleMs)
    const outages = rs.flatMap((r) => Object.values(r.outageMs))
    return {
      fault: f.kind,
      runs: rs.length,
      fences: rs.reduce((s, r) => s + r.fences, 0),
      'false fences': rs.reduce((s, r) => s + r.falseFences, 0),
      'double fences': rs.filter((r) => r.doubleFence).length,
      'missed fences': rs.filter((r) => r.missedFence).length,
      moves: rs.reduce((s, r) => s + r.moves, 0),
      'not settled': rs.filter((r) => !r.settled).length,
      'not noticed': rs.filter((r) => r.unseen.length > 0).length,
      'settle median ms': settles.length ? median(settles) : '-',
      'worst outage ms': outages.length ? Math.max(...outages) : '-',
    }
  })
  const summary = {
    faults: records.length,
    fences: records.reduce((s, r) => s + r.fences, 0),
    failovers: records.reduce((s, r) => s + r.moves, 0),
    falseFences: records.reduce((s, r) => s + r.falseFences, 0),
    doubleFences: records.filter((r) => r.doubleFence).length,
    doubleRuns: doubles.length,
    lost: records.filter((r) => !r.settled).length,
    unnoticed: records.filter((r) => r.unseen.length > 0).length,
    minutes: Math.round((Date.now() - startedAt) / 600) / 100,
    settleP99Ms: quantile(
      records.filter((r) => r.settled).map((r) => r.settleMs),
      0.99,
    ),
  }
  console.log(
    JSON.stringify(
      {
        bench: 'chaos',
        at: new Date().toISOString(),
        seed: Number(values.seed),
        hosts: Number(values.hosts),
        stopReason,
        summary,
        byKind: rows,
        doubleRuns: doubles,
        records,
      },
      null,
      2,
    ),
  )
  console.log(
    `\nChaos run: ${summary.faults} faults, seed ${values.seed}, ${values.hosts} hosts, ${summary.minutes} min${stopReason ? ` (stopped: ${stopReason})` : ''}\n`,
  )
  console.log(markdownTable(rows, Object.keys(rows[0])))
  console.log(
    `\nFences ${summary.fences}, failovers (workload moves) ${summary.failovers}, false fences ${summary.falseFences}, double fences ${summary.doubleFences}, double-run intervals ${summary.doubleRuns}, lost (not settled in ${SETTLE_MS / 1000} s) ${summary.lost}, faults not noticed ${summary.unnoticed}`,
  )
}
