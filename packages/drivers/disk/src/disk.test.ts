import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runAction } from '@vigil/driver-kit'
import { monitorConformance, rejectedKeys } from '@vigil/driver-kit/conformance'
import { createLogger } from '@vigil/kit'
import { startHangableMount } from '@vigil/testbed'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { diskConfigSchema, diskDriver } from './index.js'

const ctx = { log: createLogger('test', 'silent') }
const make = (config: unknown) =>
  diskDriver.create(diskConfigSchema.parse(config), { resourceId: 'disk', log: ctx.log })

// A real directory; a probe of a device that is not there; a probe of a FIFO nobody writes.
monitorConformance(diskDriver, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-disk-conformance-'))
  const fifo = join(dir, 'fifo')
  execFileSync('mkfifo', [fifo])
  return {
    healthy: { path: dir },
    broken: { path: dir, probe: { device: join(dir, 'gone') }, failuresBeforeCritical: 1 },
    invalid: [
      { config: { path: dir, minFreePercent: 101 }, key: 'minFreePercent' },
      { config: { path: dir, writeProbe: { file: '/dev/sda' } }, key: 'writeProbe.file' },
    ],
    hanging: { path: dir, probe: { device: fifo, direct: false, timeoutMs: 60_000 } },
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  }
})

describe('disk driver on a real, small tmpfs filled up', () => {
  const mountpoint = mkdtempSync(join(tmpdir(), 'vigil-disk-'))
  let mounted = false
  beforeAll(() => {
    // Tests run as root on this kind of machine; a 1 MiB tmpfs is a real filesystem to fill.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,nr_inodes=64', 'vigil-test', mountpoint])
    mounted = true
  })
  afterAll(() => {
    if (mounted) execFileSync('umount', [mountpoint])
    rmSync(mountpoint, { recursive: true, force: true })
  })

  test('running with room; failed once space is below the floor for failuresBeforeCritical checks', async () => {
    const d = make({ path: mountpoint, minFreePercent: 20, failuresBeforeCritical: 2 })
    expect((await runAction(d, 'monitor', ctx))?.state).toBe('running')
    writeFileSync(join(mountpoint, 'fill'), Buffer.alloc(900 * 1024))
    const first = await runAction(d, 'monitor', ctx)
    expect(first?.state).toBe('running') // one bad sample never fails it
    const second = await runAction(d, 'monitor', ctx)
    expect(second?.state).toBe('failed')
    expect(second?.detail).toMatch(/% free, below 20 %/)
    rmSync(join(mountpoint, 'fill'))
    expect((await runAction(d, 'monitor', ctx))?.state).toBe('running')
  })

  test('inodes running out fail the check too', async () => {
    const d = make({ path: mountpoint, minFreeInodesPercent: 50, failuresBeforeCritical: 1 })
    for (let i = 0; i < 50; i++) writeFileSync(join(mountpoint, `f${i}`), '')
    const r = await runAction(d, 'monitor', ctx)
    expect(r?.state).toBe('failed')
    expect(r?.detail).toContain('inodes free')
    for (let i = 0; i < 50; i++) rmSync(join(mountpoint, `f${i}`))
  })
})

