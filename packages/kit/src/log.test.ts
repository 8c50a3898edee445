import { Writable } from 'node:stream'
import { pino } from 'pino'
import { expect, test } from 'vitest'
import { RateLimitedLog, REDACT_PATHS } from './log.js'

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

test('secrets never reach a log line, top level or one level down', () => {
  const lines: string[] = []
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk))
      done()
    },
  })
  const log = pino({ redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, sink)
  log.info({ password: 'p1', config: { community: 'c1', host: 'pdu1' }, mqtt: { token: 't1' } }, 'hello')
  expect(lines.join('')).not.toMatch(/p1|c1|t1/)
  expect(lines.join('')).toContain('pdu1')
  expect(lines.join('')).toContain('[redacted]')
})
