#!/usr/bin/env node
// bench/chaos: random faults on the lab, one after another, each followed by quiescence and checks
// against ground truth that does not come from Vigil. Not a test (not in CI): prints JSON and a table.
//
//   node bench/chaos/run.mjs --faults 1000 [--seed 1] [--hosts 3] [--minutes M] [--keep-going] [--no-vm]
//                            [--only KIND] [--hub-group 2|3]
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
//
// --hub-group N: the lab's hub is a hub group of N hubs on a 3-member etcd (scripts/lab.mjs
// --hub-group; docs/ha.md), each hub on a lab host of its own with its embedded broker. The run then
// asks each hub who leads (GET /api/group) and settles on the leader's view; quiescence also needs
// exactly one leader and every other hub a standby of it, every etcd member answering, and every
// standby hearing every host. Faults of the group, besides the others:
//   hub leader kill              SIGKILL of the leader (its broker with it), started again 2-6 s later
//   hub leader stop/continue     SIGSTOP of the leader for 2-5 s (its lease is 2 s), then SIGCONT
//   hub-etcd partition           the leader's packets to etcd's client ports dropped for 3-8 s
//   etcd member kill             SIGKILL of one etcd member, started again 2-10 s later
//   hub leader kill, host crash 0.5 s later   (the host must be fenced once, by the next leader)
// and the single hub's faults that act on "the hub" act on the group: "hub + broker restart" and
// "host crash, hub restart mid-failover" kill and restart whichever hub leads at that moment; "hub
// cut from all hosts" drops every hub's traffic to and from the workload hosts (the hubs keep etcd
// and the BMCs). Fences are counted from every hub's decisions, only those whose intent the leader
// committed to etcd (a fence decided by a hub deposed before its guarded write was never carried
// out). Checked after each fault besides the above:
//   deposed epoch   an agent (or the guest agent) ran a command ('command accepted' in its log) of
//                   epoch e after a hub took over under a newer epoch (its "now leads" log line)
//   BMC fences      the BMCs' power-offs (<host>-bmc-off.log) since the previous check, the runner's own
//                   left out: one of a host that must not be fenced is a false fence, two of the
//                   victim a double fence, none of it a missed fence (whichever of this and the
//                   decisions shows more)
//   no intent       a power-off by a host's BMC (<host>-bmc-off.log, the chaos runner's own
//                   'power off (BMC)' excluded by time) without a fence intent of that host in etcd
//                   (/vigil/default/intents/<epoch>/<action>) recorded before it, at most 60 s before
// Loss is iptables' statistic match; delay and jitter are netem's in user space (this kernel has no
// netem: packages/testbed/src/netdelay.ts, an NFQUEUE and native/netdelay.c). A disk hang
// is a SIGSTOP of the bindfs through which one host reaches the shared disk (scripts/lab.mjs).
import { execFileSync, spawn } from 'node:child_process'
import {
  closeSync,
  copyFileSync,
  existsSync,
  fstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { etcdAnswers, setPacketLoss, startNetworkDelay } from '@vigil/testbed'
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
    /** A hub group of this many hubs (2 or 3) on a 3-member etcd instead of the one hub. */
    'hub-group': { type: 'string' },
  },
})
/** The hub group's size, or 0: the one hub. */
const groupSize = values['hub-group'] === undefined ? 0 : Number(values['hub-group'])
const grouped = groupSize > 0
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
/** A hub group's hub's API, on its own lab host's address. */
const hubApi = async (hub, path) => {
  const res = await fetch(`${state.hubs[hub].http}${path}`, { signal: AbortSignal.timeout(2000) })
  return res.json()
}
const hubNames = () => Object.keys(state.hubs ?? {})
/** A group's hub that leads now, each hub asked (two that say so: the newer epoch), or null. */
async function leaderHub() {
  const views = await Promise.all(hubNames().map((h) => hubApi(h, '/api/group').catch(() => null)))
  let lead = null
  hubNames().forEach((h, i) => {
    if (views[i]?.role === 'leader' && (lead === null || views[i].epoch > lead.epoch))
      lead = { hub: h, epoch: views[i].epoch }
  })
  return lead?.hub ?? null
}
/** Waits up to `timeoutMs` for a hub of `among` to lead; its name, or null. */
async function waitLeader(timeoutMs, among = hubNames()) {
  const end = Date.now() + timeoutMs
  for (;;) {
    const lead = await leaderHub()
    if (lead && among.includes(lead)) return lead
    if (Date.now() >= end) return null
    await sleep(50)
  }
}
/** The hub's API: alone, the hub; in a group, whichever hub leads now. */
const api = async (path) => {
  if (grouped) {
    const lead = await leaderHub()
    if (!lead) throw new Error('no hub leads')
    return hubApi(lead, path)
  }
  const res = await fetch(`http://${http}${path}`, { signal: AbortSignal.timeout(2000) })
  return res.json()
}
/**
 * Decision records: alone, the hub's; in a group, every hub's (each records what it decided while
 * it led), newest first, each once.
 */
