import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger } from '@vigil/kit'
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest'
import { announcedIsolation, IsolationGuard, isolationSchema, isolationTiming } from './isolation.js'

const log = createLogger('test', 'silent')
const clock = { monoMs: () => Date.now(), wallMs: () => Date.now() }

beforeEach(() => {
  vi.useFakeTimers()
  peersHeard = false
})
afterEach(() => {
  vi.useRealTimers()
})

/**
 * The watchdog device is a plain file here (no /dev/watchdog on these machines): the kernel's
 * interface is "any write keeps it alive, 'V' then close disarms", which a file records faithfully.
 */
let peersHeard = false

function setup(config: object, stopAll: () => Promise<string[]> = async () => []) {
  const device = join(mkdtempSync(join(tmpdir(), 'vigil-wd-')), 'watchdog')
  writeFileSync(device, '')
  const events: string[] = []
  const stops = vi.fn(stopAll)
  const guard = new IsolationGuard(
    isolationSchema.parse({ watchdog: { device, intervalMs: 100 }, ...config }),
    {
      clock,
      log,
      hearsPeers: () => peersHeard,
      stopAll: stops,
      emit: (kind, _s, message) => events.push(`${kind}: ${message}`),
    },
  )
  guard.start()
  const feeds = () => readFileSync(device, 'utf8')
  return { guard, events, stops, feeds }
}

describe('isolation response', () => {
  test('while the broker answers, nothing happens and the watchdog is fed', async () => {
    const { guard, stops, feeds } = setup({ afterMs: 1000 })
    for (let i = 0; i < 30; i++) {
      guard.contact()
      await vi.advanceTimersByTimeAsync(100)
    }
    expect(stops).not.toHaveBeenCalled()
    expect(feeds().length).toBeGreaterThanOrEqual(30)
    guard.close()
    expect(feeds().endsWith('V')).toBe(true) // magic close: disarmed on a clean stop
  })

  test.each([
    { action: 'stop', stopFails: false, stops: 1, starving: false, event: 'every resource stopped' },
    {
      action: 'stop',
      stopFails: true,
      stops: 1,
      starving: true,
      event: 'could not stop web; watchdog starved',
    },
    {
      action: 'freeze',
      stopFails: false,
      stops: 0,
      starving: false,
      event: 'resources left running (freeze)',
    },
    { action: 'reboot', stopFails: false, stops: 0, starving: true, event: 'watchdog starved, host resets' },
  ])(
    '$action after silence (stop fails: $stopFails)',
    async ({ action, stopFails, stops, starving, event }) => {
      const s = setup({ afterMs: 1000, action }, async () => (stopFails ? ['web'] : []))
      await vi.advanceTimersByTimeAsync(900)
      expect(s.stops).not.toHaveBeenCalled() // one lost ping is not isolation
      await vi.advanceTimersByTimeAsync(300)
      expect(s.stops).toHaveBeenCalledTimes(stops)
      expect(s.guard.state).toEqual({ isolated: true, starving })
      expect(s.events).toEqual([expect.stringContaining(event)])
      const fed = s.feeds().length
      await vi.advanceTimersByTimeAsync(1000)
      if (starving) expect(s.feeds().length).toBe(fed)
      else expect(s.feeds().length).toBeGreaterThan(fed)
      // Contact again: the response is not repeated, and the end is reported.
      s.guard.contact()
      await vi.advanceTimersByTimeAsync(500)
      expect(s.stops).toHaveBeenCalledTimes(stops)
      expect(s.events.at(-1)).toContain('contact with the hub restored')
      s.guard.close()
      if (starving) expect(s.feeds().endsWith('V')).toBe(false)
    },
  )

  test('isolation time shorter than two broker pings is refused at config load', async () => {
    const { agentConfigSchema } = await import('./config.js')
    const r = agentConfigSchema.safeParse({
      mqtt: { keepaliveSeconds: 5 },
      isolation: { afterMs: 8000 },
      commands: { allowUnsigned: true },
    })
    expect(r.success).toBe(false)
    expect(r.error?.issues[0]?.path).toEqual(['isolation', 'afterMs'])
  })
})

test('a host that still hears its peers is cut from the hub only: not isolated', async () => {
  const s = setup({ afterMs: 1000 })
  peersHeard = true
  await vi.advanceTimersByTimeAsync(5000)
  expect(s.stops).not.toHaveBeenCalled()
  expect(s.guard.state.isolated).toBe(false)
  peersHeard = false
  await vi.advanceTimersByTimeAsync(1200)
  expect(s.stops).toHaveBeenCalledTimes(1)
  s.guard.close()
})

describe('the isolation timing an agent announces to the hub', () => {
  test.each([
    ['no isolation response: nothing announced', {}, undefined],
    ['stop: after afterMs, the longest stop timeout', { afterMs: 3000 }, 3000 + 20_000],
    ['freeze: nothing to wait for', { afterMs: 3000, action: 'freeze' }, 3000],
    [
      'reboot with a watchdog: the reset is the kernel',
      { afterMs: 3000, action: 'reboot', watchdog: { device: '/dev/watchdog' } },
      3000,
    ],
    ['reboot without a watchdog is a stop', { afterMs: 3000, action: 'reboot' }, 23_000],
  ])('%s', (_, isolation, doneWithinMs) => {
    const timing = isolationTiming(isolationSchema.parse(isolation), true, 20_000)
    expect(timing?.doneWithinMs).toBe(doneWithinMs)
    if (timing) expect(timing).toMatchObject({ afterMs: 3000, diskHeartbeat: true })
  })

  test("from a config: the drivers' declared stop timeouts, and whether a disk heartbeat is written", async () => {
    const { agentConfigSchema } = await import('./config.js')
    const config = agentConfigSchema.parse({
      mqtt: { keepaliveSeconds: 1 },
      isolation: { afterMs: 3000 },
      commands: { allowUnsigned: true },
      resources: [
        { id: 'app', driver: 'process', config: { command: ['sleep', '600'], pidfile: '/tmp/x.pid' } },
        { id: 'probe', driver: 'check', config: { kind: 'exec', command: ['true'] } },
      ],
    })
    const { ResourceRunner } = await import('./resources.js')
    const longest = new ResourceRunner(config.resources as never, log, () => {}).longestStopMs()
    expect(longest).toBeGreaterThan(0)
    expect(announcedIsolation(config)).toEqual({
      afterMs: 3000,
      action: 'stop',
      doneWithinMs: 3000 + longest,
      diskHeartbeat: false,
    })
  })
})