describe('disk read probe', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-probe-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  test('reads a real file (buffered) and reports its latency', async () => {
    const file = join(dir, 'data')
    writeFileSync(file, Buffer.alloc(8192, 1))
    const r = await runAction(
      make({ path: dir, probe: { device: file, direct: false }, failuresBeforeCritical: 1 }),
      'monitor',
      ctx,
    )
    expect(r?.state).toBe('running')
    expect(r?.metrics?.probeSeconds).toBeGreaterThan(0)
  })

  test('reads with O_DIRECT on a filesystem that supports it (the page cache is bypassed)', async () => {
    // /var/tmp is on the root filesystem (ext4 here); tmpfs would refuse O_DIRECT.
    const base = mkdtempSync(join('/var/tmp', 'vigil-direct-'))
    try {
      const file = join(base, 'data')
      writeFileSync(file, Buffer.alloc(8192, 1))
      const r = await runAction(
        make({ path: base, probe: { device: file, direct: true }, failuresBeforeCritical: 1 }),
        'monitor',
        ctx,
      )
      expect(r).toMatchObject({ state: 'running', detail: 'ok' })
    } finally {
      rmSync(base, { recursive: true, force: true })
    }
  })

  test('a device that blocks (a FIFO nobody writes) is reported failed within the timeout, not waited on', async () => {
    const fifo = join(dir, 'hung')
    execFileSync('mkfifo', [fifo])
    const started = Date.now()
    const r = await runAction(
      make({ path: dir, probe: { device: fifo, direct: false, timeoutMs: 300 }, failuresBeforeCritical: 1 }),
      'monitor',
      ctx,
    )
    expect(r?.state).toBe('failed')
    expect(r?.detail).toContain('did not finish within 300 ms')
    expect(Date.now() - started).toBeLessThan(5000) // bounded: it did not hang the caller
  })

  test('a device that does not exist fails the probe', async () => {
    const r = await runAction(
      make({ path: dir, probe: { device: join(dir, 'nothing'), direct: false }, failuresBeforeCritical: 1 }),
      'monitor',
      ctx,
    )
    expect(r?.state).toBe('failed')
    expect(r?.detail).toContain('failed')
  })

  test.each([
    { config: { path: '/', writeProbe: { file: '/dev/sdb' } }, key: 'writeProbe.file' },
    { config: { path: '/', blockDevice: { name: '../etc' } }, key: 'blockDevice.name' },
    { config: {}, key: 'path' },
    { config: { path: '/', minFreePercent: 120 }, key: 'minFreePercent' },
    { config: { path: '/', probe: {} }, key: 'probe.device' },
    { config: { path: '/', colour: 'red' }, key: 'colour' },
  ])('rejects $config naming $key', ({ config, key }) => {
    expect(rejectedKeys(diskConfigSchema, config)).toContain(key)
  })
})