async function decisionsOf(query) {
  if (!grouped) return (await api(`/api/decisions?${query}`)).decisions
  const all = await Promise.all(
    hubNames().map((h) =>
      hubApi(h, `/api/decisions?${query}`)
        .then((r) => r.decisions)
        .catch(() => []),
    ),
  )
  const byId = new Map(all.flat().map((d) => [d.id, d]))
  return [...byId.values()].sort((a, b) => b.at - a.at)
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
/** A signal to a detached process of the lab (its process group: a hub's ipmitool with it). */
function signal(pid, sig) {
  try {
    process.kill(-pid, sig)
  } catch {
    try {
      process.kill(pid, sig)
    } catch {}
  }
}
/** Starts `argv` detached, its output appended to `log`; its pid. */
function startDetached(argv, log) {
  const fd = openSync(log, 'a')
  const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  child.unref()
  return child.pid
}
/** A group's hub started again as the lab started it (it rejoins as a standby, or leads). */
function startHub(hub) {
  state.pids[hub] = startDetached(state.hubs[hub].argv, state.hubs[hub].log)
  saveState()
}
/**
 * The hub (and its embedded broker) SIGKILLed and started again with the same arguments; in a
 * group, whichever hub leads now (its name; null if none did).
 */
async function restartHub() {
  if (grouped) {
    const lead = await waitLeader(20_000)
    if (!lead) return null
    signal(state.pids[lead], 'SIGKILL')
    await sleep(100)
    startHub(lead)
    return lead
  }
  signal(state.pids.hub, 'SIGKILL')
  await sleep(100)
  state.pids.hub = startDetached(state.hubArgv, join(labDir, 'hub.log'))
  saveState()
  return 'hub'
}
/** Every hub's traffic to and from the workload hosts dropped (they keep etcd and the BMCs), or let through. */
function hubsCutFromHosts(cut) {
  for (const hub of hubNames())
    for (const host of hostNames()) {
      const { ip } = state.lab.hosts[host]
      for (const rule of [
        ['INPUT', '-s', ip],
        ['OUTPUT', '-d', ip],
      ]) {
        const [chain, ...match] = rule
        const iptables = (op) =>
          execFileSync(
            'ip',
            ['netns', 'exec', state.hubs[hub].netns, 'iptables', op, chain, ...match, '-j', 'DROP'],
            {
              stdio: 'ignore',
            },
          )
        if (cut) iptables('-I')
        else
          for (;;)
            try {
              iptables('-D')
            } catch {
              break
            }
      }
    }
}
/** A hub's packets to etcd's client ports dropped (test/e2e/hub-group.test.ts's cutFromEtcd), or let through. */
function cutFromEtcd(hub, cut) {
  const ports = state.etcd.endpoints.map((e) => new URL(e).port).join(',')
  const host = new URL(state.etcd.endpoints[0]).hostname
  const iptables = (op) =>
    execFileSync(
      'ip',
      [
        'netns',
        'exec',
        state.hubs[hub].netns,
        'iptables',
        op,
        'OUTPUT',
        '-p',
        'tcp',
        '-d',
        host,
        '-m',
        'multiport',
        '--dports',
        ports,
        '-j',
        'DROP',
      ],
      { stdio: 'ignore' },
    )
  if (cut) iptables('-I')
  else
    for (;;)
      try {
        iptables('-D')
      } catch {
        break
      }
}
/** An etcd member started again on its data directory and ports. */
function startEtcdMember(member) {
  state.pids[member.name] = startDetached(member.argv, member.log)
  saveState()
}
/** Every key under `prefix` in etcd (through the first member that answers), or null. */
async function etcdPrefix(prefix) {
  const key = Buffer.from(prefix)
  const end = Buffer.from(prefix)
  end[end.length - 1]++
  for (const m of state.etcd.members) {
    try {
      const res = await fetch(`${m.clientUrl}/v3/kv/range`, {
        method: 'POST',
        body: JSON.stringify({ key: key.toString('base64'), range_end: end.toString('base64') }),
        signal: AbortSignal.timeout(3000),
      })
      if (!res.ok) continue
      const { kvs = [] } = await res.json()
      return kvs.map((kv) => ({
        key: Buffer.from(kv.key, 'base64').toString(),
        value: Buffer.from(kv.value, 'base64').toString(),
      }))
    } catch {}
  }
  return null
}
/** Where an app runs now, per the hub. */
async function whereRuns(app) {
  // A group with no leader (or a hub restarting): up to 20 s for an answer, else nowhere known.
  const end = Date.now() + 20_000
  for (;;) {
    try {
      const { resources } = await api('/api/resources')
      return resources.find((r) => r.id === app)?.node ?? null
    } catch (err) {
      if (Date.now() >= end) {
        log(`where ${app} runs: no answer (${err.message})`)
        return null
      }
      await sleep(200)
    }
  }
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

/** The hub group's own faults (--hub-group): its hubs and its etcd. */
const GROUP_FAULTS = [
  {
    kind: 'hub leader kill',
    weight: 10,
    fences: 'none',
    async run() {
      const downMs = Math.round(between(2000, 6000))
      const lead = await waitLeader(20_000)
      if (!lead) return { victim: null, detail: 'no hub led' }
      const t = Date.now()
      signal(state.pids[lead], 'SIGKILL')
      const next = await waitLeader(
        downMs,
        hubNames().filter((h) => h !== lead),
      )
      const tookMs = Date.now() - t
      await sleep(downMs - (Date.now() - t))
      startHub(lead)
      return {
        victim: null,
        detail: `${lead} killed, started again after ${downMs} ms; ${next ? `${next} led after ${tookMs} ms` : 'no other hub led meanwhile'}`,
      }
    },
  },
  {
    kind: 'hub leader stop/continue',
    weight: 10,
    fences: 'none',
    async run() {
      const ms = Math.round(between(2000, 5000))
      const lead = await waitLeader(20_000)
      if (!lead) return { victim: null, detail: 'no hub led' }
      const t = Date.now()
      signal(state.pids[lead], 'SIGSTOP')
      let next = null
      try {
        next = await waitLeader(
          ms,
          hubNames().filter((h) => h !== lead),
        )
        await sleep(ms - (Date.now() - t))
      } finally {
        signal(state.pids[lead], 'SIGCONT')
      }
      return { victim: null, detail: `${lead} stopped for ${ms} ms; ${next ?? 'no other hub'} led meanwhile` }
    },
  },
  {
    kind: 'hub-etcd partition',
    weight: 10,
    fences: 'none',
    async run() {
      const ms = Math.round(between(3000, 8000))
      const lead = await waitLeader(20_000)
      if (!lead) return { victim: null, detail: 'no hub led' }
      const t = Date.now()
      cutFromEtcd(lead, true)
      let next = null
      try {
        next = await waitLeader(
          ms,
          hubNames().filter((h) => h !== lead),
        )
        await sleep(ms - (Date.now() - t))
      } finally {
        cutFromEtcd(lead, false)
      }
      return {
        victim: null,
        detail: `${lead} cut from etcd for ${ms} ms; ${next ?? 'no other hub'} led meanwhile`,
      }
    },
  },
  {
    kind: 'etcd member kill',
    weight: 10,
    fences: 'none',
    async run() {
      const member = pick(state.etcd.members)
      const ms = Math.round(between(2000, 10_000))
      signal(state.pids[member.name], 'SIGKILL')
      await sleep(ms)
      startEtcdMember(member)
      return { victim: null, detail: `${member.name} down for ${ms} ms` }
    },
  },
  {
    kind: 'hub leader kill, host crash 0.5 s later',
    weight: 6,
    fences: 'victim',
    async run() {
      const host = pick(hostNames())
      const downMs = Math.round(between(3000, 6000))
      const lead = await waitLeader(20_000)
      // Nothing done: no fence to expect.
      if (!lead) return { victim: host, detail: 'no hub led: nothing done', skipped: true }
      const t = Date.now()
      signal(state.pids[lead], 'SIGKILL')
      await sleep(500)
      crash(host)
      const next = await waitLeader(
        downMs,
        hubNames().filter((h) => h !== lead),
      )
      const tookMs = Date.now() - t
      await sleep(downMs - (Date.now() - t))
      startHub(lead)
      return {
        victim: host,
        detail: `${lead} killed (back after ${downMs} ms); ${next ? `${next} led after ${tookMs} ms` : 'no other hub led meanwhile'}`,
      }
    },
  },
]

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
      // The runner's own power-off is no fence: the intent check leaves it out, by its time.
      const from = Date.now()
      bmc(host, 'chassis', 'power', 'off')
      runnerPowerOffs.push({ host, from, to: Date.now() })
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
      // A group: every hub cut from every host (not from etcd or the BMCs); alone: the hub's link.
      if (grouped) hubsCutFromHosts(true)
      else hubLink(false)
      await sleep(ms)
      if (grouped) hubsCutFromHosts(false)
      else hubLink(true)
      return { victim: null, detail: `${ms} ms` }
    },
  },
  {
    kind: 'hub + broker restart',
    weight: 6,
    fences: 'none',
    async run() {
      const hub = await restartHub()
      return {
        victim: null,
        detail: grouped ? `the leader ${hub}: SIGKILL, started again` : 'SIGKILL, started again',
      }
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
      const hub = await restartHub()
      return {
        victim: host,
        detail: `${grouped ? `the leader ${hub}` : 'hub'} restarted ${after} ms after the crash`,
      }
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
          quiet('pkill', ['-KILL', '-f', join(labDir, 'witness-guest-app.log')]),
        ),
      ]
    : []),
  ...(grouped ? GROUP_FAULTS : []),
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

