import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, test } from 'vitest'

/**
 * The watchdog in a real child process: a blocked event loop gets the process killed; a process
 * frozen by SIGSTOP and continued is not killed, and learns how long it stood still.
 */
// The built module (tests run after the build): a child process runs plain JavaScript.
const watchdogModule = fileURLToPath(new URL('../dist/watchdog.js', import.meta.url))

function child(body: string): { proc: ChildProcess; output: () => string; exited: Promise<string> } {
  const script = `
    const { startLoopWatchdog } = await import(${JSON.stringify(watchdogModule)})
    const w = startLoopWatchdog({
      name: 'test', stallMs: 600, pauseMs: 400, now: () => performance.now(),
      onResumed: (ms) => console.log('resumed after ' + Math.round(ms)),
    })
    console.log('watching')
    ${body}
  `
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  proc.stdout?.on('data', (d) => {
    out += d
  })
  proc.stderr?.on('data', (d) => {
    out += d
  })
  const exited = new Promise<string>((resolve) =>
    proc.on('exit', (code, signal) => resolve(signal ?? `code ${code}`)),
  )
  return { proc, output: () => out, exited }
}

async function until(predicate: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('loop watchdog', () => {
  let running: ChildProcess | null = null
  afterEach(() => {
    running?.kill('SIGKILL')
    running = null
  })

  test('a blocked event loop gets the process killed, with one line saying why', async () => {
    const c = child(`setTimeout(() => { for (;;) {} }, 1000)`)
    running = c.proc
    expect(await c.exited).toBe('SIGKILL')
    expect(c.output()).toMatch(
      /vigil test: event loop blocked for \d+ ms \(watchdog.stallMs 600\): killing the process/,
    )
  })

  test('a process frozen by SIGSTOP longer than stallMs is not killed when continued, and learns the pause', async () => {
    const c = child(`setInterval(() => {}, 1000)`)
    running = c.proc
    await until(() => c.output().includes('watching'), 'the child to start')
    await new Promise((r) => setTimeout(r, 300))
    c.proc.kill('SIGSTOP')
    await new Promise((r) => setTimeout(r, 2000))
    c.proc.kill('SIGCONT')
    await until(() => /resumed after (\d+)/.test(c.output()), 'the pause to be reported')
    const ms = Number(/resumed after (\d+)/.exec(c.output())?.[1])
    expect(ms).toBeGreaterThanOrEqual(1500)
    await new Promise((r) => setTimeout(r, 1500))
    expect(c.proc.exitCode).toBeNull()
    expect(c.proc.signalCode).toBeNull()
    expect(c.output()).not.toMatch(/blocked/)
  })
})
