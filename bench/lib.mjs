// Shared helpers for benchmarks: process sampling, Prometheus parsing, quantiles, output.
import { spawn } from 'node:child_process'
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

const TICKS = 100 // USER_HZ on Linux
/** CPU seconds (user+system) and RSS bytes of a process, from /proc. */
export function sampleProcess(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / TICKS
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0)
  return { cpuSeconds, rssBytes: rssKb * 1024 }
}

/** Parses a Prometheus histogram's cumulative buckets: [{le, count}], plus sum and count. */
export function histogram(text, name) {
  const buckets = []
  let sum = 0
  let count = 0
  for (const line of text.split('\n')) {
    let m = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\}\\s+(\\S+)`).exec(line)
    if (m)
      buckets.push({ le: m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1]), count: Number(m[2]) })
    m = new RegExp(`^${name}_sum\\s+(\\S+)`).exec(line)
    if (m) sum = Number(m[1])
    m = new RegExp(`^${name}_count\\s+(\\S+)`).exec(line)
    if (m) count = Number(m[1])
  }
  return { buckets, sum, count }
}

/** A counter's value: the sum of all its series (every label set), 0 if absent. */
export function counter(text, name) {
  let sum = 0
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+(\\S+)`, 'gm'))) sum += Number(m[1])
  return sum
}

/** Quantile of the difference of two cumulative histograms, linearly interpolated within a bucket (as histogram_quantile). */
export function histogramQuantile(q, before, after) {
  const delta = after.buckets.map((b, i) => ({ le: b.le, count: b.count - (before.buckets[i]?.count ?? 0) }))
  const total = delta.at(-1)?.count ?? 0
  if (total === 0) return null
  const rank = q * total
  let prevLe = 0
  let prevCount = 0
  for (const b of delta) {
    if (b.count >= rank) {
      if (b.le === Number.POSITIVE_INFINITY) return prevLe
      return prevLe + ((b.le - prevLe) * (rank - prevCount)) / Math.max(1, b.count - prevCount)
    }
    prevLe = b.le
    prevCount = b.count
  }
  return prevLe
}

/** The q-quantile by nearest rank (q = 0.99: the value 99 % of samples do not exceed). */
export function quantile(values, q) {
  const s = [...values].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Polls `probe` every `intervalMs` until it returns something truthy (returned) or time runs out. */
export async function until(what, probe, timeoutMs = 30_000, intervalMs = 20) {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (v) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(intervalMs)
  }
}

export function median(values) {
  const s = [...values].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

/** A markdown table from rows of objects. */
export function markdownTable(rows, columns) {
  const head = `| ${columns.join(' | ')} |`
  const sep = `| ${columns.map(() => '---').join(' | ')} |`
  return [head, sep, ...rows.map((r) => `| ${columns.map((c) => r[c]).join(' | ')} |`)].join('\n')
}

const vigilBin = join(import.meta.dirname, '..', 'apps/cli/bin/vigil.js')

/**
 * Starts `vigil hub` (embedded broker, SQLite in `dir`) on free loopback ports and waits until it
 * is ready. Returns the child process, its HTTP base URL and its MQTT URL.
 */
/** The environment deploy/systemd/vigil-hub.service gives the hub: benchmarks run it as shipped. */
export const HUB_UNIT_ENV = Object.fromEntries(
  [
    ...readFileSync(new URL('../deploy/systemd/vigil-hub.service', import.meta.url), 'utf8').matchAll(
      /^Environment=([A-Za-z_][A-Za-z0-9_]*)=(.*)$/gm,
    ),
  ].map((m) => [m[1], m[2]]),
)

/**
 * Extra node options for bench hubs, e.g. `VIGIL_BENCH_HUB_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/p"`
 * to profile a hub under load (node refuses --cpu-prof in NODE_OPTIONS); with
 * `VIGIL_BENCH_HUB_STDOUT=1` the hub's stdout is the bench's (e.g. for `--trace-gc`).
 */
const hubNodeArgs = (process.env.VIGIL_BENCH_HUB_NODE_ARGS ?? '').split(' ').filter(Boolean)

export async function startBenchHub(
  dir,
  {
    args = [],
    stdio = ['ignore', process.env.VIGIL_BENCH_HUB_STDOUT ? 'inherit' : 'ignore', 'inherit'],
  } = {},
) {
  const [httpPort, mqttPort] = [await freePort(), await freePort()]
  const hub = spawn(
    process.execPath,
    [
      ...hubNodeArgs,
      vigilBin,
      'hub',
      '--listen',
      `127.0.0.1:${httpPort}`,
      '--broker-listen',
      `127.0.0.1:${mqttPort}`,
      '--db',
      join(dir, 'hub.sqlite'),
      '--log-level',
      'warn',
      ...args,
    ],
    { stdio, env: { ...process.env, ...HUB_UNIT_ENV } },
  )
  const base = `http://127.0.0.1:${httpPort}`
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${base}/readyz`)).ok) break
    } catch {}
    if (i > 100) throw new Error('hub did not become ready')
    await new Promise((r) => setTimeout(r, 100))
  }
  // The hub writes its command signing public key beside its database: agents trust that file.
  return { hub, base, mqttUrl: `mqtt://127.0.0.1:${mqttPort}`, hubKey: join(dir, 'hub.sqlite.pub.pem') }
}

/**
 * The lab's hub (scripts/lab.mjs, alone: not a hub group) and its embedded broker SIGKILLed and
 * started again with the same arguments, on the same database; lab.json gets the new PID.
 */
export async function restartLabHub(labDir) {
  const stateFile = join(labDir, 'lab.json')
  const state = JSON.parse(readFileSync(stateFile, 'utf8'))
  try {
    process.kill(-state.pids.hub, 'SIGKILL')
  } catch {
    try {
      process.kill(state.pids.hub, 'SIGKILL')
    } catch {
      // gone already
    }
  }
  await sleep(100)
  const fd = openSync(join(labDir, 'hub.log'), 'a')
  const child = spawn(state.hubArgv[0], state.hubArgv.slice(1), { detached: true, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  child.unref()
  state.pids.hub = child.pid
  writeFileSync(stateFile, JSON.stringify(state, null, 2))
}
