import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runAction } from '@vigil/driver-kit'
import { driverConformance } from '@vigil/driver-kit/conformance'
import { createLogger } from '@vigil/kit'
import { type Libvirt, startLibvirt, startPeerLibvirt } from '@vigil/testbed'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { domstatsMetrics, HeartbeatLines, libvirtConfigSchema, libvirtDriver } from './index.js'

const log = createLogger('test', 'silent')

/** A QEMU process killed behind libvirt's back: the guest crashed. */
function killQemu(domain: string): void {
  process.kill(Number(readFileSync(libvirt.qemuPidFile(domain), 'utf8')), 'SIGKILL')
}

/**
 * The crash as libvirt sees it: libvirtd learns of QEMU's death from its monitor socket a moment
 * after the kill (longer on a loaded machine), and until then still says "running".
 */
async function crashGuest(domain: string): Promise<void> {
  killQemu(domain)
  const until = Date.now() + 15_000
  while ((await libvirt.domstate(domain)) === 'running' && Date.now() < until)
    await new Promise((r) => setTimeout(r, 50))
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Polls until `done()` or the deadline; the caller's assertion says what was awaited. */
async function waitFor(done: () => boolean, ms = 10_000): Promise<void> {
  const until = Date.now() + ms
  while (!done() && Date.now() < until) await sleep(50)
}

let libvirt: Libvirt
beforeAll(async () => {
  libvirt = await startLibvirt()
}, 300_000)
afterAll(() => libvirt?.stop())

driverConformance(libvirtDriver, async () => {
  const domain = await libvirt.defineGuest()
  const hang = join('/tmp', `vigil-virsh-hang-${process.pid}`)
  writeFileSync(hang, '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 })
  return {
    // The tiny guest has no OS to answer an ACPI shutdown: stop falls back to destroy at once.
    config: { domain, shutdownTimeoutMs: 0 },
    breakIt: async () => crashGuest(domain),
    invalid: [
      { config: { domain: 'bad name!' }, key: 'domain' },
      { config: { domain, uri: 'nope' }, key: 'uri' },
      { config: { domain, shutdown: 5 }, key: 'shutdown' },
    ],
    hangingStart: { domain, virsh: hang, callTimeoutMs: 1000 },
  }
})

describe('libvirt driver on a real QEMU guest', { timeout: 60_000 }, () => {
  const make = (domain: string, extra: object = {}) =>
    libvirtDriver.create(libvirtConfigSchema.parse({ domain, shutdownTimeoutMs: 1000, ...extra }), {
      resourceId: 'vm',
      log,
    })
  const ctx = { log }

  test('a guest suspended by a user is "suspended", never "stopped": it still holds its disks', async () => {
    const domain = await libvirt.defineGuest()
    const d = make(domain)
    await runAction(d, 'start', ctx)
    await libvirt.virsh(['suspend', domain])
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'suspended' })
    await runAction(d, 'start', ctx) // resumes it rather than starting a second copy
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'running' })
    await runAction(d, 'stop', ctx)
  })

  test('a crash is noticed by the lifecycle event, not by waiting for the next poll', async () => {
    const domain = await libvirt.defineGuest()
    const d = make(domain)
    await runAction(d, 'start', ctx)
    let changes = 0
    d.onChange?.(() => changes++)
    // The watcher is connected once it reports a change of our own making (a fixed wait is not
    // enough on a loaded machine): suspend and resume until one arrives.
    const connected = Date.now() + 15_000
    while (changes === 0 && Date.now() < connected) {
      await libvirt.virsh(['suspend', domain])
      await libvirt.virsh(['resume', domain])
      await waitFor(() => changes > 0, 1000)
    }
    expect(changes, 'lifecycle events never arrived').toBeGreaterThan(0)
    changes = 0
    killQemu(domain)
    await waitFor(() => changes > 0)
    expect(changes).toBeGreaterThan(0)
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'failed' })
    await d.close?.()
  })

  test('reset keeps the guest running; stop of a guest that ignores ACPI destroys it after the timeout', async () => {
    const domain = await libvirt.defineGuest()
    const d = make(domain)
    await runAction(d, 'start', ctx)
    await runAction(d, 'reset', ctx)
    const running = await runAction(d, 'monitor', ctx)
    expect(running).toMatchObject({ state: 'running' })
    // The guest's counters from virsh domstats, in base units.
    expect(running?.metrics?.vcpus).toBeGreaterThanOrEqual(1)
    expect(running?.metrics?.cpuSeconds).toBeGreaterThan(0)
    expect(running?.metrics?.memoryMaxBytes).toBeGreaterThan(1024 * 1024)
    await runAction(d, 'stop', ctx)
    expect(await libvirt.domstate(domain)).toBe('shut off')
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
  })

  test('suspend and resume: each idempotent, a guest suspended by a user is "suspended"', async () => {
    const domain = await libvirt.defineGuest()
    const d = make(domain)
    expect(d.capabilities).toEqual(expect.arrayContaining(['suspend', 'resume', 'migrate']))
    await expect(runAction(d, 'suspend', ctx)).rejects.toMatchObject({ kind: 'local' }) // not running
    await runAction(d, 'start', ctx)
    await runAction(d, 'suspend', ctx)
    await runAction(d, 'suspend', ctx)
    expect(await libvirt.domstate(domain)).toBe('paused')
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'suspended', detail: 'paused (user)' })
    await runAction(d, 'resume', ctx)
    await runAction(d, 'resume', ctx)
    expect(await libvirt.domstate(domain)).toBe('running')
    await runAction(d, 'stop', ctx)
  })

  test("migration to another host's libvirt (live) and back (the guest paused): one copy running at the end of each", async () => {
    const peer = await startPeerLibvirt()
    try {
      const domain = await libvirt.defineGuest()
      // The cluster names the target node; the URI template maps it (here both are this machine).
      const here = make(domain, { migrateUri: peer.uri, migrateAddress: 'tcp://127.0.0.1' })
      await runAction(here, 'start', ctx)
      await runAction(here, 'migrate', { ...ctx, target: 'node-b' })
      expect(await peer.domstate(domain)).toBe('running')
      expect(await libvirt.domstate(domain)).toBe('shut off')
      expect(await runAction(here, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
      // A retried command finds it already there: success, nothing done twice.
      await runAction(here, 'migrate', { ...ctx, target: 'node-b' })
      expect(await peer.domstate(domain)).toBe('running')

      // Back with the guest paused for the copy (migrateMode: paused, rgmanager's migrate="pause"):
      // virsh migrate without --live, as a wrapper that notes each migrate's arguments shows.
      const calls = join(mkdtempSync(join(tmpdir(), 'vigil-virsh-')), 'migrate-args')
      const virsh = `${calls}.sh`
      writeFileSync(
        virsh,
        `#!/bin/sh\ncase " $* " in *" migrate "*) echo "$*" >> ${calls};; esac\nexec virsh "$@"\n`,
        {
          mode: 0o755,
        },
      )
      const there = make(domain, {
        uri: peer.uri,
        migrateUri: libvirt.uri,
        migrateAddress: 'tcp://127.0.0.1',
        migrateMode: 'paused',
        virsh,
      })
      await runAction(there, 'migrate', { ...ctx, target: 'node-a' })
      expect(await libvirt.domstate(domain)).toBe('running')
      expect(await peer.domstate(domain)).toBe('shut off')
      const migrations = readFileSync(calls, 'utf8').trim().split('\n')
      expect(migrations).toHaveLength(1)
      expect(migrations[0]).toContain(' migrate --persistent ')
      expect(migrations[0]).not.toContain('--live')
      await expect(runAction(here, 'migrate', { ...ctx, target: 'bad name!' })).rejects.toMatchObject({
        kind: 'config',
      })
      await runAction(here, 'stop', ctx)
    } finally {
      await peer.stop()
    }
  })

  test('guest heartbeat: counted from the serial console while the guest lives, stalled when it hangs, back after reset', async () => {
    const domain = await libvirt.defineGuest({ os: true })
    const d = make(domain, {
      guestHeartbeat: { file: libvirt.consoleLog(domain), pattern: 'vigil guest heartbeat' },
    })
    await runAction(d, 'start', ctx)
    const beats = async () => (await runAction(d, 'monitor', ctx))?.metrics?.guestHeartbeats ?? -1
    // The kernel boots under TCG in a few seconds, then its init writes a line every second.
    const until = Date.now() + 60_000
    while (Date.now() < until && (await beats()) < 2) await sleep(500)
    expect(await beats()).toBeGreaterThanOrEqual(2)
    // A panic (an NMI, with unknown_nmi_panic set by the guest) and panic=0: hung, yet "running".
    await libvirt.virsh(['inject-nmi', domain])
    await sleep(1500)
    const hung = await beats()
    await sleep(3000)
    expect(await beats()).toBe(hung)
    expect(await libvirt.domstate(domain)).toBe('running')
    // The ladder's reset brings it back: the count goes on from where it was.
    await runAction(d, 'reset', ctx)
    const back = Date.now() + 60_000
    while (Date.now() < back && (await beats()) <= hung) await sleep(500)
    expect(await beats()).toBeGreaterThan(hung)
    await runAction(d, 'stop', ctx)
  })

  test('each new heartbeat line is reported at once from the console alone; a crash still asks libvirt', async () => {
    const domain = await libvirt.defineGuest({ os: true })
    // virsh as the driver runs it, each call noted: what the driver asks libvirt, and when.
    const calls = join(tmpdir(), `vigil-virsh-calls-${process.pid}`)
    const virsh = join(tmpdir(), `vigil-virsh-counting-${process.pid}`)
    writeFileSync(virsh, `#!/bin/sh\necho "$3" >> ${calls}\nexec virsh "$@"\n`, { mode: 0o755 })
    writeFileSync(calls, '')
    const d = make(domain, {
      virsh,
      guestHeartbeat: { file: libvirt.consoleLog(domain), pattern: 'vigil guest heartbeat' },
    })
    await runAction(d, 'start', ctx)
    const seen: { state: string; beats?: number }[] = []
    // What the agent does on a change: monitor at once.
    d.onChange?.(() => {
      void runAction(d, 'monitor', ctx).then((r) => {
        if (r) seen.push({ state: r.state, beats: r.metrics?.guestHeartbeats })
      })
    })
    const beatsSeen = () => seen.filter((r) => r.state === 'running' && r.beats !== undefined).length
    // Booted under TCG and beating; the first monitor asked libvirt and learnt the count.
    await runAction(d, 'monitor', ctx)
    await waitFor(() => beatsSeen() >= 3, 60_000)
    expect(beatsSeen()).toBeGreaterThanOrEqual(3)
    const asked = () =>
      readFileSync(calls, 'utf8')
        .split('\n')
        .filter((c) => c === 'domstate').length
    const before = { asked: asked(), beats: beatsSeen() }
    await sleep(3000) // six beats at two a second
    expect(beatsSeen() - before.beats).toBeGreaterThanOrEqual(3)
    expect(asked() - before.asked).toBe(0)
    // A crash is a lifecycle event: that monitor asks libvirt, and a running answer would be a lie.
    seen.length = 0
    killQemu(domain)
    await waitFor(() => seen.some((r) => r.state === 'failed'), 15_000)
    expect(seen.filter((r) => r.state === 'failed').length).toBeGreaterThan(0)
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'failed' })
    await d.close?.()
    rmSync(calls, { force: true })
    rmSync(virsh, { force: true })
  })

  test("the hypervisor: the URI's kvm until a monitor reads the domain's type (the testbed's guests run under TCG: qemu)", async () => {
    const domain = await libvirt.defineGuest()
    const d = make(domain)
    expect(d.hypervisor).toBe('kvm')
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
    expect(d.hypervisor).toBe('qemu')
  })

  test('a domain this host does not have is a local error (another host may have it)', async () => {
    const err = await runAction(make('not-here'), 'start', ctx).catch((e: unknown) => e)
    expect(err).toMatchObject({ kind: 'local' })
  })
})

