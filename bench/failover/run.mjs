#!/usr/bin/env node
// bench/failover: time from a host crash to its application running elsewhere, on the lab
// (scripts/lab.mjs: hosts as network namespaces, a real agent each, an IPMI BMC (ipmi_sim) per host
// that powers it off, the hub with its embedded broker). Not a test: prints JSON and a table.
//
//   node bench/failover/run.mjs [--runs 20] [--heartbeat-ms 250] [--fault host-crash|app-crash]
//     [--hub-restart-ms N] (the hub kill -9ed N ms after the crash and started again at once: a
//     host crash with the hub restarted in the middle of its failover)
//
// Each run: find where `web` runs (the witness log: each copy appends "<host> <ns>" every 0.2 s),
// crash that host (t0: the lab's power script drops its output, SIGKILLs every process of its
// namespace and destroys its sockets), then read, from the hub's decision records
// and the witness log: detection (classified dead), fence confirmed (the BMC read the host back
// off), running elsewhere (the first witness line of the new copy). It also checks no two copies
// wrote in the same period. Then the crashed host is powered on again and rejoins before the next.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { freePort, markdownTable, median, quantile, restartLabHub, sleep, until } from '../lib.mjs'

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '20' },
    'heartbeat-ms': { type: 'string', default: '250' },
    /**
     * host-crash (the default: SIGKILL of every process of the host), power-off (the host's BMC told
     * to power it off by ipmitool, as a power loss), or app-crash (the application killed; restarted
     * in place).
     */
    fault: { type: 'string', default: 'host-crash' },
    'hub-restart-ms': { type: 'string' },
  },
})
const hubRestartMs = values['hub-restart-ms'] === undefined ? null : Number(values['hub-restart-ms'])
const runs = Number(values.runs)
const root = join(import.meta.dirname, '..', '..')
const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-failover-'))
const http = `127.0.0.1:${await freePort()}`
const lab = (...args) =>
  execFileSync(process.execPath, [join(root, 'scripts/lab.mjs'), ...args, '--dir', join(dir, 'lab')], {
    encoding: 'utf8',
  })
const api = async (path) => (await fetch(`http://${http}${path}`)).json()
const witnessFile = join(dir, 'lab', 'witness-web.log')
/** [{host, ms}] from the witness log (ms since the epoch). */
const witness = () =>
  existsSync(witnessFile)
    ? readFileSync(witnessFile, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => {
          const [host, ns] = l.split(' ')
          return { host, ms: Number(BigInt(ns) / 1_000_000n) }
        })
    : []

