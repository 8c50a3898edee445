#!/usr/bin/env node
// bench/hub-group: how fast a hub group (docs/ha.md) recovers when its leader dies. Not a test:
// prints JSON and a table.
//
//   node bench/hub-group/run.mjs [--runs 20] [--lease-s 2]
//
// The lab: two hosts and two hub machines, each a network namespace; a 3-member etcd (Debian's)
// and an IPMI BMC (ipmi_sim) per host whose power-off kills every process of its namespace; each
// hub with its embedded broker, each agent connected to both; `web` (a process whose copies append
// "<host> <ns>" to a witness log every 50 ms) runs on one host.
//
// Two faults, each `--runs` times:
//  - leader-then-host: the leader hub is SIGKILLed, and 0.5 s later the host running web crashes.
//    Measured: host crash to web running on the other host (its first witness line), and the
//    leader's death to the new leader's takeover record.
//  - leader-only: the leader hub is SIGKILLed, nothing else: until the new leader acts (its
//    takeover record), and that nothing was fenced or moved.
// After each run the killed hub is started again (it rejoins as a standby) and a crashed host is
// powered on again (its agent started), and both are awaited before the next run.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { NetnsLab, netnsPowerControl, startBmc, startEtcdCluster } from '@vigil/testbed'
import { markdownTable, median, quantile, sleep, until } from '../lib.mjs'

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '20' },
    'lease-s': { type: 'string', default: '2' },
  },
})
const runs = Number(values.runs)
const root = join(import.meta.dirname, '..', '..')
const vigilBin = join(root, 'apps/cli/bin/vigil.js')
const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-group-'))
const HOSTS = ['node-a', 'node-b']
const HUBS = ['hub-a', 'hub-b']
const cleanups = []
const results = { 'leader-then-host': [], 'leader-only': [] }

const witnessFile = join(dir, 'witness.log')
const witness = () =>
  existsSync(witnessFile)
    ? readFileSync(witnessFile, 'utf8')
        .split('\n')
        .filter((l) => /^node-[ab] \d+$/.test(l))
        .map((l) => {
          const [host, ns] = l.split(' ')
          return { host, ms: Number(BigInt(ns) / 1_000_000n) }
        })
    : []

