import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger } from '@vigil/kit'
import { expect, test } from 'vitest'
import { DiskHeartbeat, diskHeartbeatSchema } from './disk-heartbeat.js'

const log = createLogger('test', 'silent')
const clock = { monoMs: () => performance.now(), wallMs: () => Date.now() }

// A real file on the machine's disk, written and read with O_DIRECT by dd, as a shared device would be.
test("hosts see each other's slots advance on a shared device, and a stopped writer stops advancing", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-sbd-'))
  const device = join(dir, 'sbd')
  writeFileSync(device, Buffer.alloc(512 * 4))
  const host = (node: string, slot: number) =>
    new DiskHeartbeat(
      diskHeartbeatSchema.parse({ path: device, slot, slots: 4 }),
      { node, incarnation: 1 },
      { clock, log },
    )
  const a = host('a', 0)
  const b = host('b', 1)
  await a.beat()
  await b.beat()
  await a.beat()
  // Its own slot too, read back: the hub sees that its reads of the others are fresh.
  expect(a.sightings()).toEqual([
    { node: 'a', incarnation: 1, counter: 2 },
    { node: 'b', incarnation: 1, counter: 1 },
  ])
  expect(b.sightings()).toEqual([
    { node: 'a', incarnation: 1, counter: 1 },
    { node: 'b', incarnation: 1, counter: 1 },
  ])
  await a.beat()
  await b.beat()
  expect(b.sightings()).toContainEqual({ node: 'a', incarnation: 1, counter: 3 })
  await b.beat() // a has stopped writing: its counter stays, b's own goes on
  expect(b.sightings()).toEqual([
    { node: 'a', incarnation: 1, counter: 3 },
    { node: 'b', incarnation: 1, counter: 3 },
  ])
  expect(a.failures + b.failures).toBe(0)
  const { rmSync } = await import('node:fs')
  rmSync(dir, { recursive: true, force: true })
})

test('a device that cannot be written is a counted failure, and nothing is reported as seen', async () => {
  const d = new DiskHeartbeat(
    diskHeartbeatSchema.parse({ path: '/nonexistent/dir/sbd', slot: 0 }),
    { node: 'a', incarnation: 1 },
    { clock, log },
  )
  await d.beat()
  expect(d.failures).toBe(1)
  expect(d.sightings()).toEqual([])
})

test('a disk heartbeat without a slot is refused at config load', () => {
  const r = diskHeartbeatSchema.safeParse({ path: '/dev/sdb' })
  expect(r.error?.issues[0]?.path).toEqual(['slot'])
})
