import type { Heartbeat } from '@vigil/protocol'
import { afterEach, beforeEach, expect, test, vi } from 'vitest'
import type { DiskSighting } from './disk-heartbeat.js'
import { HeartbeatSender } from './heartbeat.js'

const INTERVAL = 200
const clock = { monoMs: () => 42, wallMs: () => 5000 }
const sighting: DiskSighting = { node: 'n2', incarnation: 3, counter: 9 }

beforeEach(() => {
  vi.useFakeTimers()
})
afterEach(() => {
  vi.useRealTimers()
})

function setup(
  opts: {
    mesh?: boolean
    disk?: boolean
    diskInStep?: boolean
    /** What the disk's read does: finish at once, or never (a hung device). */
    diskBeat?: 'quick' | 'hung'
  } = {},
) {
  const sent: Heartbeat[] = []
  const order: string[] = []
  let canSend = true
  const hb = new HeartbeatSender(
    { node: 'n1', incarnation: 7, intervalMs: INTERVAL },
    {
      clock,
      mesh: { enabled: opts.mesh ?? false, hears: () => ['n2', 'n3'] },
      disk: {
        enabled: opts.disk ?? false,
        beat: () => {
          order.push('disk read')
          return opts.diskBeat === 'hung' ? new Promise<void>(() => {}) : Promise.resolve()
        },
        sightings: () => [sighting],
      },
      diskInStep: opts.diskInStep ?? false,
      canSend: () => canSend,
      send: (beat) => {
        order.push(`hb ${beat.seq}`)
        sent.push(beat)
      },
    },
  )
  hb.start()
  return {
    hb,
    sent,
    order,
    setCanSend: (c: boolean) => {
      canSend = c
    },
  }
}

test('one heartbeat each interval, from seq 0, until closed', async () => {
  const s = setup()
  await vi.advanceTimersByTimeAsync(INTERVAL - 1)
  expect(s.sent).toEqual([])
  await vi.advanceTimersByTimeAsync(1)
  expect(s.sent).toEqual([
    { v: 1, node: 'n1', incarnation: 7, seq: 0, sentMono: 42, sentAt: 5000, intervalMs: INTERVAL },
  ])
  await vi.advanceTimersByTimeAsync(2 * INTERVAL)
  s.hb.close()
  await vi.advanceTimersByTimeAsync(5 * INTERVAL)
  expect(s.sent.map((b) => b.seq)).toEqual([0, 1, 2])
})

test('seq advances while a heartbeat cannot be heard, so the hub sees the gap', async () => {
  const s = setup()
  s.setCanSend(false)
  await vi.advanceTimersByTimeAsync(3 * INTERVAL)
  s.setCanSend(true)
  await vi.advanceTimersByTimeAsync(2 * INTERVAL)
  expect(s.sent.map((b) => b.seq)).toEqual([3, 4])
})

test.each([
  { name: 'neither mesh nor disk: neither field', mesh: false, disk: false, fields: {} },
  { name: 'mesh on: the peers heard', mesh: true, disk: false, fields: { hears: ['n2', 'n3'] } },
  { name: 'disk on: the slots read', mesh: false, disk: true, fields: { disk: [sighting] } },
  {
    name: 'both on: both',
    mesh: true,
    disk: true,
    fields: { hears: ['n2', 'n3'], disk: [sighting] },
  },
])('$name', async ({ mesh, disk, fields }) => {
  const s = setup({ mesh, disk })
  await vi.advanceTimersByTimeAsync(INTERVAL)
  const [beat] = s.sent
  expect(beat).toBeDefined()
  const { hears, disk: slots } = beat as Heartbeat
  expect({ ...(hears ? { hears } : {}), ...(slots ? { disk: slots } : {}) }).toEqual(fields)
})

test.each([
  { name: 'disk in step: read just before each heartbeat', diskInStep: true, order: ['disk read', 'hb 0'] },
  { name: 'disk on its own timer: not read by the heartbeat', diskInStep: false, order: ['hb 0'] },
])('$name', async ({ diskInStep, order }) => {
  const s = setup({ disk: true, diskInStep })
  await vi.advanceTimersByTimeAsync(INTERVAL)
  expect(s.order).toEqual(order)
})

test('a hung disk delays the heartbeat by a quarter interval at most', async () => {
  const s = setup({ disk: true, diskInStep: true, diskBeat: 'hung' })
  await vi.advanceTimersByTimeAsync(INTERVAL + INTERVAL / 4 - 1)
  expect(s.sent).toEqual([])
  await vi.advanceTimersByTimeAsync(1)
  expect(s.sent.map((b) => b.seq)).toEqual([0])
  // The next one is on time too: each tick waits on its own read, not on the one still in flight.
  await vi.advanceTimersByTimeAsync(INTERVAL)
  expect(s.sent.map((b) => b.seq)).toEqual([0, 1])
})
