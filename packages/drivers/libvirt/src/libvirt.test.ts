import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runAction } from '@vigil/driver-kit'
import { driverConformance } from '@vigil/driver-kit/conformance'
import { createLogger } from '@vigil/kit'
import { type Libvirt, startLibvirt } from '@vigil/testbed'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { libvirtConfigSchema, libvirtDriver } from './index.js'

const log = createLogger('test', 'silent')

/** A QEMU process killed behind libvirt's back: the guest crashed. */
function killQemu(domain: string): void {
  process.kill(Number(readFileSync(`/run/libvirt/qemu/${domain}.pid`, 'utf8')), 'SIGKILL')
}

let libvirt: Libvirt
beforeAll(async () => {
  libvirt = await startLibvirt()
}, 120_000)
afterAll(() => libvirt?.stop())

driverConformance(libvirtDriver, async () => {
  const domain = await libvirt.defineGuest()
  const hang = join('/tmp', `vigil-virsh-hang-${process.pid}`)
  writeFileSync(hang, '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 })
  return {
    // The tiny guest has no OS to answer an ACPI shutdown: stop falls back to destroy at once.
    config: { domain, shutdownTimeoutMs: 0 },
    breakIt: async () => killQemu(domain),
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

  test('a paused guest is "paused", never "stopped": it still holds its disks', async () => {
    const domain = await libvirt.defineGuest()
    const d = make(domain)
    await runAction(d, 'start', ctx)
    await libvirt.virsh(['suspend', domain])
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'paused' })
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
    await new Promise((r) => setTimeout(r, 500)) // virsh event connected
    killQemu(domain)
    const until = Date.now() + 10_000
    while (changes === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
    expect(changes).toBeGreaterThan(0)
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'failed' })
    await d.close?.()
  })

  test('reset keeps the guest running; stop of a guest that ignores ACPI destroys it after the timeout', async () => {
    const domain = await libvirt.defineGuest()
    const d = make(domain)
    await runAction(d, 'start', ctx)
    await runAction(d, 'reset', ctx)
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'running' })
    await runAction(d, 'stop', ctx)
    expect(await libvirt.domstate(domain)).toBe('shut off')
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
  })

  test('a domain this host does not have is a local error (another host may have it)', async () => {
    const err = await runAction(make('not-here'), 'start', ctx).catch((e: unknown) => e)
    expect(err).toMatchObject({ kind: 'local' })
  })
})
