// bench/footprint: what an agent costs on the host it watches, next to Prometheus's node exporter
// (Debian's prometheus-node-exporter, scraped every 15 s as Prometheus would). Two agent profiles:
//   issue (the default; issue #3's): 50 processes, every real filesystem, every NIC, 5 application
//     checks (2 TCP, 2 HTTP, 1 exec) and the peer mesh, all at a 1 s interval;
//   typical: a supervised process, a disk space and O_DIRECT probe, a nic and a ping check.
// Both with heartbeats every 250 ms and facts every 30 s.
// Prints JSON, then a table. Medians over --runs runs of --seconds each (after a warm-up).
//   node bench/footprint/run.mjs [--profile issue|typical] [--seconds 60] [--runs 3]
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { freePort, markdownTable, median, sampleProcess, sleep, startBenchHub } from '../lib.mjs'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    runs: { type: 'string', default: '3' },
    profile: { type: 'string', default: 'issue' },
  },
})
const SECONDS = Number(values.seconds)
const RUNS = Number(values.runs)
const WARMUP_MS = 5000
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const vigil = join(root, 'apps/cli/bin/vigil.js')
/** The agent's NODE_OPTIONS as deploy/systemd/vigil-agent.service sets them. */
const UNIT_NODE_OPTIONS =
  /^Environment=NODE_OPTIONS=(.*)$/m.exec(
    readFileSync(join(root, 'deploy/systemd/vigil-agent.service'), 'utf8'),
  )?.[1] ?? ''

/** CPU share of one core and RSS of `pid` over `seconds`, after a warm-up. */
async function measure(pid, duringMs, tick) {
  await sleep(WARMUP_MS)
  const a = sampleProcess(pid)
  const started = performance.now()
  const rss = []
  while (performance.now() - started < duringMs) {
    await tick?.()
    await sleep(1000)
    rss.push(sampleProcess(pid).rssBytes)
  }
  const b = sampleProcess(pid)
  const seconds = (performance.now() - started) / 1000
  return { cpuPercent: (100 * (b.cpuSeconds - a.cpuSeconds)) / seconds, rssMiB: median(rss) / 2 ** 20 }
}

/** Filesystems a host agent would watch: /proc/mounts without the kernel's pseudo filesystems. */
const PSEUDO =
  /^(proc|sysfs|cgroup2?|devpts|devtmpfs|mqueue|debugfs|tracefs|securityfs|pstore|bpf|autofs|hugetlbfs|configfs|fusectl|binfmt_misc|nsfs|rpc_pipefs|ramfs|efivarfs|selinuxfs)$/
function realFilesystems() {
  const seen = new Set()
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mountPoint, type] = line.split(' ')
    if (!mountPoint || PSEUDO.test(type) || mountPoint.startsWith('/proc') || mountPoint.startsWith('/sys'))
      continue
    seen.add(mountPoint.replace(/\\040/g, ' '))
  }
  return [...seen]
}

function issueProfile(dir, hub) {
  const sleepers = []
  const lines = []
  for (let i = 0; i < 50; i++) {
    const child = spawn('sleep', ['3600'], { stdio: 'ignore', detached: true })
    sleepers.push(child)
    const pidfile = join(dir, `p${i}.pid`)
    writeFileSync(pidfile, String(child.pid))
    // A daemon with a pidfile: watched by its pid (the hub starts nothing here, so never started).
    lines.push(`  - { id: p${i}, driver: process, config: { start: ["true"], pidfile: ${pidfile} } }`)
  }
  for (const [i, path] of realFilesystems().entries())
    lines.push(`  - { id: fs${i}, driver: disk, config: { path: ${JSON.stringify(path)} } }`)
  for (const [i, name] of readdirSync('/sys/class/net').entries())
    lines.push(`  - { id: nic${i}, driver: nic, config: { interface: ${name} } }`)
  const [httpPort, mqttPort] = [new URL(hub.base).port, new URL(hub.mqttUrl).port]
  lines.push(
    `  - { id: app-tcp-1, driver: check, config: { kind: tcp, port: ${httpPort} } }`,
    `  - { id: app-tcp-2, driver: check, config: { kind: tcp, port: ${mqttPort} } }`,
    `  - { id: app-http-1, driver: check, config: { kind: http, url: "${hub.base}/readyz" } }`,
    `  - { id: app-http-2, driver: check, config: { kind: http, url: "${hub.base}/metrics", bodyMatch: vigil_ } }`,
    '  - { id: app-exec, driver: check, config: { kind: exec, command: ["true"] } }',
  )
  const stop = () => {
    for (const c of sleepers) c.kill('SIGKILL')
  }
  return { lines, stop }
}

