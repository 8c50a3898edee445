import { expect, test } from 'vitest'
import { bytes, duration, table } from './format.js'

test.each([
  [0, '0 B'],
  [1023, '1023 B'],
  [1536, '1.5 KiB'],
  [10 * 1024 * 1024, '10 MiB'],
  [24 * 1024 ** 3, '24 GiB'],
])('bytes(%d) = %s', (n, s) => expect(bytes(n)).toBe(s))

test.each([
  [12, '12 ms'],
  [1500, '2 s'],
  [119_000, '119 s'],
  [600_000, '10 min'],
  [3 * 3600_000, '3 h'],
  [3 * 86_400_000, '3 d'],
])('duration(%d) = %s', (ms, s) => expect(duration(ms)).toBe(s))

test('table pads columns to the widest cell', () => {
  expect(
    table(
      ['A', 'BB'],
      [
        ['xxx', 'y'],
        ['z', 'w'],
      ],
    ),
  ).toBe('A    BB\nxxx  y\nz    w')
})
