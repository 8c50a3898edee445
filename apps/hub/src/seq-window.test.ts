import { expect, test } from 'vitest'
import { SeqWindow } from './seq-window.js'

test.each([
  { name: 'in order, no duplicates', offered: [0, 1, 2, 3], accepted: [true, true, true, true] },
  { name: 'a redelivery is dropped', offered: [0, 1, 1, 2, 0], accepted: [true, true, false, true, false] },
  {
    name: 'a late event filling a gap is kept once',
    offered: [0, 3, 1, 2, 1, 3],
    accepted: [true, true, true, true, false, false],
  },
  { name: 'starts anywhere', offered: [41, 42, 40], accepted: [true, true, false] },
])('$name', ({ offered, accepted }) => {
  const w = new SeqWindow()
  expect(offered.map((s) => w.accept(s))).toEqual(accepted)
})

test('remembers at most maxMissing gaps, forgetting the oldest', () => {
  const w = new SeqWindow(3)
  expect(w.accept(0)).toBe(true)
  expect(w.accept(10)).toBe(true) // gaps 1..9, only 7, 8, 9 kept
  expect(w.accept(5)).toBe(false)
  expect(w.accept(8)).toBe(true)
  expect(w.accept(8)).toBe(false)
})
