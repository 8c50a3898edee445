// bench/ingest: N simulated agents publish heartbeats and observation batches through the hub's
// embedded broker. Measures messages/s ingested, heartbeat-to-state latency (p50/p99, from the hub's
// vigil_heartbeat_delay_seconds histogram), and hub RSS and CPU. Prints JSON, then a table.
//   node bench/ingest/run.mjs [--agents 2000] [--rate 4] [--processes 2] [--warmup 10] [--seconds 30] [--runs 1]
// A soak (issue #21): `--seconds 5400 --rate 1` also states the hub's RSS at 15 minutes and over
// the last 2, their ratio, and the database's size at the end; `--rss-log FILE` keeps each sample.
import { spawn } from 'node:child_process'
import { appendFileSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  counter,
  freePort,
  histogram,
  histogramQuantile,
  markdownTable,
  median,
  sampleProcess,
  sleep,
  startBenchHub,
} from '../lib.mjs'

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '2000' },
    rate: { type: 'string', default: '4' },
    processes: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '30' },
    runs: { type: 'string', default: '1' },
    'obs-every': { type: 'string', default: '5000' },
    'rss-log': { type: 'string' },
    /** embedded: the hub's own broker (aedes); mosquitto: Debian's, the hub and agents its clients. */
    broker: { type: 'string', default: 'embedded' },
  },
})
const agents = Number(values.agents)
const rate = Number(values.rate)
const procs = Number(values.processes)
const intervalMs = Math.round(1000 / rate)
/** How long every agent may take to be heard before the run is given up. */
const BRING_UP_TIMEOUT_S = 300

async function once(run) {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-ingest-'))
  const mosquitto = values.broker === 'mosquitto' ? await startMosquitto(dir) : null
  const { hub, base, mqttUrl } = await startBenchHub(dir, {
    args: mosquitto ? ['--mqtt-url', mosquitto.url] : [],
  })
  const loaders = []
  const per = Math.ceil(agents / procs)
  for (let p = 0; p < procs; p++) {
    const count = Math.min(per, agents - p * per)
    const child = spawn(
      process.execPath,
      [
        join(import.meta.dirname, 'load.mjs'),
        mosquitto ? mosquitto.url : mqttUrl,
        String(p * per),
        String(count),
        String(intervalMs),
        values['obs-every'],
        'default',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
    })
    loaders.push({ child, output: () => out })
  }
  // Wait for every agent to be heard (the engine observes every node seen), then warm up. Heard,
  // not healthy: the default detection is tuned for 4 heartbeats a second (the agent's default),
  // and at one a second a loaded machine's late beats make some nodes suspect now and then.
  // Only the families the bench reads are asked for: the whole /metrics grows with nodes x checks
  // (32 MB at 10,000 agents of 5 checks; it took 2 s of the hub's event loop, 0.5 s now), and
  // polled every 100 ms it left the hub no time to accept the agents it waited for (issue #21).
  const metricsOf = async (names) =>
    (await fetch(`${base}/metrics?${names.map((n) => `name=${n}`).join('&')}`)).text()
  const bringUpFrom = performance.now()
  const broughtUpBy = bringUpFrom + BRING_UP_TIMEOUT_S * 1000
  for (;;) {
    const text = await metricsOf(['vigil_nodes_by_condition'])
    const online = [...text.matchAll(/^vigil_nodes_by_condition\{condition="([a-z-]+)"\}\s+(\S+)/gm)]
      .filter((m) => m[1] !== 'unknown')
      .reduce((sum, m) => sum + Number(m[2]), 0)
    if (online >= agents) break
    if (performance.now() > broughtUpBy)
      throw new Error(`only ${online} of ${agents} agents came online within ${BRING_UP_TIMEOUT_S} s`)
    await sleep(100)
  }
  const bringUpSeconds = round((performance.now() - bringUpFrom) / 1000)
  await sleep(Number(values.warmup) * 1000)

  const measured = [
    'vigil_heartbeat_delay_seconds',
    'vigil_messages_received_total',
    'vigil_heartbeats_missed_total',
    'vigil_messages_rejected_total',
    'vigil_hub_pauses_total',
  ]
  const metricsBefore = await metricsOf(measured)
  const hubBefore = sampleProcess(hub.pid)
  const brokerBefore = mosquitto ? sampleProcess(mosquitto.child.pid) : null
  const loadBefore = loaders.map((l) => sampleProcess(l.child.pid))
  const t0 = performance.now()
  const rss = []
  const series = []
  const until = t0 + Number(values.seconds) * 1000
  while (performance.now() < until) {
    await sleep(1000)
    const bytes = sampleProcess(hub.pid).rssBytes
    rss.push(bytes)
    series.push({ s: (performance.now() - t0) / 1000, bytes })
    if (values['rss-log'] && series.length % 10 === 0)
      appendFileSync(
        values['rss-log'],
        `${JSON.stringify({ s: Math.round(series.at(-1).s), rssMiB: round(bytes / 2 ** 20) })}\n`,
      )
  }
  const rssWithin = (from, to) => {
    const xs = series.filter((x) => x.s >= from && x.s < to).map((x) => x.bytes)
    return xs.length ? round(median(xs) / 2 ** 20) : null
  }
  const soak =
    Number(values.seconds) >= 1200
      ? {
          rssAt15MinMiB: rssWithin(14 * 60, 16 * 60),
          rssLast2MinMiB: rssWithin(Number(values.seconds) - 120, Number(values.seconds) + 1),
        }
      : null
  if (soak)
    soak.growthAfter15MinPercent = round(
      (100 * (soak.rssLast2MinMiB - soak.rssAt15MinMiB)) / soak.rssAt15MinMiB,
    )
  const dbBytes = ['hub.sqlite', 'hub.sqlite-wal']
    .map((f) => join(dir, f))
    .filter((f) => existsSync(f))
    .reduce((sum, f) => sum + statSync(f).size, 0)
  const elapsed = (performance.now() - t0) / 1000
  const metricsAfter = await metricsOf(measured)
  const hubAfter = sampleProcess(hub.pid)
  const loadAfter = loaders.map((l) => sampleProcess(l.child.pid))

  const hist = 'vigil_heartbeat_delay_seconds'
  const [hb, ha] = [histogram(metricsBefore, hist), histogram(metricsAfter, hist)]
  const received = (name) => counter(metricsAfter, name) - counter(metricsBefore, name)
  const msgs = ['hb', 'obs'].map((c) => {
    const re = new RegExp(`^vigil_messages_received_total\\{channel="${c}"\\}\\s+(\\S+)`, 'm')
    return Number(re.exec(metricsAfter)?.[1] ?? 0) - Number(re.exec(metricsBefore)?.[1] ?? 0)
  })
  const result = {
    run,
    agents,
    heartbeatsPerAgentPerSecond: rate,
    /** From starting the load generators to every agent heard. */
    bringUpSeconds,
    seconds: Math.round(elapsed * 10) / 10,
    messagesPerSecond: Math.round((msgs[0] + msgs[1]) / elapsed),
    heartbeatsPerSecond: Math.round(msgs[0] / elapsed),
    expectedHeartbeatsPerSecond: agents * rate,
    heartbeatsMissed: received('vigil_heartbeats_missed_total'),
    rejected: received('vigil_messages_rejected_total'),
    // Times the hub's event loop stood still over watchdog.pauseMs (it then re-arms every detector).
    hubPauses: received('vigil_hub_pauses_total'),
    latencyP50Ms: round(histogramQuantile(0.5, hb, ha) * 1000),
    latencyP99Ms: round(histogramQuantile(0.99, hb, ha) * 1000),
    latencyMeanMs: round(((ha.sum - hb.sum) / Math.max(1, ha.count - hb.count)) * 1000),
    hubRssMiB: round(median(rss) / 2 ** 20),
    databaseMiB: round(dbBytes / 2 ** 20),
    ...(soak ?? {}),
    hubCpuPercentOfOneCore: round(((hubAfter.cpuSeconds - hubBefore.cpuSeconds) / elapsed) * 100),
    loadGeneratorsCpuPercentOfOneCore: round(
      ((loadAfter.reduce((s, x) => s + x.cpuSeconds, 0) - loadBefore.reduce((s, x) => s + x.cpuSeconds, 0)) /
        elapsed) *
        100,
    ),
  }
  for (const l of loaders) l.child.kill('SIGTERM')
  await Promise.all(loaders.map((l) => new Promise((r) => l.child.on('exit', r))))
  hub.kill('SIGTERM')
  await new Promise((r) => hub.on('exit', r))
  if (mosquitto) {
    result.brokerCpuPercentOfOneCore = round(
      ((sampleProcess(mosquitto.child.pid).cpuSeconds - brokerBefore.cpuSeconds) / elapsed) * 100,
    )
    mosquitto.child.kill('SIGTERM')
    await new Promise((r) => mosquitto.child.on('exit', r))
  }
  rmSync(dir, { recursive: true, force: true })
  return result
}

