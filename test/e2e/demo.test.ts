import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { expect, test } from 'vitest'
import { freePort } from '../harness/mosquitto.js'
import { tempDir } from '../harness/processes.js'

// The README's first command ends in `pnpm demo`: hub with embedded broker and SQLite, plus a local
// agent. `--check` exits 0 once this machine is online with facts and /metrics has vigil_ series.
test('the demo brings this machine online with its facts and metrics', async () => {
  const dir = tempDir('demo')
  try {
    const [http, mqtt] = [await freePort(), await freePort()]
    const child = spawn(
      process.execPath,
      [
        join(import.meta.dirname, '../../scripts/demo.mjs'),
        '--check',
        '--http',
        `127.0.0.1:${http}`,
        '--mqtt',
        `127.0.0.1:${mqtt}`,
        '--dir',
        dir.path,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d
    })
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
    expect(code).toBe(0)
    expect(out).toMatch(
      /Vigil demo is running \(node "[^"]+" online after [\d.]+ s, [1-9]\d* filesystems, [1-9]\d* interfaces\)/,
    )
    expect(out).toContain(`http://127.0.0.1:${http}/metrics`)
  } finally {
    dir.remove()
  }
})

// `pnpm demo` as a user runs it, ended with Ctrl-C (SIGINT to its whole process group, as a
// terminal sends it): it exits 0, with no pnpm "ELIFECYCLE Command failed" and no stack trace.
test('Ctrl-C ends `pnpm demo` with exit 0 and nothing alarming', async () => {
  const dir = tempDir('demo-ctrl-c')
  try {
    const [http, mqtt] = [await freePort(), await freePort()]
    const child = spawn(
      'pnpm',
      [
        'demo',
        '--skip-build',
        '--http',
        `127.0.0.1:${http}`,
        '--mqtt',
        `127.0.0.1:${mqtt}`,
        '--dir',
        dir.path,
      ],
      {
        cwd: join(import.meta.dirname, '../..'),
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    let out = ''
    const collect = (d: string) => {
      out += d
    }
    child.stdout.setEncoding('utf8').on('data', collect)
    child.stderr.setEncoding('utf8').on('data', collect)
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
    const until = Date.now() + 30_000
    while (!out.includes('Ctrl-C stops the demo.') && Date.now() < until)
      await new Promise((r) => setTimeout(r, 100))
    expect(out).toContain('Ctrl-C stops the demo.')
    process.kill(-(child.pid as number), 'SIGINT')
    expect(await exited).toBe(0)
    expect(out).not.toMatch(/ELIFECYCLE|Command failed|^\s+at /m)
  } finally {
    dir.remove()
  }
})