test('domstats: counters summed over devices, in base units; junk lines ignored', () => {
  const text = [
    "Domain: 'vm1'",
    '  cpu.time=2500000000',
    '  balloon.current=524288',
    '  balloon.maximum=1048576',
    '  vcpu.current=2',
    '  block.count=2',
    '  block.0.name=vda',
    '  block.0.rd.bytes=1000',
    '  block.1.rd.bytes=24',
    '  block.0.wr.bytes=10',
    '  net.0.rx.bytes=7',
    '  net.0.tx.bytes=9',
  ].join('\n')
  expect(domstatsMetrics(text)).toEqual({
    cpuSeconds: 2.5,
    vcpus: 2,
    memoryCurrentBytes: 512 * 1024 * 1024,
    memoryMaxBytes: 1024 * 1024 * 1024,
    diskReadBytes: 1024,
    diskWriteBytes: 10,
    netRxBytes: 7,
    netTxBytes: 9,
  })
})

test('heartbeat lines: only new lines count, a partial line waits for its end, a truncated file is read anew', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-hb-'))
  const file = join(dir, 'console.log')
  writeFileSync(file, 'heartbeat 1\nheartbeat 2\n') // history
  const lines = new HeartbeatLines(file, /heartbeat/)
  expect(await lines.read()).toBe(0)
  appendFileSync(file, 'boot noise\nheartbeat 3\nheart')
  expect(await lines.read()).toBe(1)
  appendFileSync(file, 'beat 4\n')
  expect(await lines.read()).toBe(2)
  writeFileSync(file, 'heartbeat 1\n') // a new QEMU truncated its console file
  expect(await lines.read()).toBe(3)
  // Reads asked for at once (monitors that piled up) count each new line once.
  appendFileSync(file, 'heartbeat 2\nheartbeat 3\n')
  expect(await Promise.all([lines.read(), lines.read(), lines.read()])).toEqual([5, 5, 5])
  rmSync(dir, { recursive: true })
})
