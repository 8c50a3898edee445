import { type FenceError, fenceNode, runFenceOp } from '@vigil/fence-kit'
import { fenceConformance } from '@vigil/fence-kit/conformance'
import { createLogger } from '@vigil/kit'
import { type Libvirt, startLibvirt } from '@vigil/testbed'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { libvirtConfigSchema, libvirtDriver } from './index.js'

const log = createLogger('test', 'silent')

// One libvirtd for the whole file: restarting it between suites is slow (QEMU capability probe)
// and it is shared with whatever else on the machine uses it.
let libvirt: Libvirt
beforeAll(async () => {
  libvirt = await startLibvirt()
}, 300_000)
afterAll(() => libvirt?.stop())

fenceConformance(libvirtDriver, async () => {
  const guest = await libvirt.defineGuest()
  return {
    config: { uri: libvirt.uri },
    plug: guest,
    badCredentials: null, // a local libvirt socket has no credentials (qemu+ssh would)
    unreachable: { uri: 'qemu+unix:///system?socket=/nonexistent/libvirt-sock' },
    invalid: [
      { config: { uri: 'not a uri' }, key: 'uri' },
      { config: { uri: libvirt.uri, domain: guest }, key: 'domain' },
    ],
  }
})

describe('libvirt fencing of a real QEMU guest', { timeout: 60_000 }, () => {
  const device = () =>
    libvirtDriver.create(libvirtConfigSchema.parse({ uri: libvirt.uri }), { deviceId: 'virsh', log })

  test('a running guest is destroyed and libvirt reads it back shut off', async () => {
    const guest = await libvirt.defineGuest()
    await runFenceOp(device(), 'on', guest, { log })
    expect(await libvirt.domstate(guest)).toBe('running')
    const run = await fenceNode(device(), [guest], { timeoutMs: 20_000, log })
    expect(run.outcome).toBe('off')
    expect(await libvirt.domstate(guest)).toBe('shut off')
  })

  test('a domain libvirt does not know is a config error naming it', async () => {
    const err = await runFenceOp(device(), 'status', 'no-such-guest', { log }).catch((e: unknown) => e)
    expect((err as FenceError).kind).toBe('config')
    expect((err as FenceError).message).toContain('no-such-guest')
  })
})
