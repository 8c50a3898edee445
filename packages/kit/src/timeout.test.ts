import { expect, test } from 'vitest'
import { withTimeout } from './timeout.js'

test('passes a value through, rejects after the limit, and keeps the original error', async () => {
  await expect(withTimeout(Promise.resolve(7), 100)).resolves.toBe(7)
  await expect(withTimeout(new Promise(() => {}), 20)).rejects.toThrow('no answer within 20 ms')
  await expect(withTimeout(Promise.reject(new Error('EIO')), 100)).rejects.toThrow('EIO')
})