/**
 * A group settled: every hub up, exactly one leads and the others are its standbys, every etcd
 * member answers, and every standby hears every host (an agent reconnects to a restarted hub's
 * broker with a backoff; a host the next leader never heard would wait out the startup grace).
 * The leader's name, or null.
 */
async function groupSettled() {
  const views = await Promise.all(hubNames().map((h) => hubApi(h, '/api/group').catch(() => null)))
  if (views.some((v) => v?.role !== 'leader' && v?.role !== 'standby')) return null
  const leaders = hubNames().filter((_, i) => views[i].role === 'leader')
  if (leaders.length !== 1) return null
  const epoch = views[hubNames().indexOf(leaders[0])].epoch
  if (views.some((v) => v.leader?.epoch !== epoch)) return null
  for (const m of state.etcd.members) if (!(await etcdAnswers(m.clientUrl))) return null
  for (const hub of hubNames().filter((h) => h !== leaders[0])) {
    const { nodes } = await hubApi(hub, '/api/nodes')
    // A standby judges nothing (its nodes are "unknown"): it hears a host if its heartbeat is fresh.
    const hears = (h) => Date.now() - (nodes.find((n) => n.id === h)?.lastHeartbeatAt ?? 0) < 1000
    if (!hostNames().every(hears)) return null
  }
  return leaders[0]
}

