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
 * stop, monitor after stop, monitor of a failed target, stop of a failed target, invalid config,
 * action timeout.
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

    // OCF's recovery contract: a failed target is recovered by a start, or by a stop first (what a
    // manager does after a failure), and a stop that succeeded leaves it stopped, not failed (else
    // the manager stops it again, forever).
    test.each([
      ['start recovers it', ['start']],
      ['once stopped it monitors as stopped, and start recovers it', ['stop', 'start']],
    ] as const)('a target broken behind its back monitors as failed; %s', async (_, recovery) => {
      const d = await make()
      await runAction(d, 'start', ctx)
      await current?.breakIt(d)
      expect((await runAction(d, 'monitor', ctx))?.state).toBe('failed')
      for (const action of recovery) {
        await runAction(d, action, ctx)
        expect((await runAction(d, 'monitor', ctx))?.state).toBe(action === 'stop' ? 'stopped' : 'running')
      }
    })

    // The optional actions (reset, reboot, suspend, resume, migrate) are checked wherever a driver
    // declares them: a declared one has its method, an undeclared one is refused as config (the
    // hub never retries it), and on the running target reset, suspend and resume do what they say,
    // suspend and resume idempotent. Reboot (from inside the guest) and migrate (a second node)
    // need more than one target: each driver's own tests run them.
    test('optional actions: declared ones act on the running target, undeclared ones are refused as config', async () => {
      const d = await make()
      const optional = ['reset', 'reboot', 'suspend', 'resume', 'migrate'] as const
      const declared = new Set<string>(d.capabilities)
      for (const action of optional) {
        if (declared.has(action)) {
          expect(typeof d[action], `${action} is declared: its method`).toBe('function')
          continue
        }
        const err = await runAction(d, action, { ...ctx, target: 'elsewhere' }).catch((e: unknown) => e)
        expect(err, action).toBeInstanceOf(DriverError)
        expect((err as DriverError).kind, action).toBe('config')
      }
      if (!declared.has('reset') && !declared.has('suspend')) return
      await runAction(d, 'start', ctx)
      if (declared.has('reset')) {
        await runAction(d, 'reset', ctx)
        expect((await runAction(d, 'monitor', ctx))?.state, 'after reset').toBe('running')
      }
      if (declared.has('suspend')) {
        expect(declared.has('resume'), 'what can be suspended can be resumed').toBe(true)
        await runAction(d, 'suspend', ctx)
        await runAction(d, 'suspend', ctx)
        expect(['suspended', 'paused']).toContain((await runAction(d, 'monitor', ctx))?.state)
        await runAction(d, 'resume', ctx)
        await runAction(d, 'resume', ctx)
        expect((await runAction(d, 'monitor', ctx))?.state, 'after resume').toBe('running')
      }
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

export interface MonitorConformanceTarget {
  /** A valid config for a real, healthy target. */
  healthy: unknown
  /** A valid config for a real target that is down (a closed port, a missing link, a full disk). */
  broken: unknown
  /** Monitors of the broken target before it reports failed (its failures-before-critical). */
  samplesToFail?: number
  /** Configs that must be rejected, with the key the error must name. */
  invalid: { config: unknown; key: string }[]
  /** A config whose monitor blocks past a short timeout (unless the suite is told it cannot block). */
  hanging?: unknown
  cleanup?(): Promise<void>
}

/**
 * The suite for drivers that only watch (checks, disks, links, reachability): they declare no
 * actions and refuse every one as a config error; monitor is three-state on the real thing
 * (running when healthy, failed when broken, after the driver's own hysteresis); invalid configs
 * name their key; a monitor past its timeout is cancelled with a transient error.
 */
export function monitorConformance(
  factory: DriverFactory,
  target: () => Promise<MonitorConformanceTarget>,
  /** false for a driver whose monitor reads only kernel files (sysfs): nothing there blocks. */
  { monitorCanBlock = true } = {},
): void {
  describe(`${factory.name} driver conformance (monitor only)`, () => {
    const drivers: Driver[] = []
    let current: MonitorConformanceTarget | null = null
    const make = (config: unknown) => {
      const driver = factory.create(factory.configSchema.parse(config), { resourceId: 'conformance', log })
      drivers.push(driver)
      return driver
    }
    afterEach(async () => {
      for (const d of drivers.splice(0)) await d.close?.()
      await current?.cleanup?.()
      current = null
    })

    test('declares no actions, and refuses each as a config error', async () => {
      current = await target()
      const d = make(current.healthy)
      expect(d.capabilities).toEqual([])
      for (const action of ['start', 'stop', 'restart', 'reset', 'suspend', 'migrate'] as const) {
        const err = await runAction(d, action, { ...ctx, target: 'elsewhere' }).catch((e: unknown) => e)
        expect(err, action).toBeInstanceOf(DriverError)
        expect((err as DriverError).kind, action).toBe('config')
      }
    })

    test('a healthy target monitors as running', async () => {
      current = await target()
      expect((await runAction(make(current.healthy), 'monitor', ctx))?.state).toBe('running')
    })

    test('a broken target monitors as failed, never as stopped', async () => {
      current = await target()
      const d = make(current.broken)
      const states: (string | undefined)[] = []
      for (let i = 0; i < (current.samplesToFail ?? 1); i++)
        states.push((await runAction(d, 'monitor', ctx))?.state)
      expect(states.at(-1)).toBe('failed')
      expect(states).not.toContain('stopped')
    })

    test('invalid configs are rejected naming the key', async () => {
      current = await target()
      for (const { config, key } of current.invalid) {
        expect(rejectedKeys(factory.configSchema, config), JSON.stringify(config)).toContain(key)
      }
    })

    if (monitorCanBlock)
      test('a monitor past its timeout is cancelled with a transient error', async () => {
        current = await target()
        expect(current.hanging, 'a target that can block must say how').toBeDefined()
        const err = await runAction(make(current.hanging), 'monitor', ctx, 300).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(DriverError)
        expect((err as DriverError).kind).toBe('transient')
      })
  })
}
