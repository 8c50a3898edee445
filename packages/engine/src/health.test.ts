import { expect, test } from 'vitest'
import { resourceHealthScore } from './health.js'

const failures = (n: number) => Array.from({ length: n }, (_, i) => ({ at: i, step: 0 }))

test.each([
  ['running, never failed', 'running', 0, 100],
  ['running again after one crash (still counted)', 'running', 1, 80],
  ['running again after two', 'running', 2, 60],
  ['running, flapping: floored, it does run', 'running', 9, 40],
  ['recovering', 'recovering', 1, 50],
  ['waiting for a fence', 'waiting', 0, 30],
  ['blocked: given up', 'blocked', 3, 0],
] as const)('%s: %i', (_what, phase, n, score) => {
  expect(resourceHealthScore({ phase, failures: failures(n) })).toBe(score)
})
