import { describe, expect, test } from 'vitest'
import { chronological, emptyPhi, type PhiParams, phi, phiOf, recordArrival, silenceToReach } from './phi.js'

const params: PhiParams = { firstIntervalMs: 250, minStdDevMs: 50, acceptablePauseMs: 250, window: 100 }

function steady(intervalMs: number, count: number) {
  let s = emptyPhi()
  for (let i = 0; i < count; i++) s = recordArrival(s, i * intervalMs, params)
  return { state: s, last: (count - 1) * intervalMs }
}

describe('phi accrual', () => {
  test('is Infinity before anything was heard', () => {
    expect(phi(emptyPhi(), 0, params)).toBe(Number.POSITIVE_INFINITY)
  })

  test('stays low right after a heartbeat and grows with silence', () => {
    const { state, last } = steady(250, 40)
    const values = [0, 250, 500, 750, 1000, 1500].map((d) => phi(state, last + d, params))
    expect(values[0]).toBeLessThan(0.5)
    for (let i = 1; i < values.length; i++) expect(values[i]).toBeGreaterThan(values[i - 1] as number)
    expect(values.at(-1)).toBeGreaterThan(8)
  })

  test('one missed heartbeat does not reach a threshold of 8', () => {
    const { state, last } = steady(250, 40)
    expect(phi(state, last + 2 * 250, params)).toBeLessThan(8)
  })

  test('adapts: a jittery history tolerates longer silence than a regular one', () => {
    let jittery = emptyPhi()
    let t = 0
    for (let i = 0; i < 60; i++) {
      t += i % 2 === 0 ? 100 : 400
      jittery = recordArrival(jittery, t, params)
    }
    const regular = steady(250, 60)
    expect(phi(jittery, t + 700, params)).toBeLessThan(phi(regular.state, regular.last + 700, params))
  })

  test('keeps at most `window` intervals and ignores out-of-order arrivals', () => {
    const { state } = steady(10, 500)
    expect(state.intervals.length).toBe(100)
    expect(recordArrival(state, 0, params)).toBe(state)
  })

  test('silenceToReach inverts phiOf', () => {
    const ms = silenceToReach(8, 500, 50)
    expect(phiOf(ms, 500, 50)).toBeCloseTo(8, 3)
  })
})

test('an outage is not learnt: after it, the next failure is detected as fast as the first', () => {
  let state = recordArrival(emptyPhi(), 0, params)
  for (let t = 250; t <= 5000; t += 250) state = recordArrival(state, t, params, 8)
  const before = silenceToDetect(state)
  // Ten seconds of silence (the node was dead), then heartbeats again.
  state = recordArrival(state, 15_000, params, 8)
  for (let t = 15_250; t <= 17_000; t += 250) state = recordArrival(state, t, params, 8)
  expect(Math.max(...state.intervals)).toBeLessThan(1000)
  expect(silenceToDetect(state)).toBe(before)
  // Without the threshold the gap would have been learnt, and detection slowed.
  let learnt = recordArrival(emptyPhi(), 0, params)
  for (let t = 250; t <= 5000; t += 250) learnt = recordArrival(learnt, t, params)
  learnt = recordArrival(learnt, 15_000, params)
  expect(silenceToDetect(learnt)).toBeGreaterThan(before)
})

function silenceToDetect(state: ReturnType<typeof emptyPhi>): number {
  let d = 0
  while (phi(state, (state.lastAt as number) + d, params) < 8) d += 10
  return d
}

test.each([
  ['whole milliseconds', (i: number) => 250 + ((i * 37) % 41) - 20],
  ['fractions of a millisecond', (i: number) => 250 + ((i * 37) % 41) / 7],
])('the window kept with the state gives the phi of the window summed afresh (%s)', (_, gap) => {
  const params: PhiParams = { firstIntervalMs: 250, minStdDevMs: 10, acceptablePauseMs: 0, window: 20 }
  let state = recordArrival(emptyPhi(), 0, params, 8)
  let t = 0
  for (let i = 0; i < 300; i++) {
    t += gap(i)
    state = recordArrival(state, t, params, 8)
    const afresh = { lastAt: state.lastAt, intervals: [...chronological(state)] }
    for (const later of [10, 240, 300, 500])
      expect(phi(state, t + later, params)).toBe(phi(afresh, t + later, params))
  }
  expect(state.intervals.length).toBe(20)
})

test('a window changed by a reload keeps the newest intervals, oldest first', () => {
  const wide: PhiParams = { firstIntervalMs: 100, minStdDevMs: 10, acceptablePauseMs: 0, window: 10 }
  let at = 0
  let state = recordArrival(emptyPhi(), at, wide)
  const beat = (k: number, params: PhiParams) => {
    at += 100 + k // the k-th interval is 100 + k ms
    state = recordArrival(state, at, params)
  }
  for (let k = 1; k <= 25; k++) beat(k, wide)
  expect(chronological(state)).toEqual([116, 117, 118, 119, 120, 121, 122, 123, 124, 125])
  beat(26, { ...wide, window: 4 })
  expect(chronological(state)).toEqual([123, 124, 125, 126])
  beat(27, { ...wide, window: 6 })
  expect(chronological(state)).toEqual([123, 124, 125, 126, 127])
})