async function agentRun() {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-footprint-'))
  const hub = await startBenchHub(dir, { stdio: 'ignore' })
  const { mqttUrl } = hub
  const probe = join(dir, 'probe')
  writeFileSync(probe, Buffer.alloc(4096))
  const [peerPort, ...others] = [await freePort(), await freePort(), await freePort()]
  const profile =
    values.profile === 'issue'
      ? issueProfile(dir, hub)
      : {
          lines: [
            '  - { id: app, driver: process, config: { command: [sleep, "3600"], pidfile: ' +
              join(dir, 'app.pid') +
              ' } }',
            `  - { id: disk, driver: disk, config: { path: ${dir}, probe: { device: ${probe} } } }`,
            '  - { id: lo, driver: nic, config: { interface: lo } }',
            '  - { id: gw, driver: ping, config: { targets: [127.0.0.1] } }',
          ],
          stop: () => {},
        }
  writeFileSync(
    join(dir, 'agent.yaml'),
    [
      'node: bench-host',
      'log: { level: warn }',
      ...(values.profile === 'issue'
        ? [
            'peers:',
            `  listen: 127.0.0.1:${peerPort}`,
            '  mesh:',
            ...others.map((port, i) => `    - { node: peer-${i}, address: 127.0.0.1:${port} }`),
          ]
        : []),
      'resources:',
      ...profile.lines,
      '',
    ].join('\n'),
  )
  resourceCount = profile.lines.length
  const agent = spawn(
    process.execPath,
    [vigil, 'agent', '--config', join(dir, 'agent.yaml'), '--mqtt-url', mqttUrl, '--hub-key', hub.hubKey],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
      // As the shipped systemd unit runs it (its NODE_OPTIONS).
      env: { ...process.env, NODE_OPTIONS: UNIT_NODE_OPTIONS },
    },
  )
  // No cluster file: the hub starts nothing, so `app` is monitored (as stopped) every second.
  const result = await measure(agent.pid, SECONDS * 1000)
  agent.kill('SIGTERM')
  hub.hub.kill('SIGTERM')
  profile.stop()
  await sleep(1000)
  rmSync(dir, { recursive: true, force: true })
  return result
}

async function exporterRun() {
  const port = await freePort()
  const exporter = spawn('prometheus-node-exporter', [`--web.listen-address=127.0.0.1:${port}`], {
    stdio: 'ignore',
  })
  await sleep(1000)
  let last = 0
  const scrape = async () => {
    if (performance.now() - last < 15_000) return
    last = performance.now()
    await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text())
  }
  const result = await measure(exporter.pid, SECONDS * 1000, scrape)
  exporter.kill('SIGTERM')
  await sleep(500)
  return result
}

let resourceCount = 0
const runs = { agent: [], exporter: [] }
for (let i = 0; i < RUNS; i++) {
  runs.agent.push(await agentRun())
  runs.exporter.push(await exporterRun())
}
const summary = (name, list) => ({
  process: name,
  cpuPercentMedian: Number(median(list.map((r) => r.cpuPercent)).toFixed(2)),
  rssMiBMedian: Number(median(list.map((r) => r.rssMiB)).toFixed(1)),
})
const rows = [
  summary(`vigil agent (${values.profile}: ${resourceCount} resources)`, runs.agent),
  summary('prometheus-node-exporter', runs.exporter),
]
const ratio = {
  cpu: Number((rows[0].cpuPercentMedian / Math.max(0.01, rows[1].cpuPercentMedian)).toFixed(2)),
  rss: Number((rows[0].rssMiBMedian / rows[1].rssMiBMedian).toFixed(2)),
}
console.log(
  JSON.stringify(
    {
      profile: values.profile,
      seconds: SECONDS,
      runs: RUNS,
      resources: resourceCount,
      rows,
      agentOverExporter: ratio,
      raw: runs,
    },
    null,
    2,
  ),
)
console.log()
console.log(
  markdownTable(
    rows.map((r) => ({ ...r, cpu: `${r.cpuPercentMedian} %`, rss: `${r.rssMiBMedian} MiB` })),
    ['process', 'cpu', 'rss'],
  ),
)
console.log(
  `\nagent / exporter: CPU x${ratio.cpu}, RSS x${ratio.rss} (medians of ${RUNS} runs of ${SECONDS} s)`,
)
