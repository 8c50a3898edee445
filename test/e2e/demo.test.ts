import { spawn, spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { freePort } from '../harness/mosquitto.js'
import { runVigil, tempDir } from '../harness/processes.js'

const repo = join(import.meta.dirname, '../..')

/** The demo on free ports in its own directory, run as `command`; its output and exit collected. */
async function runDemo(command: string, args: string[], dir: string, detached = false) {
  const [http, mqtt] = [await freePort(), await freePort()]
  const child = spawn(
    command,
    [...args, '--http', `127.0.0.1:${http}`, '--mqtt', `127.0.0.1:${mqtt}`, '--dir', dir],
    { cwd: repo, detached, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  const output = { stdout: '', all: '' }
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    output.stdout += d
    output.all += d
  })
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    output.all += d
  })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
  return { child, http, output, exited }
}

// The README's first command ends in `pnpm demo`: a hub with embedded broker and SQLite, and two
// agents on this machine keeping `web` and `report` running. `--check` exits 0 once both run (the
// workload ends with the demo: an agent that stops leaves its processes, so the demo ends them).
test('the demo runs a cluster with something to protect, and leaves nothing running', async () => {
  const dir = tempDir('demo')
  try {
    const webPort = await freePort()
    const demo = await runDemo(
      process.execPath,
      [join(repo, 'scripts/demo.mjs'), '--check', '--web-port', String(webPort)],
      dir.path,
    )
    expect(await demo.exited, demo.output.all).toBe(0)
    expect(demo.output.stdout).toMatch(/Vigil demo is running: web and report on demo-a after [\d.]+ s/)
    expect(demo.output.stdout).toContain(`http://127.0.0.1:${demo.http}/metrics`)
    expect(demo.output.stdout).toContain('pnpm vigil why web')
    await new Promise((r) => setTimeout(r, 300))
    expect(demoApps(webPort)).toEqual([])
  } finally {
    dir.remove()
  }
})

/** Live processes of the demo workload serving (or reading) web on this port. */
function demoApps(webPort: number): string[] {
  const pattern = `demo-app\\.mjs (web --port ${webPort}|report --url http://127\\.0\\.0\\.1:${webPort})`
  return spawnSync('pgrep', ['-f', pattern], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)
}