const results = []
try {
  lab(
    'up',
    '--hosts',
    '2',
    '--http',
    http,
    '--heartbeat-ms',
    values['heartbeat-ms'],
    '--max-fences',
    '1000',
    '--max-restarts',
    '1000',
    // The application's failover alone, as measured before the lab had a vm: a QEMU booting on
    // the survivor at the same moment would take CPU from the two cores the figures were taken on.
    '--no-vm',
  )
  const state = JSON.parse(readFileSync(join(dir, 'lab', 'lab.json'), 'utf8'))
  await until('web running', () => witness().length > 3)
  if (values.fault === 'app-crash') await appCrashes()
  for (let i = 0; values.fault !== 'app-crash' && i < runs; i++) {
    // Where web runs now, and that both hosts are healthy in the engine before the crash.
    await until('both hosts healthy', async () => {
      const { nodes } = await api('/api/nodes').catch(() => ({ nodes: [] })) // the hub may be restarting
      return nodes.length === 2 && nodes.every((n) => n.engine?.condition === 'healthy')
    })
    const { resources } = await api('/api/resources')
    const web = resources.find((r) => r.id === 'web')
    if (web?.phase !== 'running') throw new Error(`web is ${web?.phase}`)
    const victim = web.node
    const survivor = Object.keys(state.lab.hosts).find((h) => h !== victim)
    await sleep(500 + Math.random() * 500) // random phase against heartbeats and the engine tick
    const t0 = Date.now()
    if (values.fault === 'power-off') {
      const b = state.lab.hosts[victim].bmc
      execFileSync('ipmitool', [
        ...['-I', 'lanplus', '-H', b.host, '-p', String(b.port), '-U', b.username, '-f', b.passwordFile],
        ...['-C', '3', '-L', 'ADMINISTRATOR', 'chassis', 'power', 'off'],
      ])
    } else {
      // Silent like dead hardware: output dropped, every process killed, sockets destroyed.
      execFileSync(join(dir, 'lab', `${victim}-power.sh`), ['crash'])
    }
    if (hubRestartMs !== null) {
      await sleep(Math.max(0, t0 + hubRestartMs - Date.now()))
      await restartLabHub(join(dir, 'lab'))
    }
    // A BMC takes a while to act: the power script notes when the host actually lost its power
    // (read before the fence's own power-off writes it again; an older note is a previous run's).
    const lostFile = join(dir, 'lab', `${victim}-power-lost.ms`)
    const lostAt =
      values.fault === 'power-off'
        ? await until('the power lost', () => {
            const ms = existsSync(lostFile) ? Number(readFileSync(lostFile, 'utf8').trim()) : 0
            return ms >= t0 ? ms : undefined
          })
        : t0
    const started = await until(
      'web running elsewhere',
      () => witness().find((w) => w.host === survivor && w.ms > t0),
      60_000,
    )
    const { decisions } = await until('the hub answering', () =>
      api(`/api/decisions?node=${victim}&limit=200`).catch(() => undefined),
    )
    const after = decisions.filter((d) => d.at >= t0)
    // Detection ends when the engine concludes the host is gone and decides to fence: classified
    // dead, or isolated (its disk heartbeat not yet silent), whichever comes first.
    const at = (...rules) => Math.min(...after.filter((d) => rules.includes(d.rule)).map((d) => d.at))
    const lastOld = witness()
      .filter((w) => w.host === victim)
      .at(-1)
    results.push({
      run: i + 1,
      victim,
      suspectMs: at('classify.suspect') - t0,
      detectedMs: at('classify.dead', 'classify.isolated') - t0,
      fencedMs: at('fence.confirmed') - t0,
      runningMs: started.ms - t0,
      lostMs: lostAt - t0,
      runningAfterLossMs: started.ms - lostAt,
      overlap: lastOld && lastOld.ms >= started.ms,
    })
    process.stderr.write(
      `run ${i + 1}: ${victim} -> ${survivor}: detected ${results.at(-1).detectedMs} ms, fenced ${results.at(-1).fencedMs} ms, running ${results.at(-1).runningMs} ms\n`,
    )
    // Power the crashed host on again (its BMC's power-on starts its agent).
    execFileSync(join(dir, 'lab', `${victim}-power.sh`), ['on'])
  }
} finally {
  try {
    lab('down')
  } catch (err) {
    process.stderr.write(`lab down failed: ${err}\n`)
  }
  rmSync(dir, { recursive: true, force: true })
}

/**
 * The application killed (its process, SIGKILL) on a healthy host: time until the agent has noticed
 * and the engine has it restarted in place, per the witness log (the new copy's first line).
 */
