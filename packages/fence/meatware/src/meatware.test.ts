import { fenceNode, runFenceOp } from '@vigil/fence-kit'
import { fenceConformance } from '@vigil/fence-kit/conformance'
import { createLogger } from '@vigil/kit'
import { describe, expect, test } from 'vitest'
import { MeatwareDevice, meatwareConfigSchema, meatwareDriver } from './index.js'

const log = createLogger('test', 'silent')

/** Confirms the request as an operator would, as soon as Vigil has made it. */
function operatorConfirms(device: MeatwareDevice, plug: string): void {
  const tick = () => (device.confirm(plug, 'test-operator') ? undefined : setTimeout(tick, 20))
  tick()
}

fenceConformance(meatwareDriver, async () => ({
  config: { instructions: 'switch <node> off' },
  plug: 'node-7',
  badCredentials: null,
  // A person is never unreachable in the device sense; an unanswered request is checked below.
  unreachable: null,
  invalid: [{ config: { instructions: 'x', timeoutMs: 5 }, key: 'timeoutMs' }],
  confirmOff: (device) => operatorConfirms(device as MeatwareDevice, 'node-7'),
}))

describe('meatware', () => {
  const make = () => new MeatwareDevice(meatwareConfigSchema.parse({}))

  test('an unconfirmed request never becomes "off": the fence times out', async () => {
    const run = await fenceNode(make(), ['n1'], { timeoutMs: 600, pollMs: 100, log })
    expect(run.outcome).toBe('timeout')
    expect(run.detail).toContain('waiting for an operator to confirm n1 is off')
  })

  test('a confirmation before Vigil asked is refused; after it asked, it confirms', async () => {
    const d = make()
    expect(d.confirm('n1', 'early')).toBe(false)
    await runFenceOp(d, 'off', 'n1', { log })
    expect(d.pending()).toMatchObject([{ plug: 'n1', confirmedAt: null }])
    expect(d.confirm('n1', 'alice')).toBe(true)
    expect(await runFenceOp(d, 'status', 'n1', { log })).toBe('off')
    expect(d.pending()).toMatchObject([{ plug: 'n1', confirmedBy: 'alice' }])
  })

  test('powering the host on again forgets the confirmation', async () => {
    const d = make()
    await runFenceOp(d, 'off', 'n1', { log })
    d.confirm('n1', 'alice')
    await runFenceOp(d, 'on', 'n1', { log })
    expect(await runFenceOp(d, 'status', 'n1', { log })).toBe('on')
  })
})
