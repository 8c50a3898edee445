import { createServer, type Server } from 'node:net'
import { type Driver, runAction } from '@vigil/driver-kit'
import { driverConformance, monitorConformance } from '@vigil/driver-kit/conformance'
import { createLogger } from '@vigil/kit'
import { startVcsim, type Vcsim } from '@vigil/testbed'
import { readVm, textOf, Vim25Client } from '@vigil/vsphere'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import {
  vsphereHostConfigSchema,
  vsphereHostDriver,
  vsphereVmConfigSchema,
  vsphereVmDriver,
} from './index.js'

const log = createLogger('test', 'silent')
const ctx = { log }

let vcsim: Vcsim
/** A port that accepts connections and never answers: a hung vCenter. */
let silent: Server
let silentUrl: string
/** The test's own view of vCenter, to act behind the driver's back and to check what it did. */
let admin: Vim25Client

beforeAll(async () => {
  vcsim = await startVcsim({ hosts: 2, vms: 24 })
  silent = createServer(() => {}).listen(0, '127.0.0.1')
  await new Promise((r) => silent.once('listening', r))
  silentUrl = `http://127.0.0.1:${(silent.address() as { port: number }).port}/sdk`
  admin = new Vim25Client(vcsim.clientOptions())
}, 60_000)
afterAll(async () => {
  await admin?.logout()
  silent?.close()
  await vcsim?.stop()
})

const signal = () => AbortSignal.timeout(10_000)
const connection = () => ({ url: vcsim.sdkUrl, username: vcsim.username, passwordFile: vcsim.passwordFile })

/** Where vCenter says the VM is and in what state. */
async function where(vm: string): Promise<{ host: string | undefined; power: string }> {
  const ref = await admin.find('VirtualMachine', vm, signal())
  if (!ref) throw new Error(`no vm ${vm}`)
  const view = await readVm(admin, ref, signal())
  const hosts = await admin.all('HostSystem', ['name'], signal())
  const host = textOf(hosts.find((h) => h.ref.value === view.host?.value)?.props.name)
  return { host, power: view.powerState }
}

async function powerOffBehindItsBack(vm: string): Promise<void> {
  const ref = await admin.find('VirtualMachine', vm, signal())
  if (!ref) throw new Error(`no vm ${vm}`)
  await admin.task('PowerOffVM_Task', ref, '', signal())
}

/** VMs are handed out one per use so tests do not share state. */
let nextVm = 0
const takeVm = () => vcsim.vms[nextVm++] as string

driverConformance(vsphereVmDriver, async () => {
  const vm = takeVm()
  return {
    config: { ...connection(), vm, host: vcsim.hosts[0], shutdownTimeoutMs: 2000 },
    breakIt: async () => powerOffBehindItsBack(vm),
    invalid: [
      { config: { ...connection(), vm, host: 'h', url: 'vcenter' }, key: 'url' },
      { config: { ...connection(), host: 'h' }, key: 'vm' },
      {
        config: { ...connection(), vm, host: 'h', nodeHosts: { 'bad node!': 'x' } },
        key: 'nodeHosts.bad node!',
      },
      { config: { ...connection(), vm, host: 'h', power: 'on' }, key: 'power' },
    ],
    hangingStart: { ...connection(), url: silentUrl, vm, host: vcsim.hosts[0], callTimeoutMs: 1000 },
  }
})

