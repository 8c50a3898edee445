// The demo: a hub with its embedded broker and SQLite, and two agents on this machine as the two
// nodes of one cluster (demo-a, demo-b) keeping something running: `web`, a small HTTP service, and
// `report`, which depends on it. Prints the URLs and three things to try once both run; Ctrl-C
// stops everything.
//   node scripts/demo.mjs [--build] [--http 127.0.0.1:7470] [--mqtt 127.0.0.1:7483] [--web-port 7481] [--check]
// --build builds first (what `pnpm demo` does), quietly: Turborepo's output is shown only if the
// build fails. --check exits 0 as soon as the demo is up (or 1 after 15 s), for tests and CI.
// --lab (root) brings up the lab instead (scripts/lab.mjs: three hosts as network namespaces, each
// with an IPMI BMC, and a vm), prints what to try there, and takes it down at Ctrl-C.
import { spawn, spawnSync } from 'node:child_process'
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    http: { type: 'string', default: '127.0.0.1:7470' },
    mqtt: { type: 'string', default: '127.0.0.1:7483' },
    'web-port': { type: 'string', default: '7481' },
    dir: { type: 'string', default: '.vigil-demo' },
    check: { type: 'boolean', default: false },
    build: { type: 'boolean', default: false },
    'skip-build': { type: 'boolean', default: false },
    /** The lab instead (root): hosts as network namespaces with BMCs and a vm (scripts/lab.mjs). */
    lab: { type: 'boolean', default: false },
  },
})
const root = new URL('..', import.meta.url).pathname
const vigil = join(root, 'apps/cli/bin/vigil.js')
const dir = resolve(root, values.dir)
mkdirSync(dir, { recursive: true })

// --skip-build: already built (the test of `pnpm demo` itself runs inside a build).
if (values.build && !values['skip-build']) {
  console.log('Building Vigil (the first time takes about a minute)...')
  const build = spawnSync('pnpm', ['exec', 'turbo', 'run', 'build', '--output-logs=errors-only'], {
    cwd: root,
    encoding: 'utf8',
    // No third-party banner on a first run (Turborepo's telemetry notice).
    env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1' },
  })
  if (build.status !== 0) {
    process.stderr.write(`${build.stdout}${build.stderr}`)
    console.error('demo: the build failed (above)')
    process.exit(1)
  }
}

if (values.lab) {
  if (process.getuid?.() !== 0) {
    console.error(
      'demo --lab: the lab makes hosts of network namespaces, which needs root: sudo pnpm demo --lab',
    )
    process.exit(2)
  }
  const lab = (...args) =>
    spawnSync(process.execPath, [join(root, 'scripts/lab.mjs'), ...args, '--dir', join(root, '.vigil-lab')], {
      stdio: 'inherit',
    })
  if (lab('up').status !== 0) process.exit(1)
  const hub = 'http://127.0.0.1:7570'
  console.log(`
And with Vigil's own tools (the status page at ${hub}/ shows each as it happens):
  pnpm vigil status --hub ${hub}
  pnpm vigil why web --hub ${hub}        # after the crash: the evidence, the fence, the new home
  pnpm vigil plan --hub ${hub}           # where everything would go if a host died now

Ctrl-C takes the lab down.`)
  const down = () => {
    lab('down')
    process.exit(0)
  }
  process.on('SIGINT', down)
  process.on('SIGTERM', down)
  setInterval(() => {}, 1 << 30)
} else {
  await runDemo()
}

