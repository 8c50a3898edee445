import { createLogger, rejectedKeys } from '@vigil/kit'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { type FenceDevice, type FenceDriverFactory, FenceError, type FenceErrorKind } from './contract.js'
import { fenceNode } from './fence-node.js'
import { runFenceOp } from './run.js'

export interface FenceTarget {
  /** A valid config for a real device (simulator) that is up. */
  config: unknown
  /** The plug that feeds the test host (null for a device without plugs). */
  plug: string | null
  /** The same device with wrong credentials, or null if it has none (meatware). */
  badCredentials: unknown | null
  /** A config pointing at a device that does not answer (hung or absent); null if it cannot be (meatware). */
  unreachable: unknown | null
  /** Configs that must be rejected, with the key the error must name. */
  invalid: { config: unknown; key: string }[]
  /** Powers the target on by other means, for devices that cannot (ssh). */
  powerOn?(): Promise<void>
  /** Waits for `off` to be confirmed by whoever must (meatware's operator); most devices need nothing. */
  confirmOff?(device: FenceDevice): void
  cleanup?(): Promise<void>
}

const log = createLogger('conformance', 'silent')
const ctx = { log }

async function kindOf(p: Promise<unknown>): Promise<FenceErrorKind | 'ok'> {
  try {
    await p
    return 'ok'
  } catch (err) {
    if (err instanceof FenceError) return err.kind
    throw err
  }
}

async function eventually(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (await check()) return true
    await new Promise((r) => setTimeout(r, 200))
  }
  return check()
}

/**
 * The suite every fence driver passes against its real device simulator: monitor, idempotent on
 * and off with read-back, reboot, list, a full fence with confirmation, wrong credentials (auth,
 * never unreachable), a device that does not answer (unreachable within the timeout), invalid config.
 */
export function fenceConformance(factory: FenceDriverFactory, target: () => Promise<FenceTarget>): void {
  describe(`${factory.name} fence driver conformance`, { timeout: 30_000 }, () => {
    let t: FenceTarget
    let device: FenceDevice
    const powerOn = async () => {
      if (device.canPowerOn) await runFenceOp(device, 'on', t.plug, ctx)
      else await t.powerOn?.()
    }
    const create = (config: unknown) =>
      factory.create(factory.configSchema.parse(config), { deviceId: 'conformance', log })
    beforeAll(async () => {
      t = await target()
      device = create(t.config)
    }, 120_000)
    afterAll(async () => {
      await device?.close?.()
      await t?.cleanup?.()
    })

    test('monitor succeeds on a reachable device with valid credentials', async () => {
      await expect(runFenceOp(device, 'monitor', null, ctx)).resolves.toBeUndefined()
    })

    test('on and off are idempotent and read back', async () => {
      await powerOn()
      await powerOn()
      expect(await runFenceOp(device, 'status', t.plug, ctx)).toBe('on')
      const off = runFenceOp(device, 'off', t.plug, ctx)
      t.confirmOff?.(device)
      await off
      await runFenceOp(device, 'off', t.plug, ctx)
      expect(await runFenceOp(device, 'status', t.plug, ctx)).toBe('off')
    })

    test('reboot leaves the target on (or is refused as config by a device that cannot power on)', async () => {
      await powerOn()
      if (!device.canPowerOn) {
        expect(await kindOf(runFenceOp(device, 'reboot', t.plug, ctx))).toBe('config')
        return expect(await kindOf(runFenceOp(device, 'on', t.plug, ctx))).toBe('config')
      }
      await runFenceOp(device, 'reboot', t.plug, ctx)
      expect(
        await eventually(async () => (await runFenceOp(device, 'status', t.plug, ctx)) === 'on', 10_000),
      ).toBe(true)
    })

    test('list names the plug (devices with plugs)', async () => {
      const outlets = await runFenceOp(device, 'list', null, ctx)
      if (device.needsPlug) expect(outlets.map((o) => o.plug)).toContain(t.plug)
      else expect(outlets).toEqual([])
    })

    test('fenceNode powers the target off and confirms it by reading it back', async () => {
      await powerOn()
      const run = fenceNode(device, [t.plug], { timeoutMs: 15_000, log })
      t.confirmOff?.(device)
      const result = await run
      expect(result.outcome, result.detail).toBe('off')
      expect(result.steps.at(-1)).toMatchObject({ op: 'status', result: 'off' })
      expect(await runFenceOp(device, 'status', t.plug, ctx)).toBe('off')
    })

    test('wrong credentials are an auth error, never "unreachable" and never confirmed', async () => {
      if (t.badCredentials === null) return expect(t.badCredentials).toBeNull()
      await powerOn()
      const bad = create(t.badCredentials)
      expect(await kindOf(runFenceOp(bad, 'monitor', null, ctx))).toBe('auth')
      expect(await kindOf(runFenceOp(bad, 'status', t.plug, ctx))).toBe('auth')
      expect((await fenceNode(bad, [t.plug], { timeoutMs: 10_000, log })).outcome).toBe('auth-failed')
      await bad.close?.()
    })

    test('a device that does not answer is unreachable within the timeout', async () => {
      if (t.unreachable === null) return expect(t.unreachable).toBeNull()
      const dead = create(t.unreachable)
      expect(await kindOf(runFenceOp(dead, 'status', t.plug, ctx, 1500))).toBe('unreachable')
      const run = await fenceNode(dead, [t.plug], { timeoutMs: 2000, log })
      expect(run.outcome).toBe('unreachable')
      await dead.close?.()
    })

    test('invalid configs are rejected naming the key', () => {
      for (const { config, key } of t.invalid) {
        expect(rejectedKeys(factory.configSchema, config), JSON.stringify(config)).toContain(key)
      }
    })
  })
}

export { rejectedKeys }