describe('disk write probe', () => {
  test('writes with O_DIRECT and fsync into its own file, never truncating it', async () => {
    const base = mkdtempSync(join('/var/tmp', 'vigil-write-'))
    try {
      const file = join(base, 'probe')
      writeFileSync(file, Buffer.alloc(16384, 7))
      const r = await runAction(
        make({ path: base, writeProbe: { file, bytes: 4096 }, failuresBeforeCritical: 1 }),
        'monitor',
        ctx,
      )
      expect(r).toMatchObject({ state: 'running', detail: 'ok' })
      expect(r?.metrics?.writeProbeSeconds).toBeGreaterThan(0)
      const written = readFileSync(file)
      expect(written.length).toBe(16384) // not truncated
      expect(written.subarray(0, 4096).every((b) => b === 0)).toBe(true)
      expect(written[4096]).toBe(7)
    } finally {
      rmSync(base, { recursive: true, force: true })
    }
  })

  test('a filesystem that refuses writes (mounted read-only) fails the probe', async () => {
    const mountpoint = mkdtempSync(join(tmpdir(), 'vigil-ro-'))
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'vigil-ro', mountpoint])
    try {
      writeFileSync(join(mountpoint, 'probe'), Buffer.alloc(4096))
      execFileSync('mount', ['-o', 'remount,ro', mountpoint])
      const r = await runAction(
        make({
          path: mountpoint,
          writeProbe: { file: join(mountpoint, 'probe'), direct: false },
          failuresBeforeCritical: 1,
        }),
        'monitor',
        ctx,
      )
      expect(r?.state).toBe('failed')
      expect(r?.detail).toMatch(/write of .* failed: .*Read-only file system/)
    } finally {
      execFileSync('umount', [mountpoint])
      rmSync(mountpoint, { recursive: true, force: true })
    }
  })

  test('a write that blocks (a FIFO nobody reads) is reported failed within the timeout', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-wfifo-'))
    try {
      const fifo = join(dir, 'hung')
      execFileSync('mkfifo', [fifo])
      const r = await runAction(
        make({
          path: dir,
          writeProbe: { file: fifo, direct: false, timeoutMs: 300 },
          failuresBeforeCritical: 1,
        }),
        'monitor',
        ctx,
      )
      expect(r?.state).toBe('failed')
      expect(r?.detail).toContain('did not finish within 300 ms')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('block device counters', () => {
  test("a real device's counters from this machine's /sys/block", async () => {
    const dev = readdirSync('/sys/block').find((d) =>
      statSync(join('/sys/block', d, 'stat'), { throwIfNoEntry: false }),
    )
    expect(dev).toBeDefined()
    const r = await runAction(
      make({ path: '/', blockDevice: { name: dev as string }, failuresBeforeCritical: 1 }),
      'monitor',
      ctx,
    )
    expect(r?.state).toBe('running')
    expect(r?.metrics).toHaveProperty('readIos')
    expect(r?.metrics).toHaveProperty('inFlight')
  })

  test('new SCSI I/O errors between two checks fail the check (the kernel files, in a sysfs of our own)', async () => {
    // No SCSI device with an error counter exists on these machines: the files have the kernel's
    // format (device/ioerr_cnt is hexadecimal).
    const sysfs = mkdtempSync(join(tmpdir(), 'vigil-sysfs-'))
    try {
      mkdirSync(join(sysfs, 'sdz', 'device'), { recursive: true })
      writeFileSync(
        join(sysfs, 'sdz', 'stat'),
        '  100  0  800  40  50  0  400  20  0  60  60  0  0  0  0  0  0\n',
      )
      writeFileSync(join(sysfs, 'sdz', 'device', 'ioerr_cnt'), '0x2\n')
      const d = make({ path: '/', blockDevice: { name: 'sdz', sysfs }, failuresBeforeCritical: 1 })
      expect((await runAction(d, 'monitor', ctx))?.state).toBe('running') // the baseline
      writeFileSync(join(sysfs, 'sdz', 'device', 'ioerr_cnt'), '0x5\n')
      const bad = await runAction(d, 'monitor', ctx)
      expect(bad?.state).toBe('failed')
      expect(bad?.detail).toContain('sdz: 3 new I/O errors since the last check')
      expect(bad?.metrics?.ioErrors).toBe(5)
      expect((await runAction(d, 'monitor', ctx))?.state).toBe('running') // no new ones since
      const gone = await runAction(
        make({ path: '/', blockDevice: { name: 'sdy', sysfs }, failuresBeforeCritical: 1 }),
        'monitor',
        ctx,
      )
      expect(gone?.detail).toContain('no block device sdy')
    } finally {
      rmSync(sysfs, { recursive: true, force: true })
    }
  })
})

test("a filesystem that hangs (a FUSE view whose server is stopped) fails the check and never holds the agent's file threads", async () => {
  const mount = await startHangableMount({ 'probe.img': 8192 })
  const { source, view } = mount
  try {
    const d = make({
      path: view,
      probe: { device: join(view, 'probe.img'), timeoutMs: 300 },
      statfsTimeoutMs: 300,
      failuresBeforeCritical: 1,
    })
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'running' })
    mount.hang()
    try {
      // More checks than libuv has threads (four): an in-process statfs would hold one each.
      for (let i = 0; i < 6; i++) {
        const r = await runAction(d, 'monitor', ctx)
        expect(r?.state).toBe('failed')
        expect(r?.detail).toContain('statfs did not finish within 300 ms')
        expect(r?.detail).toContain('did not finish within 300 ms')
      }
      // The process's own file operations still run while the filesystem hangs.
      const elsewhere = readFile(join(source, 'probe.img')).then(() => 'read')
      const stuck = new Promise((r) => setTimeout(() => r('stuck behind the hung filesystem'), 5000))
      expect(await Promise.race([elsewhere, stuck])).toBe('read')
    } finally {
      mount.thaw()
    }
    const again = Date.now() + 10_000
    let r = await runAction(d, 'monitor', ctx)
    while (r?.state !== 'running' && Date.now() < again) r = await runAction(d, 'monitor', ctx)
    expect(r?.state).toBe('running')
  } finally {
    mount.remove()
  }
}, 60_000)
