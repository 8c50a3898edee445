import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { expect, test } from 'vitest'
import { freePort } from '../harness/mosquitto.js'
import { tempDir } from '../harness/processes.js'

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

// The README's first command ends in `pnpm demo`: hub with embedded broker and SQLite, plus a local
// agent. `--check` exits 0 once this machine is online with facts and /metrics has vigil_ series.
test('the demo brings this machine online with its facts and metrics', async () => {
  const dir = tempDir('demo')
  try {
    const demo = await runDemo(process.execPath, [join(repo, 'scripts/demo.mjs'), '--check'], dir.path)
    expect(await demo.exited).toBe(0)
    expect(demo.output.stdout).toMatch(
      /Vigil demo is running \(node "[^"]+" online after [\d.]+ s, [1-9]\d* filesystems, [1-9]\d* interfaces\)/,
    )
    expect(demo.output.stdout).toContain(`http://127.0.0.1:${demo.http}/metrics`)
  } finally {
    dir.remove()
  }
})

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
