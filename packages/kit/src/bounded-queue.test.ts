import { expect, test } from 'vitest'
import { BoundedQueue } from './bounded-queue.js'

test('keeps order and drops the oldest beyond capacity, counting drops', () => {
  const q = new BoundedQueue<number>(3)
  for (const n of [1, 2, 3, 4, 5]) q.push(n)
  expect(q.size).toBe(3)
  expect(q.dropped).toBe(2)
  expect(q.drain()).toEqual([3, 4, 5])
  expect(q.size).toBe(0)
})

test('unshiftAll puts a failed flush back in front without exceeding capacity', () => {
  const q = new BoundedQueue<string>(3)
  q.push('c')
  q.unshiftAll(['a', 'b'])
  expect(q.drain()).toEqual(['a', 'b', 'c'])
  q.push('d')
  q.unshiftAll(['a', 'b', 'c'])
  expect(q.drain()).toEqual(['b', 'c', 'd'])
  expect(q.dropped).toBe(1)
})

test.each([0, -1, 1.5])('rejects capacity %s', (capacity) => {
  expect(() => new BoundedQueue(capacity)).toThrow(RangeError)
})
