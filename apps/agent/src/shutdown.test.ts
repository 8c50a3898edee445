import { expect, test } from 'vitest'
import { hostShuttingDown } from './shutdown.js'

test.each([
  ['stopping\n', true],
  ['running\n', false],
  ['degraded\n', false],
  ['offline\n', false],
  [null, false], // no systemd, or no answer in time
])('systemctl is-system-running says %j: the host is shutting down: %s', async (said, shutting) => {
  const asked: string[][] = []
  const run = async (file: string, args: string[]) => {
    asked.push([file, ...args])
    return said
  }
  expect(await hostShuttingDown(run)).toBe(shutting)
  expect(asked).toEqual([['systemctl', 'is-system-running']])
})

test('on this machine (no systemd running here): the agent alone is stopping', async () => {
  expect(await hostShuttingDown()).toBe(false)
})