async function runDemo() {
  const children = []
  function start(name, args) {
    const log = createWriteStream(join(dir, `${name}.log`), { flags: 'a' })
    const child = spawn(process.execPath, [vigil, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout.pipe(log)
    child.stderr.on('data', (d) => process.stderr.write(`[${name}] ${d}`))
    child.on('exit', (code, signal) => {
      if (!stopping) {
        console.error(`demo: ${name} exited (${signal ?? code}); see ${join(dir, `${name}.log`)}`)
        stop(1)
      }
    })
    children.push(child)
    return child
  }

  /**
   * The workload's processes, by the agents' pidfiles. An agent that stops leaves what it supervises
   * running (an agent restart must not take the service down), so the demo ends them itself, and
   * ends what a demo killed before it had left behind.
   */
  function stopWorkload() {
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.pid'))) {
      const pid = Number(readFileSync(join(dir, file), 'utf8'))
      try {
        if (pid > 0) process.kill(pid, 'SIGTERM')
      } catch {
        // already gone
      }
      rmSync(join(dir, file), { force: true })
    }
  }

  let stopping = false
  function stop(code) {
    stopping = true
    for (const c of children) c.kill('SIGTERM')
    // Not unref'd: the workload must be ended even when the children are gone sooner.
    setTimeout(() => {
      stopWorkload()
      process.exit(code)
    }, 500)
  }
  process.on('SIGINT', () => stop(0))
  process.on('SIGTERM', () => stop(0))

  stopWorkload()
  const started = Date.now()
  const httpUrl = `http://${values.http}`
  const NODES = ['demo-a', 'demo-b']
  const app = join(root, 'scripts/demo-app.mjs')
  const webUrl = `http://127.0.0.1:${values['web-port']}`
  // The cluster: two nodes, `web` preferring demo-a, `report` started after web and kept with it.
  // No fence devices: a node that dies here is never fenced, so its resources wait for it (the lab,
  // `pnpm lab up`, has BMCs and shows a failover).
  const clusterFile = join(dir, 'cluster.yaml')
  writeFileSync(
    clusterFile,
    [
      'nodes:',
      ...NODES.map((n) => `  - id: ${n}`),
      'resources:',
      '  - id: web',
      '    preferred: { demo-a: 10 }',
      '  - id: report',
      '    dependsOn: [web]',
      '    colocate: true',
      '',
    ].join('\n'),
  )
  start('hub', [
    'hub',
    '--listen',
    values.http,
    '--broker-listen',
    values.mqtt,
    '--db',
    join(dir, 'hub.sqlite'),
    '--cluster-file',
    clusterFile,
  ])
  // The agents run only commands signed by this hub: they need the hub's public key, which the hub
  // writes beside its database on its first start.
  const hubKey = join(dir, 'hub.sqlite.pub.pem')
  for (let i = 0; i < 100 && !existsSync(hubKey); i++) await new Promise((r) => setTimeout(r, 50))
  for (const node of NODES) {
    const config = join(dir, `${node}.yaml`)
    // Either node can run either resource; the hub decides where each runs. Each agent keeps its own
    // pidfiles: two agents on one machine must never take each other's process for their own.
    writeFileSync(
      config,
      [
        `node: ${node}`,
        'resources:',
        '  - id: web',
        '    driver: process',
        `    config: { command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(app)}, web, --port, "${values['web-port']}", --node, ${node}], pidfile: ${JSON.stringify(join(dir, `${node}-web.pid`))} }`,
        // The HTTP check vouches for web: a web that stops answering is failed, though it runs.
        '  - id: web-http',
        '    driver: check',
        '    vouchesFor: web',
        '    monitorIntervalMs: 500',
        `    config: { kind: http, url: "${webUrl}/", failuresBeforeCritical: 2, timeoutMs: 500 }`,
        '  - id: report',
        '    driver: process',
        `    config: { command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(app)}, report, --url, "${webUrl}", --out, ${JSON.stringify(join(dir, 'report.log'))}], pidfile: ${JSON.stringify(join(dir, `${node}-report.pid`))} }`,
        '',
      ].join('\n'),
    )
    start(node, ['agent', '--config', config, '--mqtt-url', `mqtt://${values.mqtt}`, '--hub-key', hubKey])
  }

  /** Both nodes healthy and both resources running, per the hub; null after 15 s. */
  async function poll() {
    for (;;) {
      if (Date.now() - started > 15_000) return null
      try {
        const { resources } = await (await fetch(`${httpUrl}/api/resources`)).json()
        const web = resources.find((r) => r.id === 'web')
        const report = resources.find((r) => r.id === 'report')
        if (web?.phase === 'running' && report?.phase === 'running') return web
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 200))
    }
  }

  const web = await poll()
  if (!web) {
    console.error(`demo: web and report were not running within 15 s; logs in ${dir}`)
    stop(1)
  } else {
    const seconds = ((Date.now() - started) / 1000).toFixed(1)
    const hub = values.http === '127.0.0.1:7470' ? '' : ` --hub ${httpUrl}`
    console.log(`
Vigil demo is running: web and report on ${web.node} after ${seconds} s (nodes demo-a and demo-b).

  Status page ${httpUrl}/
  API         ${httpUrl}/api/resources
  Metrics     ${httpUrl}/metrics
  web         ${webUrl}
  Logs        ${dir}/hub.log, ${dir}/demo-a.log, ${dir}/demo-b.log

Try, in another shell (the status page shows each as it happens):
  1. Kill the app, or make it hang (its process lives, its port stops answering: only the HTTP
     check that vouches for it sees that); Vigil restarts it in place within a moment:
       pkill -f 'demo-app.mjs web'; sleep 1; curl -s ${webUrl}
       pkill -USR1 -f 'demo-app.mjs web'; sleep 3; curl -s ${webUrl}
  2. Ask why it did:
       pnpm vigil why web${hub}
  3. Move it, with report, to the other node, or put a node in maintenance:
       pnpm vigil move web demo-b${hub}
       pnpm vigil maintenance on --node demo-b${hub}

Ctrl-C stops the demo.`)
    if (values.check) stop(0)
  }
}