/** Everything settled: hosts healthy, apps running and writing, no fence in flight. */
async function quiescent() {
  try {
    let get = api
    if (grouped) {
      const lead = await groupSettled()
      if (!lead) return false
      get = (path) => hubApi(lead, path)
    }
    // The guest agent (node vm1) is listed too; hosts are what must be healthy.
    const hosts = (await get('/api/nodes')).nodes.filter((n) => hostNames().includes(n.id))
    if (hosts.length !== hostNames().length || !hosts.every((n) => n.engine?.condition === 'healthy'))
      return false
    const { resources } = await get('/api/resources')
    for (const name of NAMES) if (resources.find((r) => r.id === name)?.phase !== 'running') return false
    const fence = await get('/api/fence')
    if (fence.nodes.some((n) => n.phase !== 'idle')) return false
    const now = Date.now()
    for (const name of NAMES) if (!(witness(name).at(-1)?.ms > now - WORKLOADS[name])) return false
    return true
  } catch {
    return false // the hub restarting (a group: a hub, or its leader)
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
      const decisions = await decisionsOf(`resource=${name}&limit=20`).catch(() => [])
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
      const decisions = await decisionsOf(`node=${host}&limit=100`)
      if (decisions.some((d) => d.at >= t0 && d.kind === 'fence-result' && CONFIRMED.has(d.rule))) return
    } catch {}
    await sleep(100)
  }
}
const CONFIRMED = new Set(['fence.confirmed', 'fence.status-read-back', 'fence.proven-off'])
const FENCE_RULES = new Set(['fence.dead', 'fence.isolated', 'fence.stop-failed', 'fence.operator'])
/**
 * Fences decided since `t`. In a group, only those the deciding leader recorded as an intent in
 * etcd (a hub deposed before its guarded write carried nothing out; the next leader decides
 * afresh); `uncommitted` counts the others.
 */