async function appCrashes() {
  const times = []
  for (let i = 0; i < runs; i++) {
    const { resources } = await api('/api/resources')
    const web = resources.find((r) => r.id === 'web')
    if (web?.phase !== 'running') throw new Error(`web is ${web?.phase}`)
    await sleep(800 + Math.random() * 400)
    const pid = Number(readFileSync(join(dir, 'lab', `${web.node}-web.pid`), 'utf8'))
    const t0 = Date.now()
    process.kill(pid, 'SIGKILL')
    const again = await until('web restarted', () => witness().find((w) => w.host === web.node && w.ms > t0))
    times.push(again.ms - t0)
    process.stderr.write(`run ${i + 1}: ${web.node}: restarted in place after ${again.ms - t0} ms\n`)
    await until(
      'running again',
      async () => (await api('/api/resources')).resources.find((r) => r.id === 'web')?.phase === 'running',
    )
  }
  const row = {
    fault: 'app crash, restarted in place',
    runs: times.length,
    'min ms': Math.min(...times),
    'median ms': median(times),
    'p99 ms': quantile(times, 0.99),
    'max ms': Math.max(...times),
  }
  console.log(
    JSON.stringify(
      { bench: 'failover', fault: 'app-crash', at: new Date().toISOString(), summary: row, times },
      null,
      2,
    ),
  )
  console.log(`\nApplication crash (SIGKILL), ${times.length} runs, restart in place per the witness log:\n`)
  console.log(markdownTable([row], ['fault', 'runs', 'min ms', 'median ms', 'p99 ms', 'max ms']))
}

if (values.fault !== 'app-crash') report()

function report() {
  const fault = `${values.fault === 'power-off' ? 'power-off command' : 'crash'}${
    hubRestartMs === null ? '' : ` (hub restarted ${hubRestartMs} ms after)`
  }`
  const phases = [
    [`${fault} to suspect`, 'suspectMs'],
    [`${fault} to fence-worthy (isolated or dead)`, 'detectedMs'],
    [`${fault} to fence confirmed`, 'fencedMs'],
    [`${fault} to running elsewhere`, 'runningMs'],
    ...(values.fault === 'power-off'
      ? [
          ['power-off command to power lost (the BMC acting)', 'lostMs'],
          ['power lost to running elsewhere', 'runningAfterLossMs'],
        ]
      : []),
  ]
  const summary = phases.map(([label, key]) => {
    const xs = results.map((r) => r[key]).filter((x) => Number.isFinite(x))
    return {
      phase: label,
      runs: xs.length,
      'min ms': Math.min(...xs),
      'median ms': median(xs),
      'p99 ms': quantile(xs, 0.99),
      'max ms': Math.max(...xs),
    }
  })
  const between = results.map((r) => ({
    suspect: r.suspectMs,
    confirm: r.detectedMs - r.suspectMs,
    fence: r.fencedMs - r.detectedMs,
    start: r.runningMs - r.fencedMs,
  }))
  const phaseRows = ['suspect', 'confirm', 'fence', 'start'].map((p) => ({
    step: {
      suspect: 'crash -> suspect (hub heartbeat phi over threshold)',
      confirm: 'suspect -> isolated or dead (hub and peers silent for confirmMs)',
      fence: 'isolated or dead -> fence confirmed (disk channel silent, IPMI off + read-back)',
      start: 'fence confirmed -> running elsewhere (start + first witness line)',
    }[p],
    'median ms': median(between.map((b) => b[p])),
  }))
  const out = {
    bench: 'failover',
    at: new Date().toISOString(),
    heartbeatMs: Number(values['heartbeat-ms']),
    hubRestartMs,
    runs: results.length,
    overlaps: results.filter((r) => r.overlap).length,
    summary,
    phases: phaseRows,
    results,
  }
  console.log(JSON.stringify(out, null, 2))
  console.log(
    `\n${values.fault === 'power-off' ? 'Power off by the BMC' : 'Host crash'}, ${results.length} runs, agent heartbeat ${values['heartbeat-ms']} ms, default detection, real IPMI fence (ipmi_sim):\n`,
  )
  console.log(markdownTable(summary, ['phase', 'runs', 'min ms', 'median ms', 'p99 ms', 'max ms']))
  console.log(`\nWhere the time goes (medians):\n`)
  console.log(markdownTable(phaseRows, ['step', 'median ms']))
  console.log(`\nRuns where two copies wrote in the same period: ${out.overlaps}`)
}
