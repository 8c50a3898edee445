import { expect, test } from 'vitest'
import { withTimeout } from './timeout.js'

test('passes a value through, rejects after the limit, and keeps the original error', async () => {
  await expect(withTimeout(Promise.resolve(7), 100)).resolves.toBe(7)
  await expect(withTimeout(new Promise(() => {}), 20)).rejects.toThrow('no answer within 20 ms')
  await expect(withTimeout(Promise.reject(new Error('EIO')), 100)).rejects.toThrow('EIO')
})

test('runWithDeadline: the result in time, the timeout error at the deadline, the signal aborted', async () => {
  const { runWithDeadline } = await import('./timeout.js')
  await expect(
    runWithDeadline(async () => 5, { timeoutMs: 100, onTimeout: () => new Error('late') }),
  ).resolves.toBe(5)
  let aborted = false
  const hung = runWithDeadline(
    (signal) =>
      new Promise(() => {
        signal.addEventListener('abort', () => {
          aborted = true
        })
      }),
    { timeoutMs: 50, onTimeout: () => new Error('late') },
  )
  await expect(hung).rejects.toThrow('late')
  expect(aborted).toBe(true)
  await expect(
    runWithDeadline(
      () => {
        throw new Error('sync')
      },
      { timeoutMs: 100, onTimeout: () => new Error('late') },
    ),
  ).rejects.toThrow('sync')
})
