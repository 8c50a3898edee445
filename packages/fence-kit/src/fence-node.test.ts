import { createLogger } from '@vigil/kit'
import { describe, expect, test } from 'vitest'
import { type FenceDevice, FenceError, type FenceErrorKind, type PowerState } from './contract.js'
import { fenceNode } from './fence-node.js'

const log = createLogger('test', 'silent')

/**
 * A scripted device: the seam for the procedure's own logic (the drivers are tested against real
 * simulators). `status` answers from a per-plug script, last answer repeating.
 */
function scripted(opts: {
  off?: FenceErrorKind | 'hang'
  status: Record<string, (PowerState | FenceErrorKind)[]>
}): FenceDevice & { offs: string[] } {
  const reads: Record<string, number> = {}
  const offs: string[] = []
  return {
    offs,
    needsPlug: true,
    canPowerOn: true,
    timeouts: { status: 1000, off: 1000, on: 1000, reboot: 1000, list: 1000, monitor: 1000 },
    async off(plug) {
      offs.push(String(plug))
      if (opts.off === 'hang') return new Promise<void>(() => {})
      if (opts.off) throw new FenceError(opts.off, `off: ${opts.off}`)
    },
    async status(plug) {
      const script = opts.status[String(plug)] ?? ['on']
      const i = Math.min(reads[String(plug)] ?? 0, script.length - 1)
      reads[String(plug)] = (reads[String(plug)] ?? 0) + 1
      const answer = script[i] as PowerState | FenceErrorKind
      if (answer === 'on' || answer === 'off') return answer
      throw new FenceError(answer, `status: ${answer}`)
    },
    async on() {},
    async reboot() {},
    async list() {
      return []
    },
    async monitor() {},
  }
}

describe('fenceNode', () => {
  test.each([
    {
      what: 'both outlets of a dual power supply read off',
      device: { status: { a: ['off'], b: ['on', 'off'] } },
      outcome: 'off',
      detail: 'all 2 plugs read back off',
    },
    {
      what: 'one outlet keeps reading on',
      device: { status: { a: ['off'], b: ['on'] } },
      outcome: 'still-on',
      detail: 'plug b still read on after off',
    },
    {
      what: 'the device refuses the credentials at off',
      device: { off: 'auth' as const, status: {} },
      outcome: 'auth-failed',
      detail: 'off of plug a failed',
    },
    {
      what: 'the device stops answering after the off',
      device: { status: { a: ['unreachable'], b: ['unreachable'] } },
      outcome: 'unreachable',
      detail: 'read-back failed',
    },
    {
      what: 'a read-back that fails once, then reads off',
      device: { status: { a: ['unreachable', 'off'], b: ['off'] } },
      outcome: 'off',
      detail: 'all 2 plugs read back off',
    },
    {
      what: 'a person who never confirms (meatware)',
      device: { status: { a: ['pending'], b: ['pending'] } },
      outcome: 'timeout',
      detail: 'waiting',
    },
    {
      what: 'an off that never returns',
      device: { off: 'hang' as const, status: {} },
      outcome: 'unreachable',
      detail: 'no answer',
    },
  ])('$what: $outcome', async ({ device, outcome, detail }) => {
    const d = scripted(device as Parameters<typeof scripted>[0])
    const run = await fenceNode(d, ['a', 'b'], { timeoutMs: 800, pollMs: 50, log })
    expect(run.outcome).toBe(outcome)
    expect(run.detail).toContain(detail === 'waiting' ? 'pending' : detail)
    if (outcome === 'off') expect(d.offs).toEqual(['a', 'b'])
  })

  test('nothing is confirmed without a read-back: every step is recorded', async () => {
    const run = await fenceNode(scripted({ status: { a: ['on', 'off'] } }), ['a'], {
      timeoutMs: 800,
      pollMs: 20,
      log,
    })
    expect(run.steps.map((s) => `${s.op}:${s.result}`)).toEqual(['off:ok', 'status:on', 'status:off'])
  })

  test.each([
    {
      what: 'already off',
      status: { a: ['off'], b: ['off'] },
      offs: [],
      steps: ['status:off', 'status:off'],
    },
    {
      what: 'still on',
      status: { a: ['off', 'off'], b: ['on', 'off'] },
      offs: ['a', 'b'],
      steps: ['status:off', 'status:on', 'off:ok', 'off:ok', 'status:off', 'status:off'],
    },
  ])('resuming with readFirst, a node $what: off sent to $offs', async ({ status, offs, steps }) => {
    const d = scripted({ status: status as Record<string, PowerState[]> })
    const run = await fenceNode(d, ['a', 'b'], { timeoutMs: 800, pollMs: 20, log, readFirst: true })
    expect(run.outcome).toBe('off')
    expect(d.offs).toEqual(offs)
    expect(run.steps.map((s) => `${s.op}:${s.result}`)).toEqual(steps)
  })
})