/** Debian's mosquitto on a free loopback port: anonymous, no persistence, no connection limit. */
async function startMosquitto(dir) {
  const port = await freePort()
  const conf = join(dir, 'mosquitto.conf')
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      'max_connections -1',
      '',
    ].join('\n'),
  )
  const child = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] })
  for (let i = 0; i < 100; i++) {
    const up = await new Promise((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.end()
        resolve(true)
      }).on('error', () => resolve(false))
    })
    if (up) return { child, url: `mqtt://127.0.0.1:${port}` }
    await sleep(100)
  }
  throw new Error('mosquitto did not start')
}

function round(x) {
  return x === null || Number.isNaN(x) ? null : Math.round(x * 100) / 100
}

const results = []
for (let run = 1; run <= Number(values.runs); run++) results.push(await once(run))
const summary = {
  benchmark: 'ingest',
  when: new Date().toISOString(),
  machine: { cpus: (await import('node:os')).availableParallelism(), node: process.version },
  runs: results,
  median: Object.fromEntries(
    ['messagesPerSecond', 'latencyP50Ms', 'latencyP99Ms', 'hubRssMiB', 'hubCpuPercentOfOneCore'].map((k) => [
      k,
      median(results.map((r) => r[k])),
    ]),
  ),
}
console.log(JSON.stringify(summary, null, 2))
console.log()
console.log(
  markdownTable(results, [
    'run',
    'agents',
    'messagesPerSecond',
    'heartbeatsPerSecond',
    'expectedHeartbeatsPerSecond',
    'latencyP50Ms',
    'latencyP99Ms',
    'hubRssMiB',
    'hubCpuPercentOfOneCore',
    'loadGeneratorsCpuPercentOfOneCore',
    ...(values.broker === 'mosquitto' ? ['brokerCpuPercentOfOneCore'] : []),
  ]),
)
