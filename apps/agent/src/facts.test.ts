import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { factsSchema } from '@vigil/protocol'
import { startHangableMount } from '@vigil/testbed'
import { expect, test } from 'vitest'
import { collectFacts, parseMounts } from './facts.js'

test('parseMounts drops pseudo filesystems, unescapes paths and keeps the last mount of a point', () => {
  const text = [
    'proc /proc proc rw 0 0',
    'sysfs /sys sysfs rw 0 0',
    '/dev/vda1 / ext4 rw 0 0',
    'tmpfs /run tmpfs rw 0 0',
    '/dev/vdb1 /mnt/with\\040space xfs rw 0 0',
    '/dev/vdc1 /run tmpfs rw 0 0',
  ].join('\n')
  expect(parseMounts(text)).toEqual([
    { device: '/dev/vda1', mount: '/', fstype: 'ext4' },
    { device: '/dev/vdb1', mount: '/mnt/with space', fstype: 'xfs' },
    { device: '/dev/vdc1', mount: '/run', fstype: 'tmpfs' },
  ])
})

test('facts collected from this machine pass the protocol schema and include / and lo', async () => {
  const facts = await collectFacts('n1', 1, Date.now())
  expect(factsSchema.safeParse(facts).success).toBe(true)
  expect(facts.filesystems.some((f) => f.mount === '/' && f.sizeBytes > 0)).toBe(true)
  expect(facts.interfaces.find((i) => i.name === 'lo')).toMatchObject({ operstate: 'unknown' })
  expect(facts.processCount).toBeGreaterThan(0)
})

test("a hung mount is left out of the facts and never holds the agent's file threads", async () => {
  const mount = await startHangableMount({ 'data.img': 4096 })
  try {
    expect((await collectFacts('n1', 1, Date.now())).filesystems.map((f) => f.mount)).toContain(mount.view)
    mount.hang()
    try {
      // More collections than libuv has threads (four): an in-process statfs would hold one each
      // (the chaos run: a healthy guest reset because its heartbeat file could no longer be read).
      for (let i = 0; i < 5; i++) {
        const facts = await collectFacts('n1', 1, Date.now())
        expect(facts.filesystems.map((f) => f.mount)).not.toContain(mount.view)
        expect(facts.filesystems.some((f) => f.mount === '/')).toBe(true)
      }
      const elsewhere = readFile(join(mount.source, 'data.img')).then(() => 'read')
      const stuck = new Promise((r) => setTimeout(() => r('stuck behind the hung mount'), 5000))
      expect(await Promise.race([elsewhere, stuck])).toBe('read')
    } finally {
      mount.thaw()
    }
  } finally {
    mount.remove()
  }
}, 60_000)