async function fencesSince(t) {
  const decided = (await decisionsOf('limit=1000')).filter(
    (d) => d.at >= t && d.kind === 'fence' && FENCE_RULES.has(d.rule),
  )
  if (!grouped) return { fences: decided, uncommitted: 0 }
  await readIntents()
  const committed = new Set([...intents.values()].filter((i) => i.type === 'fence').map((i) => i.decision))
  const fences = decided.filter((d) => committed.has(d.id))
  return { fences, uncommitted: decided.length - fences.length }
}

// --- the hub group's invariants (ground truth: agents' and hubs' logs, the BMCs, etcd) -----------
/** The runner's own BMC power-offs ('power off (BMC)'): no fence, so no intent. */
const runnerPowerOffs = []
/** Every intent read from etcd so far, by key (kept: a takeover prunes very old ones). */
const intents = new Map()
async function readIntents() {
  const kvs = await etcdPrefix('/vigil/default/intents/')
  for (const { key, value } of kvs ?? []) if (!intents.has(key)) intents.set(key, JSON.parse(value))
  return kvs !== null
}
/** Where reading each growing log resumed, and its unfinished last line. */
const tails = new Map()
/** The lines appended to `file` since the last call. */
function newLines(file) {
  let fd
  try {
    fd = openSync(file, 'r')
  } catch {
    return []
  }
  try {
    const size = fstatSync(fd).size
    const at = tails.get(file) ?? { pos: 0, rest: '' }
    if (size <= at.pos) return []
    const buf = Buffer.alloc(size - at.pos)
    readSync(fd, buf, 0, buf.length, at.pos)
    const lines = (at.rest + buf.toString('utf8')).split('\n')
    tails.set(file, { pos: size, rest: lines.pop() })
    return lines
  } finally {
    closeSync(fd)
  }
}
const jsonLines = (file, msg) =>
  newLines(file)
    .filter((l) => l.includes(`"msg":"${msg}"`))
    .flatMap((l) => {
      try {
        return [JSON.parse(l)]
      } catch {
        return []
      }
    })
