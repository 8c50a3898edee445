import { createLogger } from '@vigil/kit'
import { describe, expect, test } from 'vitest'
import { type Driver, DriverError } from './contract.js'
import { runAction } from './run.js'

const ctx = { log: createLogger('test', 'silent') }
const timeouts = { monitor: 1000, start: 1000, stop: 1000, restart: 1000 }

function fake(over: Partial<Driver> = {}): Driver & { calls: string[] } {
  const calls: string[] = []
  return {
    calls,
    capabilities: ['start', 'stop', 'restart'],
    timeouts,
    monitor: async () => ({ state: 'running' }),
    start: async () => void calls.push('start'),
    stop: async () => void calls.push('stop'),
    ...over,
  }
}

describe('runAction', () => {
  test('restart is stop then start', async () => {
    const d = fake()
    await runAction(d, 'restart', ctx)
    expect(d.calls).toEqual(['stop', 'start'])
  })

  test('an action past its timeout is a transient error and its signal is aborted', async () => {
    let aborted = false
    const d = fake({
      start: (c) =>
        new Promise<void>((resolve) => {
          c.signal.addEventListener('abort', () => {
            aborted = true
            resolve()
          })
        }),
    })
    await expect(runAction(d, 'start', ctx, 50)).rejects.toMatchObject({
      name: 'DriverError',
      kind: 'transient',
    })
    expect(aborted).toBe(true)
  })

  test.each([
    {
      name: 'a DriverError keeps its kind',
      thrown: new DriverError('local', 'no binary here'),
      kind: 'local',
    },
    { name: 'anything else becomes transient', thrown: new Error('EBUSY'), kind: 'transient' },
  ])('$name', async ({ thrown, kind }) => {
    const d = fake({
      start: async () => {
        throw thrown
      },
    })
    await expect(runAction(d, 'start', ctx)).rejects.toMatchObject({ kind })
  })

  test('an action the driver does not implement is a config error', async () => {
    const d = fake({ stop: undefined })
    await expect(runAction(d, 'stop', ctx)).rejects.toMatchObject({ kind: 'config' })
    await expect(runAction(d, 'restart', ctx)).rejects.toMatchObject({ kind: 'config' })
  })

  test.each(['reset', 'reboot', 'suspend', 'resume', 'migrate'] as const)(
    '%s the driver does not implement is a config error',
    async (action) => {
      await expect(runAction(fake(), action, { ...ctx, target: 'node-b' })).rejects.toMatchObject({
        kind: 'config',
        message: `this driver cannot ${action}`,
      })
    },
  )

  test('migrate reaches the driver with its target, and without one is a config error', async () => {
    const targets: (string | undefined)[] = []
    const d = fake({ migrate: async (c) => void targets.push(c.target) })
    await runAction(d, 'migrate', { ...ctx, target: 'node-b' })
    expect(targets).toEqual(['node-b'])
    await expect(runAction(d, 'migrate', ctx)).rejects.toMatchObject({
      kind: 'config',
      message: 'migrate needs a target node',
    })
  })

  test("monitor returns the driver's result", async () => {
    expect(await runAction(fake(), 'monitor', ctx)).toEqual({ state: 'running' })
  })
})
