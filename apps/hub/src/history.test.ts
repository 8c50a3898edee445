import { expect, test } from 'vitest'
import { HistoryRing } from './history.js'

test('keeps the window and no more: the oldest samples go first', () => {
  const ring = new HistoryRing(10_000, 60_000)
  for (let i = 0; i < 10; i++) ring.sample(i * 10_000, [], { running: i, total: 10 })
  const { samples, everyMs, windowMs } = ring.view()
  expect({ everyMs, windowMs }).toEqual({ everyMs: 10_000, windowMs: 60_000 })
  expect(samples.map((s) => s.resourcesRunning)).toEqual([4, 5, 6, 7, 8, 9])
})

test.each([
  ['the worst delay since the last sample', [12, 40, 7], 40],
  ['none heard: no delay rather than zero', [], null],
])('a node’s heartbeat delay is %s', (_, delays, expected) => {
  const ring = new HistoryRing()
  for (const d of delays) ring.noteHeartbeat('n1', d)
  const first = ring.sample(1000, [{ id: 'n1', health: 90 }], { running: 1, total: 1 })
  expect(first.nodes.n1).toEqual({ health: 90, heartbeatDelayMs: expected })
  // Each sample starts over: a delay is counted in one sample only.
  expect(
    ring.sample(2000, [{ id: 'n1', health: 90 }], { running: 1, total: 1 }).nodes.n1?.heartbeatDelayMs,
  ).toBeNull()
})