try {
  const lab = NetnsLab.create([...HOSTS, ...HUBS])
  cleanups.push(() => lab.destroy())
  const etcd = await startEtcdCluster({ dir: join(dir, 'etcd'), host: lab.hubIp })
  cleanups.push(() => etcd.stop())

  /** `vigil <args>` on a lab host (inside its namespace). */
  const vigilOn = (host, args) =>
    spawn('ip', ['netns', 'exec', lab.host(host).netns, process.execPath, vigilBin, ...args], {
      stdio: ['ignore', 'ignore', 'inherit'],
    })
  const bmcs = {}
  for (const host of HOSTS) {
    const ctl = netnsPowerControl(join(dir, `${host}-power.sh`), lab.host(host).netns)
    bmcs[host] = await startBmc({ hostCtl: ctl, listen: lab.hubIp })
    cleanups.push(() => bmcs[host].stop())
  }

  const clusterFile = join(dir, 'cluster.yaml')
  writeFileSync(
    clusterFile,
    [
      // Every run fences a host: the blast-radius governor (3 fences in 10 min) would hold the 4th.
      'governor: { maxFences: 1000 }',
      'nodes:',
      ...HOSTS.flatMap((h) => [`  - id: ${h}`, `    fencing: [{ devices: [bmc-${h}], timeoutMs: 10000 }]`]),
      'resources:',
      '  - id: web',
      '',
    ].join('\n'),
  )
  const hubPorts = Object.fromEntries(HUBS.map((h, i) => [h, { http: 7470 + i, mqtt: 1883 + i }]))
  const hubUrl = (h) => `http://${lab.host(h).ip}:${hubPorts[h].http}`
  const hubProcs = {}
  const startHubProc = async (h) => {
    const file = join(dir, `${h}.yaml`)
    writeFileSync(
      file,
      [
        `name: ${h}`,
        `http: { listen: '${lab.host(h).ip}:${hubPorts[h].http}' }`,
        `broker: { listen: '${lab.host(h).ip}:${hubPorts[h].mqtt}' }`,
        `store: { path: ${join(dir, `${h}.sqlite`)} }`,
        `engine: { clusterFile: ${clusterFile} }`,
        `group: { endpoints: [${etcd.endpoints.join(', ')}], leaseTtlSeconds: ${values['lease-s']}, pollMs: 100 }`,
        'fencing:',
        "  powerPollMs: 0 # a host's crash kills all it runs, which its BMC reads off: measure the fence",
        '  devices:',
        ...HOSTS.flatMap((host) => [
          `    - id: bmc-${host}`,
          '      driver: ipmi',
          `      hosts: { ${host}: [] }`,
          `      config: { host: ${bmcs[host].host}, port: ${bmcs[host].port}, username: ${bmcs[host].username}, passwordFile: ${bmcs[host].passwordFile} }`,
        ]),
        'log: { level: warn }',
        '',
      ].join('\n'),
    )
    hubProcs[h] = vigilOn(h, ['hub', '--config', file])
    await until(`${h} ready`, async () => (await fetch(`${hubUrl(h)}/readyz`).catch(() => null))?.ok, 30_000)
  }
  for (const h of HUBS) await startHubProc(h)
  cleanups.push(() => {
    for (const p of Object.values(hubProcs)) p.kill('SIGKILL')
  })
  const keys = join(dir, 'hub-keys.pem')
  writeFileSync(keys, HUBS.map((h) => readFileSync(join(dir, `${h}.sqlite.pub.pem`), 'utf8')).join(''))

  const agents = {}
  const startAgent = (host) => {
    const file = join(dir, `${host}.yaml`)
    writeFileSync(
      file,
      [
        `node: ${host}`,
        `mqtt: { url: [${HUBS.map((h) => `'mqtt://${lab.host(h).ip}:${hubPorts[h].mqtt}'`).join(', ')}] }`,
        `commands: { hubPublicKeyFile: ${keys} }`,
        'log: { level: warn }',
        'resources:',
        '  - id: web',
        '    driver: process',
        '    config:',
        `      command: [sh, -c, 'while :; do echo "${host} $(date +%s%N)" >> ${witnessFile}; sleep 0.05; done']`,
        `      pidfile: ${join(dir, `${host}-web.pid`)}`,
        '',
      ].join('\n'),
    )
    agents[host] = vigilOn(host, ['agent', '--config', file])
  }
  for (const host of HOSTS) startAgent(host)

  const api = async (h, path) =>
    (await fetch(`${hubUrl(h)}${path}`, { signal: AbortSignal.timeout(2000) })).json()
  const group = async (h) => api(h, '/api/group').catch(() => null)
  /** Both hubs up (a leader and a standby), both hosts healthy to the leader, web running. */
  const settled = async () =>
    until(
      'the group settled: a leader, a standby, both hosts healthy, web running',
      async () => {
        const views = await Promise.all(HUBS.map(group))
        const lead = HUBS.find((_, i) => views[i]?.role === 'leader')
        if (!lead || !views.every((v) => v?.role === 'leader' || v?.role === 'standby')) return undefined
        const { nodes } = await api(lead, '/api/nodes')
        const { resources } = await api(lead, '/api/resources')
        const web = resources.find((r) => r.id === 'web')
        const healthy = nodes.length === 2 && nodes.every((n) => n.engine?.condition === 'healthy')
        // The standby hears both hosts too (agents reconnect to a restarted hub's broker with backoff):
        // a host a standby never heard waits out the startup grace after a takeover.
        const standby = HUBS.find((h) => h !== lead)
        const heard =
          (await api(standby, '/api/nodes')).nodes.filter((n) => Date.now() - (n.lastHeartbeatAt ?? 0) < 1000)
            .length === 2
        return healthy && heard && web?.phase === 'running' ? { lead, victim: web.node } : undefined
      },
      90_000,
      100,
    )
  const fenceOffs = () =>
    HOSTS.reduce((n, h) => n + bmcs[h].powerLog().filter((l) => l.includes('off')).length, 0)
  const takeoverAt = async (h, after) => {
    const { decisions } = await api(h, '/api/decisions?limit=100')
    return decisions.find((d) => d.rule === 'hub.takeover' && d.at >= after)?.at
  }

  for (const fault of ['leader-then-host', 'leader-only']) {
    for (let i = 0; i < runs; i++) {
      const { lead, victim } = await settled()
      const standby = HUBS.find((h) => h !== lead)
      const survivor = HOSTS.find((h) => h !== victim)
      const offsBefore = fenceOffs()
      await sleep(300 + Math.random() * 700) // a random phase against heartbeats, ticks and renewals
      const killedAt = Date.now()
      hubProcs[lead].kill('SIGKILL')
      let crashAt = null
      if (fault === 'leader-then-host') {
        await sleep(500 - (Date.now() - killedAt))
        crashAt = Date.now()
        lab.host(victim).killAll()
      }
      const took = await until('the standby took over', () => takeoverAt(standby, killedAt), 30_000, 50)
      const row = { run: i + 1, leader: lead, takeoverMs: took - killedAt }
      if (crashAt !== null) {
        const started = await until(
          'web running elsewhere',
          () => witness().find((w) => w.host === survivor && w.ms > crashAt),
          60_000,
        ).catch(async (err) => {
          // What the hubs did instead, for whoever reads this.
          for (const h of HUBS) {
            const view = await group(h)
            const ds = await api(h, '/api/decisions?limit=40').catch(() => ({ decisions: [] }))
            process.stderr.write(`${h}: ${JSON.stringify(view)}\n`)
            for (const d of ds.decisions.reverse())
              process.stderr.write(
                `  ${new Date(d.at).toISOString()} ${d.rule} ${d.node ?? ''} ${d.resource ?? ''} ${d.summary}\n`,
              )
          }
          throw err
        })
        const lastOld = witness()
          .filter((w) => w.host === victim)
          .at(-1)
        row.victim = victim
        row.runningMs = started.ms - crashAt
        row.overlap = Boolean(lastOld && lastOld.ms >= started.ms)
        row.fences = fenceOffs() - offsBefore
      } else {
        await sleep(2000) // anything that would wrongly fence or move has had its chance
        row.fences = fenceOffs() - offsBefore
        row.moved = witness().some((w) => w.host !== victim && w.ms > killedAt)
      }
      results[fault].push(row)
      process.stderr.write(`${fault} run ${i + 1}: ${JSON.stringify(row)}\n`)
      await until(
        'the killed hub gone',
        () => hubProcs[lead].exitCode !== null || hubProcs[lead].signalCode !== null,
      )
      await startHubProc(lead)
      if (crashAt !== null) startAgent(victim)
    }
  }
} finally {
  for (const c of cleanups.reverse()) {
    try {
      await c()
    } catch (err) {
      process.stderr.write(`cleanup failed: ${err}\n`)
    }
  }
  rmSync(dir, { recursive: true, force: true })
}