// What the demo prints to try, done as a newcomer would: the app killed is restarted in place,
// `vigil why web` tells why, maintenance on a node shows on the API, and a move takes web and its
// dependent report to the other node.
test("the demo's three things to try each do what it says", async () => {
  const dir = tempDir('demo-try')
  const webPort = await freePort()
  const demo = await runDemo(
    process.execPath,
    [join(repo, 'scripts/demo.mjs'), '--web-port', String(webPort)],
    dir.path,
  )
  try {
    await eventually('the demo up', async () => demo.output.stdout.includes('Ctrl-C stops the demo.'), {
      timeoutMs: 30_000,
    })
    const hub = `http://127.0.0.1:${demo.http}`
    const web = async () => (await fetch(`http://127.0.0.1:${webPort}`)).text()
    const before = await web()
    expect(before).toMatch(/^web on demo-a, pid \d+/)
    // 1. Kill the app: restarted in place.
    const kill = spawnSync('pkill', ['-f', `demo-app.mjs web --port ${webPort}`])
    expect(kill.status).toBe(0)
    const after = await eventually('web answers again, a new process', async () => {
      const text = await web().catch(() => '')
      return text && text !== before ? text : undefined
    })
    expect(after).toMatch(/^web on demo-a/)
    // 2. Why: the restart, with its rule.
    const why = await runVigil(['why', 'web', '--hub', hub])
    expect(why.code, why.stderr).toBe(0)
    expect(why.stdout).toMatch(/ladder\.restart/)
    // 3. Move web (report follows it), then maintenance on a node.
    const move = await runVigil(['move', 'web', 'demo-b', '--hub', hub])
    expect(move.code, move.stderr).toBe(0)
    await eventually('web and report on demo-b', async () => {
      const { resources } = (await (await fetch(`${hub}/api/resources`)).json()) as {
        resources: { id: string; phase: string; node: string | null }[]
      }
      return ['web', 'report'].every((id) =>
        resources.some((r) => r.id === id && r.phase === 'running' && r.node === 'demo-b'),
      )
    })
    expect(await web()).toMatch(/^web on demo-b/)
    // The cluster frozen and thawed (VCS's words for the cluster's maintenance).
    const freeze = await runVigil(['cluster', 'freeze', '--hub', hub])
    expect(freeze.code, freeze.stderr).toBe(0)
    await eventually('cluster frozen', async () => {
      const info = (await (await fetch(`${hub}/api`)).json()) as { maintenance: unknown }
      return info.maintenance !== null
    })
    expect((await runVigil(['cluster', 'thaw', '--hub', hub])).code).toBe(0)
    await eventually('cluster thawed, web managed again', async () => {
      const info = (await (await fetch(`${hub}/api`)).json()) as { maintenance: unknown }
      const { resources } = (await (await fetch(`${hub}/api/resources`)).json()) as {
        resources: { id: string; phase: string }[]
      }
      return info.maintenance === null && resources.find((r) => r.id === 'web')?.phase === 'running'
    })
    const maintenance = await runVigil(['maintenance', 'on', '--node', 'demo-a', '--hub', hub])
    expect(maintenance.code, maintenance.stderr).toBe(0)
    await eventually('demo-a in maintenance', async () => {
      const node = (await (await fetch(`${hub}/api/nodes/demo-a`)).json()) as {
        engine: { maintenance: unknown } | null
      }
      return node.engine?.maintenance != null
    })
    // Day-2: an operator stops web (report, which depends on it, stops first) and starts it again.
    const phases = async () => {
      const { resources } = (await (await fetch(`${hub}/api/resources`)).json()) as {
        resources: { id: string; phase: string; node: string | null }[]
      }
      return Object.fromEntries(resources.map((r) => [r.id, r.phase]))
    }
    const stop = await runVigil(['resource', 'stop', 'web', '--hub', hub])
    expect(stop.code, stop.stderr).toBe(0)
    expect(stop.stdout).toContain('vigil resource stop: accepted')
    await eventually('web and report stopped', async () => {
      const p = await phases()
      return p.web === 'stopped' && p.report === 'waiting'
    })
    expect(await web().catch(() => 'no answer')).toBe('no answer')
    const start = await runVigil(['resource', 'enable', 'web', '--hub', hub])
    expect(start.code, start.stderr).toBe(0)
    await eventually('web and report running again', async () => {
      const p = await phases()
      return p.web === 'running' && p.report === 'running'
    })
    expect(await web()).toMatch(/^web on demo-b/)
  } finally {
    demo.child.kill('SIGINT')
    await demo.exited
    dir.remove()
  }
}, 90_000)

// `pnpm demo` as a user runs it, ended with Ctrl-C (SIGINT to its whole process group, as a
// terminal sends it): it exits 0, with no pnpm "ELIFECYCLE Command failed" and no stack trace.
test('Ctrl-C ends `pnpm demo` with exit 0 and nothing alarming', async () => {
  const dir = tempDir('demo-ctrl-c')
  try {
    const demo = await runDemo('pnpm', ['demo', '--skip-build'], dir.path, true)
    const until = Date.now() + 30_000
    while (!demo.output.all.includes('Ctrl-C stops the demo.') && Date.now() < until)
      await new Promise((r) => setTimeout(r, 100))
    expect(demo.output.all).toContain('Ctrl-C stops the demo.')
    process.kill(-(demo.child.pid as number), 'SIGINT')
    expect(await demo.exited).toBe(0)
    expect(demo.output.all).not.toMatch(/ELIFECYCLE|Command failed|^\s+at /m)
  } finally {
    dir.remove()
  }
})
