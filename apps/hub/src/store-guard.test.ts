import { createLogger } from '@vigil/kit'
import { afterEach, beforeEach, expect, test, vi } from 'vitest'
import { StoreGuard } from './store-guard.js'

beforeEach(() => vi.useFakeTimers({ now: 0 }))
afterEach(() => vi.useRealTimers())

test('a database that cannot be written: stop acting, probe until it writes, then act again and say for how long', () => {
  let fail: (problem: string) => void = () => {}
  let writable = false
  const calls: string[] = []
  const guard = new StoreGuard({
    store: {
      onWriteFailure: (listener) => {
        fail = listener
      },
      probe: () => writable,
    },
    probeEveryMs: 1000,
    stopActing: () => calls.push('stop acting'),
    actAgain: () => calls.push('act again'),
    partDown: (problem) => calls.push(`down: ${problem}`),
    partUp: () => calls.push('up'),
    event: (e) => calls.push(`${e.kind}: ${e.message}`),
    closing: () => false,
    now: () => Date.now(),
    log: createLogger('test', 'silent'),
  })
  fail('disk full')
  expect(calls).toEqual([
    'down: disk full',
    'hub.store-failed: this hub stops acting until its database can be written: disk full',
    'stop acting',
  ])
  calls.length = 0
  vi.advanceTimersByTime(3000)
  expect(calls).toEqual([])
  writable = true
  vi.advanceTimersByTime(1000)
  expect(calls).toEqual([
    'up',
    'hub.store-recovered: the database could not be written for 4.0 s; this hub did not act in that time and acts again',
    'act again',
  ])
  calls.length = 0
  vi.advanceTimersByTime(5000)
  expect(calls, 'the probe stops once it writes').toEqual([])
  guard.close()
})
