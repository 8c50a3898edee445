import type { Logger } from '@vigil/kit'
import type { FenceOutcome } from '@vigil/protocol'
import type { FenceDevice, FenceErrorKind, PowerState } from './contract.js'
import { FenceError } from './contract.js'
import { runFenceOp } from './run.js'

export interface FenceStep {
  op: 'off' | 'status'
  plug: string | null
  /** "off", "on", "ok", or the error kind. */
  result: PowerState | 'ok' | FenceErrorKind
  ms: number
}

export interface FenceRun {
  outcome: FenceOutcome
  /** One sentence for the decision record and the fence history. */
  detail: string
  durationMs: number
  steps: FenceStep[]
}

const outcomeOf: Record<FenceErrorKind, FenceOutcome> = {
  unreachable: 'unreachable',
  auth: 'auth-failed',
  config: 'auth-failed',
  'still-on': 'still-on',
  pending: 'timeout',
}

/**
 * Powers a node off through one device and proves it: every plug is switched off, then every
 * plug's power state is read back until all read off. Only then is the outcome `off`. The whole
 * run has one time budget (the fence level's); a device that says "done" but reads back on is
 * `still-on`, one that cannot be read back is never confirmed.
 *
 * Dual power supplies: a node fed by two outlets is off only when both read off.
 */
export async function fenceNode(
  device: FenceDevice,
  plugs: readonly (string | null)[],
  opts: {
    timeoutMs: number
    pollMs?: number
    log: Logger
    signal?: AbortSignal
    /**
     * Read every plug first and send nothing if all already read off: resuming a fence that may
     * have completed while its hub was down powers nothing off twice.
     */
    readFirst?: boolean
  },
): Promise<FenceRun> {
  const started = performance.now()
  const deadline = started + opts.timeoutMs
  const pollMs = opts.pollMs ?? 250
  const steps: FenceStep[] = []
  const left = () => Math.max(1, deadline - performance.now())
  const ctx = { log: opts.log, signal: opts.signal }
  const done = (outcome: FenceOutcome, detail: string): FenceRun => ({
    outcome,
    detail,
    durationMs: Math.round(performance.now() - started),
    steps,
  })
  const attempt = async <T>(
    op: 'off' | 'status',
    plug: string | null,
    run: () => Promise<T>,
  ): Promise<T | FenceError> => {
    const t0 = performance.now()
    try {
      const value = await run()
      steps.push({ op, plug, result: op === 'status' ? (value as PowerState) : 'ok', ms: ms(t0) })
      return value
    } catch (err) {
      const e = err instanceof FenceError ? err : new FenceError('unreachable', String(err))
      steps.push({ op, plug, result: e.kind, ms: ms(t0) })
      return e
    }
  }
  const label = (plug: string | null) => (plug === null ? 'the target' : `plug ${plug}`)

  if (opts.readFirst) {
    let allOff = true
    for (const plug of plugs) {
      const r = await attempt('status', plug, () =>
        runFenceOp(device, 'status', plug, ctx, Math.min(device.timeouts.status, left())),
      )
      if (r !== 'off') allOff = false
      if (r !== 'off') break
    }
    if (allOff)
      return done(
        'off',
        `${plugs.length > 1 ? `all ${plugs.length} plugs` : label(plugs[0] ?? null)} already read off: nothing sent`,
      )
  }

  for (const plug of plugs) {
    const r = await attempt('off', plug, () =>
      runFenceOp(device, 'off', plug, ctx, Math.min(device.timeouts.off, left())),
    )
    if (r instanceof FenceError && r.kind !== 'pending')
      return done(outcomeOf[r.kind], `off of ${label(plug)} failed: ${r.message}`)
  }

  // Read back until every plug reads off. An error while reading back is retried until the budget
  // is spent: the off was sent, but nothing is confirmed without a read-back.
  let last = 'no read-back yet'
  let lastKind: FenceErrorKind | 'on' = 'pending'
  for (;;) {
    const on: string[] = []
    let failed: FenceError | null = null
    for (const plug of plugs) {
      const r = await attempt('status', plug, () =>
        runFenceOp(device, 'status', plug, ctx, Math.min(device.timeouts.status, left())),
      )
      if (r instanceof FenceError) {
        failed = r
        break
      }
      if (r === 'on') on.push(label(plug))
    }
    if (!failed && on.length === 0) {
      const what = plugs.length > 1 ? `all ${plugs.length} plugs` : label(plugs[0] ?? null)
      return done('off', `${what} read back off`)
    }
    if (failed && (failed.kind === 'auth' || failed.kind === 'config'))
      return done('auth-failed', `read-back failed: ${failed.message}`)
    last = failed ? `read-back failed: ${failed.message}` : `${on.join(', ')} still read on after off`
    lastKind = failed ? failed.kind : 'on'
    if (performance.now() + pollMs >= deadline || opts.signal?.aborted) break
    await sleep(pollMs, opts.signal)
  }
  const outcome: FenceOutcome =
    lastKind === 'on' ? 'still-on' : lastKind === 'unreachable' ? 'unreachable' : 'timeout'
  return done(outcome, `not confirmed within ${opts.timeoutMs} ms: ${last}`)
}

function ms(t0: number): number {
  return Math.round(performance.now() - t0)
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms)
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t)
        resolve()
      },
      { once: true },
    )
  })
}