/** Every takeover: {hub, epoch, at} from each hub's log ("this hub now leads the hub group"). */
const takeovers = []
/** Every command any agent ran: {file, node, epoch, at, action, command}. */
const accepted = []
function readGroupLogs() {
  for (const hub of hubNames())
    for (const l of jsonLines(state.hubs[hub].log, 'this hub now leads the hub group'))
      takeovers.push({ hub, epoch: l.epoch, at: Date.parse(l.time) })
  // The agents' logs (host1.log), and wherever a guest agent's lines go (host1-guest.log).
  for (const name of readdirSync(labDir).filter((f) => /^host\d+.*\.log$/.test(f)))
    for (const l of jsonLines(join(labDir, name), 'command accepted'))
      accepted.push({
        file: name,
        node: l.node,
        epoch: l.epoch,
        at: Date.parse(l.time),
        action: l.action,
        command: l.command,
      })
}
/** The epoch that led at `at` (the newest takeover before it), or null. */
const epochAt = (at) => takeovers.filter((t) => t.at <= at).reduce((e, t) => Math.max(e ?? 0, t.epoch), null)
/**
 * Commands run from a deposed epoch: a command of epoch e accepted after a hub took over under a
 * newer epoch (whatever it is, nothing is allowed).
 */
function deposedCommands() {
  return accepted.flatMap((c) => {
    const newer = takeovers.filter((t) => t.epoch > c.epoch && t.at < c.at).sort((a, b) => a.at - b.at)[0]
    return newer ? [{ ...c, takeover: newer, lateMs: c.at - newer.at }] : []
  })
}
/** Every power-off by a host's BMC: {host, at}, the runner's own marked. */
function bmcOffs() {
  return hostNames().flatMap((host) => {
    const file = join(labDir, `${host}-bmc-off.log`)
    if (!existsSync(file)) return []
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const at = Number(l)
        const runner = runnerPowerOffs.some((w) => w.host === host && at >= w.from - 50 && at <= w.to + 500)
        return { host, at, runner }
      })
  })
}
/** A BMC power-off's fence intent: of that host, recorded before it and at most 60 s before. */
const FENCE_INTENT_WINDOW_MS = 60_000
function offsWithoutIntent() {
  const fences = [...intents.values()].filter((i) => i.type === 'fence')
  return bmcOffs()
    .filter((o) => !o.runner)
    .flatMap((o) => {
      const intent = fences
        .filter((i) => i.node === o.host && i.at <= o.at && i.at >= o.at - FENCE_INTENT_WINDOW_MS)
        .sort((a, b) => b.at - a.at)[0]
      return intent ? [] : [{ ...o, leadingEpoch: epochAt(o.at) }]
    })
}

