import { createLogger, rejectedKeys } from '@vigil/kit'
import { afterEach, describe, expect, test } from 'vitest'
import { type Driver, DriverError, type DriverFactory } from './contract.js'
import { runAction } from './run.js'

export interface ConformanceTarget {
  /** A valid config for a real target that starts stopped. */
  config: unknown
  /** Makes the running target fail behind the driver's back (kill it, corrupt it). */
  breakIt(driver: Driver): Promise<void>
  /** Configs that must be rejected, with the key the error must name. */
  invalid: { config: unknown; key: string }[]
  /** A config whose start hangs past a short timeout (to check timeouts cancel). */
  hangingStart: unknown
  cleanup?(): Promise<void>
}

const log = createLogger('conformance', 'silent')

const ctx = { log }

/**
 * The suite every driver with start and stop passes against the real thing: double start, double
 * stop, monitor after stop, monitor of a failed target, invalid config, action timeout.
 */
export function driverConformance(factory: DriverFactory, target: () => Promise<ConformanceTarget>): void {
  describe(`${factory.name} driver conformance`, () => {
    const drivers: Driver[] = []
    let current: ConformanceTarget | null = null
    const make = async () => {
      current = await target()
      const driver = factory.create(factory.configSchema.parse(current.config), {
        resourceId: 'conformance',
        log,
      })
      drivers.push(driver)
      return driver
    }
    afterEach(async () => {
      for (const d of drivers.splice(0)) {
        await d.stop?.({ ...ctx, signal: new AbortController().signal }).catch(() => {})
        await d.close?.()
      }
      await current?.cleanup?.()
    })

    test('a new target monitors as stopped', async () => {
      const d = await make()
      expect((await runAction(d, 'monitor', ctx))?.state).toBe('stopped')
    })

    test('start, then start again: both succeed and it runs', async () => {
      const d = await make()
      await runAction(d, 'start', ctx)
      await runAction(d, 'start', ctx)
      expect((await runAction(d, 'monitor', ctx))?.state).toBe('running')
    })

    test('stop, then stop again: both succeed and it is stopped (not failed)', async () => {
      const d = await make()
      await runAction(d, 'start', ctx)
      await runAction(d, 'stop', ctx)
      await runAction(d, 'stop', ctx)
      expect((await runAction(d, 'monitor', ctx))?.state).toBe('stopped')
    })

    test('a target broken behind its back monitors as failed, and start recovers it', async () => {
      const d = await make()
      await runAction(d, 'start', ctx)
      await current?.breakIt(d)
      expect((await runAction(d, 'monitor', ctx))?.state).toBe('failed')
      await runAction(d, 'start', ctx)
      expect((await runAction(d, 'monitor', ctx))?.state).toBe('running')
    })

    test('invalid configs are rejected naming the key', async () => {
      const t = await target()
      current = t
      for (const { config, key } of t.invalid) {
        expect(rejectedKeys(factory.configSchema, config), JSON.stringify(config)).toContain(key)
      }
    })

    test('an action past its timeout is cancelled with a transient error', async () => {
      const t = await target()
      current = t
      const d = factory.create(factory.configSchema.parse(t.hangingStart), { resourceId: 'conformance', log })
      drivers.push(d)
      const err = await runAction(d, 'start', ctx, 300).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(DriverError)
      expect((err as DriverError).kind).toBe('transient')
    })
  })
}

export { rejectedKeys }