const stats = (label, xs) => ({
  measure: label,
  runs: xs.length,
  'min ms': Math.min(...xs),
  'median ms': median(xs),
  'p99 ms': quantile(xs, 0.99),
  'max ms': Math.max(...xs),
})
const both = results['leader-then-host']
const only = results['leader-only']
const summary = [
  stats(
    'leader killed, host crashed 0.5 s later: crash to running elsewhere',
    both.map((r) => r.runningMs),
  ),
  stats(
    'leader killed, host crashed 0.5 s later: leader death to takeover',
    both.map((r) => r.takeoverMs),
  ),
  stats(
    'leader killed, nothing else: until the new leader acts',
    only.map((r) => r.takeoverMs),
  ),
]
const out = {
  bench: 'hub-group',
  at: new Date().toISOString(),
  leaseTtlSeconds: Number(values['lease-s']),
  summary,
  overlaps: both.filter((r) => r.overlap).length,
  fencesPerCrash: [...new Set(both.map((r) => r.fences))],
  falseFencesOrMoves: only.filter((r) => r.fences > 0 || r.moved).length,
  results,
}
console.log(JSON.stringify(out, null, 2))
console.log(`\nHub group of 2 (lease ${values['lease-s']} s), real etcd x3, IPMI fence (ipmi_sim):\n`)
console.log(markdownTable(summary, ['measure', 'runs', 'min ms', 'median ms', 'p99 ms', 'max ms']))
console.log(
  `\nRuns with two copies of web at once: ${out.overlaps}; fences per crash: ${out.fencesPerCrash.join(', ')}; leader-only runs that fenced or moved anything: ${out.falseFencesOrMoves}`,
)
