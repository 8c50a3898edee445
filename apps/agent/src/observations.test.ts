import type { Observation, ObservationBatch } from '@vigil/protocol'
import { afterEach, beforeEach, expect, test, vi } from 'vitest'
import { ObservationSender } from './observations.js'

const clock = { monoMs: () => 0, wallMs: () => 5000 }

beforeEach(() => {
  vi.useFakeTimers()
})
afterEach(() => {
  vi.useRealTimers()
})

function setup(observations: Observation[] = []) {
  const sent: ObservationBatch[] = []
  let canSend = true
  const sender = new ObservationSender(
    { node: 'n1', incarnation: 7 },
    {
      clock,
      observations: () => observations,
      canSend: () => canSend,
      send: (batch) => sent.push(batch),
    },
  )
  return {
    sender,
    sent,
    setCanSend: (c: boolean) => {
      canSend = c
    },
  }
}

test('a batch lists every observation and says it is complete, even when there are none', () => {
  const obs: Observation[] = [{ driver: 'process', target: 'web', state: 'running', ageMs: 10 }]
  for (const list of [obs, []]) {
    const s = setup(list)
    s.sender.publish()
    expect(s.sent).toEqual([
      { v: 1, node: 'n1', incarnation: 7, seq: 0, at: 5000, observations: list, complete: true },
    ])
  }
})

test.each([
  { name: 'always heard', heard: [true, true, true], seqs: [0, 1, 2] },
  { name: 'never heard: nothing kept for later', heard: [false, false], seqs: [] },
  { name: 'seq advances only with a batch sent', heard: [false, true, false, true], seqs: [0, 1] },
])('$name', ({ heard, seqs }) => {
  const s = setup()
  for (const h of heard) {
    s.setCanSend(h)
    s.sender.publish()
  }
  expect(s.sent.map((b) => b.seq)).toEqual(seqs)
})

test('started, a batch goes out each second until closed', async () => {
  const s = setup()
  s.sender.start()
  await vi.advanceTimersByTimeAsync(999)
  expect(s.sent).toEqual([])
  await vi.advanceTimersByTimeAsync(2001)
  expect(s.sent.map((b) => b.seq)).toEqual([0, 1, 2])
  s.sender.close()
  await vi.advanceTimersByTimeAsync(5000)
  expect(s.sent).toHaveLength(3)
})