describe('vsphere VM driver against vcsim', { timeout: 60_000 }, () => {
  const drivers: Driver[] = []
  const make = (vm: string, host: string, extra: object = {}) => {
    const d = vsphereVmDriver.create(
      vsphereVmConfigSchema.parse({ ...connection(), vm, host, shutdownTimeoutMs: 2000, ...extra }),
      { resourceId: 'vm', log },
    )
    drivers.push(d)
    return d
  }
  afterEach(async () => {
    for (const d of drivers.splice(0)) await d.close?.()
    await vcsim.datastoreAccess(true)
    for (const h of vcsim.hosts) await vcsim.hostPower(h, 'on')
  })
  const [h0, h1] = [() => vcsim.hosts[0] as string, () => vcsim.hosts[1] as string]

  test('runs on one node at a time: the other node sees it stopped, and starting it there moves it', async () => {
    const vm = takeVm()
    const [a, b] = [make(vm, h0()), make(vm, h1())]
    await runAction(a, 'start', ctx)
    expect(await runAction(a, 'monitor', ctx)).toMatchObject({ state: 'running' })
    expect(await runAction(b, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
    // Never a second copy: node b may not start it while it runs on a's host.
    const refused = await runAction(b, 'start', ctx).catch((e: unknown) => e)
    expect(refused).toMatchObject({ kind: 'local' })
    await runAction(a, 'stop', ctx)
    await runAction(b, 'start', ctx)
    expect(await where(vm)).toEqual({ host: h1(), power: 'poweredOn' })
    expect(await runAction(a, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
    expect(await runAction(b, 'monitor', ctx)).toMatchObject({ state: 'running' })
  })

  test('migrate is a vMotion to the target node’s host; a retried migrate succeeds', async () => {
    const vm = takeVm()
    const a = make(vm, h0(), { nodeHosts: { esx2: h1() } })
    await runAction(a, 'start', ctx)
    await runAction(a, 'migrate', { ...ctx, target: 'esx2' })
    expect(await where(vm)).toEqual({ host: h1(), power: 'poweredOn' })
    await runAction(a, 'migrate', { ...ctx, target: 'esx2' })
    expect(await runAction(a, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
  })

  test('VMware Tools heartbeat counts while green and stops while the guest hangs; a reset brings it back', async () => {
    const vm = takeVm()
    const a = make(vm, h0())
    await runAction(a, 'start', ctx)
    const beats = async () => (await runAction(a, 'monitor', ctx))?.metrics?.guestHeartbeats
    // Tools come up a moment after power-on (the simulator's tools loop), as on a real guest.
    let first: number | undefined
    for (let i = 0; i < 50 && first === undefined; i++) {
      first = await beats()
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(first).toBeGreaterThan(0)
    expect(await beats()).toBeGreaterThan(first as number)
    await vcsim.guest(vm, 'hung')
    await new Promise((r) => setTimeout(r, 300))
    const stalled = await beats()
    expect(await beats()).toBe(stalled)
    expect(await runAction(a, 'monitor', ctx)).toMatchObject({ state: 'running' }) // hung is the hub's call
    await runAction(a, 'reset', ctx)
    await new Promise((r) => setTimeout(r, 300))
    const after = await beats()
    expect(await beats()).toBeGreaterThan(after as number)
  })

  test('a datastore this host cannot reach fails the VM here, and start here refuses it as local', async () => {
    const vm = takeVm()
    const a = make(vm, h0())
    const b = make(vm, h1())
    await runAction(a, 'start', ctx)
    await vcsim.datastoreAccess(false, h0())
    expect(await runAction(a, 'monitor', ctx)).toMatchObject({
      state: 'failed',
      detail: expect.stringContaining(vcsim.datastore),
    })
    await runAction(a, 'stop', ctx)
    expect(await runAction(a, 'start', ctx).catch((e: unknown) => e)).toMatchObject({ kind: 'local' })
    // The other host still reaches it: the VM starts there.
    await runAction(b, 'start', ctx)
    expect(await runAction(b, 'monitor', ctx)).toMatchObject({ state: 'running' })
  })

  test('a host that stops answering: its VM is failed, never running; stop cannot make it safe; after the fence the other node takes it', async () => {
    const vm = takeVm()
    const [a, b] = [make(vm, h0()), make(vm, h1())]
    await runAction(a, 'start', ctx)
    await vcsim.hostPower(h0(), 'off')
    const seen = await runAction(a, 'monitor', ctx)
    expect(seen).toMatchObject({ state: 'failed', detail: expect.stringContaining('notResponding') })
    expect(await runAction(a, 'stop', ctx).catch((e: unknown) => e)).toMatchObject({ kind: 'transient' })
    expect(await runAction(b, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
    // The hub starts it on b only once h0's fence is confirmed (its power read back off).
    await runAction(b, 'start', ctx)
    expect(await where(vm)).toEqual({ host: h1(), power: 'poweredOn' })
    await vcsim.hostPower(h0(), 'on')
    expect(await runAction(a, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
  })

  test('suspend is suspended (not stopped, not failed), resume and start both continue it', async () => {
    const vm = takeVm()
    const a = make(vm, h0())
    await runAction(a, 'start', ctx)
    await runAction(a, 'suspend', ctx)
    await runAction(a, 'suspend', ctx)
    expect(await runAction(a, 'monitor', ctx)).toMatchObject({ state: 'suspended' })
    await runAction(a, 'resume', ctx)
    await runAction(a, 'resume', ctx)
    expect(await runAction(a, 'monitor', ctx)).toMatchObject({ state: 'running' })
    await runAction(a, 'suspend', ctx)
    await runAction(a, 'start', ctx)
    expect(await where(vm)).toEqual({ host: h0(), power: 'poweredOn' })
  })

  test.each([
    ['a wrong password', { passwordFile: '/dev/null' }, 'config'],
    ['an ESX host vCenter does not know', { host: 'no-such-host' }, 'config'],
  ] as const)('%s is a %s error', async (_, extra, kind) => {
    const d = make(takeVm(), h0(), extra)
    expect(await runAction(d, 'monitor', ctx).catch((e: unknown) => e)).toMatchObject({ kind })
  })
})

monitorConformance(vsphereHostDriver, async () => {
  const bad = vcsim.hosts[1] as string
  await vcsim.hostConnection(bad, 'notResponding')
  return {
    healthy: { ...connection(), host: vcsim.hosts[0] },
    broken: { ...connection(), host: bad },
    samplesToFail: 2,
    invalid: [
      { config: { ...connection() }, key: 'host' },
      { config: { ...connection(), host: 'h', failuresBeforeCritical: 0 }, key: 'failuresBeforeCritical' },
    ],
    hanging: { ...connection(), url: silentUrl, host: 'h', callTimeoutMs: 1000 },
    cleanup: () => vcsim.hostConnection(bad, 'connected'),
  }
})

describe('vsphere host watch', { timeout: 30_000 }, () => {
  test('a datastore the host cannot reach fails it after two samples, and it recovers', async () => {
    const d = vsphereHostDriver.create(
      vsphereHostConfigSchema.parse({ ...connection(), host: vcsim.hosts[0] }),
      { resourceId: 'esx', log },
    )
    await vcsim.datastoreAccess(false, vcsim.hosts[0])
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'running' })
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({
      state: 'failed',
      metrics: { datastoresUnreachable: 1 },
    })
    await vcsim.datastoreAccess(true)
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'running', detail: 'connected' })
    await d.close?.()
  })
})
