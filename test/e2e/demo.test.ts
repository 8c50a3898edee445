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
