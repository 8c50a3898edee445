// The demo: a hub with its embedded broker and SQLite, plus an agent watching this machine.
// Prints the URLs once this machine shows up online with its facts; Ctrl-C stops both.
//   node scripts/demo.mjs [--build] [--http 127.0.0.1:7470] [--mqtt 127.0.0.1:7483] [--check]
// --build builds first (what `pnpm demo` does), quietly: Turborepo's output is shown only if the
// build fails. --check exits 0 as soon as the demo is up (or 1 after 10 s), for tests and CI.
import { spawn, spawnSync } from 'node:child_process'
import { createWriteStream, existsSync, mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    http: { type: 'string', default: '127.0.0.1:7470' },
    mqtt: { type: 'string', default: '127.0.0.1:7483' },
    dir: { type: 'string', default: '.vigil-demo' },
    check: { type: 'boolean', default: false },
    build: { type: 'boolean', default: false },
    'skip-build': { type: 'boolean', default: false },
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

let stopping = false
function stop(code) {
  stopping = true
  for (const c of children) c.kill('SIGTERM')
  setTimeout(() => process.exit(code), 500).unref()
}
process.on('SIGINT', () => stop(0))
process.on('SIGTERM', () => stop(0))

const started = Date.now()
const httpUrl = `http://${values.http}`
start('hub', [
  'hub',
  '--listen',
  values.http,
  '--broker-listen',
  values.mqtt,
  '--db',
  join(dir, 'hub.sqlite'),
])
// The agent runs only commands signed by this hub: it needs the hub's public key, which the hub
// writes beside its database on its first start.
const hubKey = join(dir, 'hub.sqlite.pub.pem')
for (let i = 0; i < 100 && !existsSync(hubKey); i++) await new Promise((r) => setTimeout(r, 50))
start('agent', ['agent', '--mqtt-url', `mqtt://${values.mqtt}`, '--hub-key', hubKey])

async function poll() {
  for (;;) {
    if (Date.now() - started > 10_000) return null
    try {
      const { nodes } = await (await fetch(`${httpUrl}/api/nodes`)).json()
      const metrics = await (await fetch(`${httpUrl}/metrics`)).text()
      const me = nodes.find((n) => n.state === 'online' && n.facts)
      if (me && metrics.includes('vigil_heartbeats_received_total')) return me
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200))
  }
}

const node = await poll()
if (!node) {
  console.error(`demo: this machine did not come online within 10 s; logs in ${dir}`)
  stop(1)
} else {
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  console.log(`
Vigil demo is running (node "${node.id}" online after ${seconds} s, ${node.facts.filesystems.length} filesystems, ${node.facts.interfaces.length} interfaces).

  API         ${httpUrl}/api/nodes
  Metrics     ${httpUrl}/metrics
  Live feed   ws://${values.http}/live
  Broker      mqtt://${values.mqtt}  (embedded)
  Logs        ${dir}/hub.log, ${dir}/agent.log

Try, in another shell:
  pnpm vigil status --hub ${httpUrl}
  pnpm vigil ping ${node.id} --hub ${httpUrl}

Ctrl-C stops the demo.`)
  if (values.check) stop(0)
}