// --- the run ---------------------------------------------------------------------------------------
/** What each check has already reported (each finding is booked once, to the fault it came in). */
const reported = new Map()
function newOnes(check, found, keyOf) {
  if (!reported.has(check)) reported.set(check, new Set())
  const seen = reported.get(check)
  const fresh = found.filter((f) => !seen.has(keyOf(f)))
  for (const f of fresh) seen.add(keyOf(f))
  return fresh
}
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
    ...(grouped ? ['--hub-group', String(groupSize)] : []),
  )
  state = JSON.parse(readFileSync(join(labDir, 'lab.json'), 'utf8'))
  if (!(await settle(grouped ? 120_000 : 60_000))) throw new Error('the lab never became quiescent')
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
    const { victim, detail, seen = [], skipped = false } = await fault.run()
    const mustFence = fault.fences === 'victim' && !skipped
    const injectedMs = Date.now() - t0
    const unseen = await unnoticed(seen, t0, 15_000)
    // A host that must be fenced stays off until it is (then settle powers it on, as a person would).
    if (mustFence) await fenceConfirmed(victim, t0, 30_000)
    const settled = await settle(SETTLE_MS)
    const t1 = Date.now()
    const { fences, uncommitted } = await fencesSince(t0 - 50).catch(() => ({ fences: [], uncommitted: 0 }))
    const ofVictim = fences.filter((d) => d.node === victim)
    const falseFences = fault.fences === 'none' ? fences.length : fences.length - ofVictim.length
    const record = {
      n: i + 1,
      at: new Date(t0).toISOString(),
      kind: fault.kind,
      victim,
      detail,
      injectedMs,
      settleMs: t1 - t0 - injectedMs,
      settled,
      unseen,
      fences: fences.length,
      falseFences,
      doubleFence: mustFence && ofVictim.length > 1,
      missedFence: mustFence && ofVictim.length === 0,
      moves: NAMES.reduce((s, name) => s + moves(name, t0, t1), 0),
      outageMs: Object.fromEntries(NAMES.map((name) => [name, outage(name, t0, t1)])),
      doubleRuns: newOnes('double', NAMES.flatMap(doubleRuns), (d) => `${d.app} ${d.a.start} ${d.b.start}`),
    }
    if (grouped) {
      // The group's invariants, on everything seen so far; what is new is booked to this fault.
      readGroupLogs()
      const intentsRead = await readIntents()
      record.takeovers = takeovers.filter((t) => t.at >= t0 && t.at <= t1).map((t) => `${t.hub}@${t.epoch}`)
      record.uncommittedFences = uncommitted
      record.deposedCommands = newOnes('deposed', deposedCommands(), (c) => `${c.file} ${c.command}`)
      // Unless etcd could not be read (then the next fault's check sees them).
      record.offsWithoutIntent = intentsRead
        ? newOnes('no-intent', offsWithoutIntent(), (o) => `${o.host} ${o.at}`)
        : []
      // The BMCs' power-offs since the last check (the runner's own left out), as ground truth for
      // the fence checks: whichever of it and the decisions shows more counts.
      record.bmcOffs = newOnes(
        'bmc-off',
        bmcOffs().filter((o) => !o.runner),
        (o) => `${o.host} ${o.at}`,
      ).map((o) => o.host)
      const offsOfVictim = record.bmcOffs.filter((h) => h === victim).length
      const falseOffs = fault.fences === 'none' ? record.bmcOffs.length : record.bmcOffs.length - offsOfVictim
      record.falseFencesByBmc = falseOffs
      record.falseFences = Math.max(record.falseFences, falseOffs)
      record.doubleFence ||= mustFence && offsOfVictim > 1
      record.missedFence ||= mustFence && offsOfVictim === 0
    }
    records.push(record)
    const flags = [
      !settled && 'NOT SETTLED',
      unseen.length > 0 && `NOT NOTICED: ${unseen.join(', ')}`,
      record.falseFences > 0 &&
        `FALSE FENCE x${record.falseFences}${record.falseFencesByBmc ? ` (BMC power-offs: ${record.bmcOffs.join(', ')})` : ''}`,
      record.doubleFence && 'DOUBLE FENCE',
      record.missedFence && 'no fence',
      record.doubleRuns.length > 0 && `DOUBLE RUN x${record.doubleRuns.length}`,
      record.deposedCommands?.length > 0 && `COMMAND OF A DEPOSED EPOCH x${record.deposedCommands.length}`,
      record.offsWithoutIntent?.length > 0 && `FENCE WITHOUT INTENT x${record.offsWithoutIntent.length}`,
    ].filter(Boolean)
    log(
      `${i + 1}/${faults} ${fault.kind} ${victim ?? ''} (${detail}): settled in ${record.settleMs} ms, fences ${fences.length}, moves ${record.moves}${grouped ? `, takeovers ${record.takeovers.join(' ') || 0}` : ''}${flags.length ? `  <-- ${flags.join(', ')}` : ''}`,
    )
    for (const c of record.deposedCommands ?? [])
      log(
        `  ${c.file}: ${c.action} of epoch ${c.epoch} accepted ${c.lateMs} ms after ${c.takeover.hub} took over under epoch ${c.takeover.epoch}`,
      )
    for (const o of record.offsWithoutIntent ?? [])
      log(
        `  ${o.host} powered off by its BMC at ${o.at} (epoch ${o.leadingEpoch} leading) with no fence intent`,
      )
    if (!settled) {
      log(JSON.stringify({ nodes: await api('/api/nodes').catch(() => null) }))
      // A group: what each hub says of it (a group that lost its leader for good shows here).
      if (grouped)
        for (const hub of hubNames())
          log(`${hub}: ${JSON.stringify(await hubApi(hub, '/api/group').catch((err) => String(err)))}`)
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
    if (/\.(log|yaml|json|sh|sqlite|sqlite-wal|sqlite-shm|pem)$/.test(name) && !name.endsWith('key.pem'))
      copyFileSync(join(labDir, name), join(to, name))
  const decisions = await decisionsOf('limit=1000')
    .then((d) => ({ decisions: d }))
    .catch((err) => ({ error: String(err) }))
  writeFileSync(join(to, 'decisions.json'), JSON.stringify(decisions, null, 1))
  if (grouped) {
    for (const m of state.etcd.members) if (existsSync(m.log)) copyFileSync(m.log, join(to, `${m.name}.log`))
    await readIntents().catch(() => {})
    writeFileSync(join(to, 'intents.json'), JSON.stringify(Object.fromEntries(intents), null, 1))
    writeFileSync(join(to, 'takeovers.json'), JSON.stringify({ takeovers, accepted }, null, 1))
  }
  log(`lab logs and the hub's decisions kept in ${to}`)
}

