import { expect, test } from 'vitest'
import { RateLimitedLog } from './log.js'

test('admits one line per interval per key and reports how many were suppressed', () => {
  let now = 0
  const limiter = new RateLimitedLog(1000, () => now)
  expect(limiter.admit('schema')).toBe(0)
  expect(limiter.admit('schema')).toBeNull()
  expect(limiter.admit('schema')).toBeNull()
  expect(limiter.admit('not_json')).toBe(0)
  now = 1000
  expect(limiter.admit('schema')).toBe(2)
  expect(limiter.admit('schema')).toBeNull()
})
