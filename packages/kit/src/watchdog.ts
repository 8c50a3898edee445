import { writeSync } from 'node:fs'
import { Worker } from 'node:worker_threads'

export interface LoopWatchdogOptions {
  /** "hub", "agent": names the process in the line written before it is killed. */
  name: string
  /**
   * The event loop blocked this long (an endless loop, a synchronous call stuck on dead storage):
   * the process is killed (SIGKILL) so that its supervisor restarts it. 0 disables the kill.
   */
  stallMs: number
  /**
   * The loop ran again after standing still at least this long (the process was frozen by SIGSTOP
   * or a paused VM, or blocked for less than `stallMs`): `onResumed` is told how long.
   */
  pauseMs: number
  onResumed(stoodStillMs: number): void
  now(): number
}

export interface LoopWatchdog {
  /**
   * Reports a pause not yet reported (to `onResumed`, once) and returns its length: code that
   * judges silence (the engine's step) calls this first, as its timer may fire before the
   * watchdog's own after a freeze.
   */
  checkPause(): number | null
  close(): Promise<void>
}

const BEAT_MS = 100

/**
 * A watchdog inside the process. The event loop beats into shared memory; a worker thread, which
 * a blocked loop does not stop, kills the process when the beats stop for `stallMs`. A frozen
 * process freezes the worker too: the worker tells the two apart by its own sleep, which a freeze
 * stretches and a blocked loop does not, so a resumed process is never killed for a pause.
 */
export function startLoopWatchdog(options: LoopWatchdogOptions): LoopWatchdog {
  const beats = new Int32Array(new SharedArrayBuffer(4))
  let worker: Worker | null = null
  if (options.stallMs > 0) {
    worker = new Worker(WORKER_SOURCE, {
      eval: true,
      // Not the parent's flags (--input-type=module would make this CommonJS source fail).
      execArgv: [],
      workerData: { beats, stallMs: options.stallMs, name: options.name },
    })
    worker.unref()
    // A watchdog that cannot run must not take the process down: it only stops guarding.
    worker.on('error', (err) =>
      writeSync(2, `vigil ${options.name}: loop watchdog stopped: ${err.message}\n`),
    )
  }
  let last = options.now()
  let pending: number | null = null
  const check = () => {
    const now = options.now()
    const gap = now - last
    last = now
    if (gap - BEAT_MS >= options.pauseMs) pending = Math.max(pending ?? 0, gap - BEAT_MS)
  }
  const timer = setInterval(() => {
    Atomics.add(beats, 0, 1)
    check()
    const p = pending
    pending = null
    if (p !== null) options.onResumed(p)
  }, BEAT_MS)
  timer.unref()
  return {
    checkPause() {
      check()
      const p = pending
      pending = null
      if (p !== null) options.onResumed(p)
      return p
    },
    async close() {
      clearInterval(timer)
      await worker?.terminate()
    },
  }
}

// Plain JavaScript run by the worker: it must not depend on the event loop it watches.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads')
const { writeSync } = require('node:fs')
const { beats, stallMs, name } = workerData
const sleeper = new Int32Array(new SharedArrayBuffer(4))
const step = Math.min(250, Math.max(10, Math.floor(stallMs / 4)))
let seen = Atomics.load(beats, 0)
let since = performance.now()
let woke = since
for (;;) {
  Atomics.wait(sleeper, 0, 0, step)
  const now = performance.now()
  const overslept = now - woke > step + Math.max(1000, stallMs / 2)
  woke = now
  const beat = Atomics.load(beats, 0)
  if (beat !== seen || overslept) {
    // The loop beat, or the whole process was frozen (this thread with it): count afresh.
    seen = beat
    since = now
    continue
  }
  if (now - since >= stallMs) {
    writeSync(2, 'vigil ' + name + ': event loop blocked for ' + Math.round(now - since) + ' ms (watchdog.stallMs ' + stallMs + '): killing the process so that it is restarted\\n')
    process.kill(process.pid, 'SIGKILL')
  }
}
`