function report(doubles) {
  if (grouped && state) readGroupLogs()
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
      ...(grouped
        ? {
            'double runs': rs.reduce((s, r) => s + r.doubleRuns.length, 0),
            takeovers: rs.reduce((s, r) => s + (r.takeovers?.length ?? 0), 0),
            'deposed-epoch commands': rs.reduce((s, r) => s + (r.deposedCommands?.length ?? 0), 0),
            'fences without intent': rs.reduce((s, r) => s + (r.offsWithoutIntent?.length ?? 0), 0),
          }
        : {}),
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
    ...(grouped && state
      ? {
          missedFences: records.filter((r) => r.missedFence).length,
          takeovers: takeovers.length,
          commandsAccepted: accepted.length,
          deposedEpochCommands: deposedCommands().length,
          bmcPowerOffs: bmcOffs().filter((o) => !o.runner).length,
          fenceIntents: [...intents.values()].filter((i) => i.type === 'fence').length,
          fencesWithoutIntent: offsWithoutIntent().length,
          uncommittedFences: records.reduce((s, r) => s + (r.uncommittedFences ?? 0), 0),
        }
      : {}),
  }
  console.log(
    JSON.stringify(
      {
        bench: 'chaos',
        at: new Date().toISOString(),
        seed: Number(values.seed),
        hosts: Number(values.hosts),
        hubGroup: groupSize || null,
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
    `\nChaos run: ${summary.faults} faults, seed ${values.seed}, ${values.hosts} hosts${grouped ? `, a hub group of ${groupSize}` : ''}, ${summary.minutes} min${stopReason ? ` (stopped: ${stopReason})` : ''}\n`,
  )
  console.log(markdownTable(rows, Object.keys(rows[0])))
  console.log(
    `\nFences ${summary.fences}, failovers (workload moves) ${summary.failovers}, false fences ${summary.falseFences}, double fences ${summary.doubleFences}, double-run intervals ${summary.doubleRuns}, lost (not settled in ${SETTLE_MS / 1000} s) ${summary.lost}, faults not noticed ${summary.unnoticed}`,
  )
  if (grouped && state)
    console.log(
      `Hub group: takeovers ${summary.takeovers}, commands run ${summary.commandsAccepted}, of them from a deposed epoch ${summary.deposedEpochCommands}; BMC power-offs by fences ${summary.bmcPowerOffs}, fence intents ${summary.fenceIntents}, power-offs without an intent ${summary.fencesWithoutIntent}; missed fences ${summary.missedFences}; fences decided but not committed (never carried out) ${summary.uncommittedFences}`,
    )
}
