import { startVcsim, type Vcsim } from '@vigil/testbed'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { refXml, textOf, Vim25Client, type VsphereConnection, VsphereError } from './client.js'
import { readDatastore, readHost, readVm } from './inventory.js'

const signal = () => AbortSignal.timeout(10_000)

let vcsim: Vcsim
beforeAll(async () => {
  vcsim = await startVcsim({ hosts: 2, vms: 2 })
}, 60_000)
afterAll(() => vcsim?.stop())

const connection = (extra: Partial<VsphereConnection> = {}): VsphereConnection => ({
  ...vcsim.clientOptions(),
  ...extra,
})

async function errorOf(p: Promise<unknown>): Promise<VsphereError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(VsphereError)
  return err as VsphereError
}

describe('vim25 client against vcsim', { timeout: 30_000 }, () => {
  test('finds objects by name and reads their properties', async () => {
    const c = new Vim25Client(connection())
    const vmRef = await c.find('VirtualMachine', vcsim.vms[0] as string, signal())
    expect(vmRef?.type).toBe('VirtualMachine')
    const vm = await readVm(c, vmRef as NonNullable<typeof vmRef>, signal())
    expect(vm).toMatchObject({ powerState: 'poweredOff', connectionState: 'connected' })
    expect(vm.host?.type).toBe('HostSystem')
    expect(vm.datastores.map((d) => d.type)).toEqual(['Datastore'])
    const host = await readHost(c, vm.host as NonNullable<typeof vm.host>, signal())
    expect(host).toMatchObject({ connectionState: 'connected', inMaintenanceMode: false })
    expect(vcsim.hosts).toContain(host.name)
    const ds = await readDatastore(c, vm.datastores[0] as NonNullable<(typeof vm.datastores)[0]>, signal())
    expect(ds).toMatchObject({ name: vcsim.datastore, accessible: true })
    expect(Object.keys(ds.mounts)).toHaveLength(2)
    expect(await c.find('VirtualMachine', 'no-such-vm', signal())).toBeNull()
    await c.logout()
  })

  test('a task runs to its end; a refused one throws its fault type', async () => {
    const c = new Vim25Client(connection())
    const ref = await c.find('VirtualMachine', vcsim.vms[1] as string, signal())
    if (!ref) throw new Error('no vm')
    await c.task('PowerOnVM_Task', ref, '', signal())
    expect((await readVm(c, ref, signal())).powerState).toBe('poweredOn')
    const err = await errorOf(c.task('PowerOnVM_Task', ref, '', signal()))
    expect(err).toMatchObject({ kind: 'fault', fault: 'InvalidPowerState' })
    await c.task('PowerOffVM_Task', ref, '', signal())
    await c.logout()
  })

  test('fault endpoints change what vCenter reports', async () => {
    const c = new Vim25Client(connection())
    const host = await c.find('HostSystem', vcsim.hosts[1] as string, signal())
    if (!host) throw new Error('no host')
    await vcsim.hostConnection(vcsim.hosts[1] as string, 'notResponding')
    expect((await readHost(c, host, signal())).connectionState).toBe('notResponding')
    await vcsim.hostConnection(vcsim.hosts[1] as string, 'connected')
    const ds = await c.find('Datastore', vcsim.datastore, signal())
    if (!ds) throw new Error('no datastore')
    await vcsim.datastoreAccess(false, vcsim.hosts[1])
    const view = await readDatastore(c, ds, signal())
    expect(view.mounts[host.value]).toEqual({ accessible: false, reason: 'AllPathsDown_Start' })
    expect(view.accessible).toBe(true)
    await vcsim.datastoreAccess(true)
    await c.logout()
  })

  test.each([
    ['a wrong password', { password: 'wrong' }, 'auth'],
    ['a closed port', { url: 'http://127.0.0.1:9/sdk' }, 'unreachable'],
    ['a URL that is not an SDK endpoint', { url: 'http://127.0.0.1:1/nothing' }, 'unreachable'],
  ] as const)('%s is a %s error', async (_, extra, kind) => {
    const c = new Vim25Client(connection(extra))
    expect((await errorOf(c.find('VirtualMachine', 'x', signal()))).kind).toBe(kind)
  })

  test('a path that is not the SDK is a config error, not a hang', async () => {
    const c = new Vim25Client(connection({ url: `${vcsim.base}/about-nothing` }))
    expect((await errorOf(c.find('VirtualMachine', 'x', signal()))).kind).toBe('config')
  })

  test('an expired session logs in again by itself', async () => {
    const c = new Vim25Client(connection())
    const content = await c.session(signal())
    // Log the session out behind the client's back: its cookie is now refused (NotAuthenticated).
    await c.call('Logout', content.sessionManager, '', signal())
    const ref = await c.find('VirtualMachine', vcsim.vms[0] as string, signal())
    expect(ref?.value).toBeTruthy()
    expect(textOf((await c.props(ref as NonNullable<typeof ref>, ['name'], signal())).name)).toBe(
      vcsim.vms[0],
    )
    expect(refXml('obj', { type: 'A"', value: '<b>' })).toBe('<obj type="A&#34;">&#60;b&#62;</obj>')
    await c.logout()
  })
})

describe('vim25 client over https', { timeout: 30_000 }, () => {
  let tls: Vcsim
  beforeAll(async () => {
    tls = await startVcsim({ hosts: 1, vms: 1, tls: true })
  }, 60_000)
  afterAll(() => tls?.stop())

  test('a self-signed certificate is refused as config unless insecure is set', async () => {
    const base = { username: tls.username, password: tls.password, timeoutMs: 5000, apiVersion: '7.0' }
    const strict = new Vim25Client({ ...base, url: tls.sdkUrl, insecure: false })
    const err = await errorOf(strict.find('VirtualMachine', tls.vms[0] as string, signal()))
    expect(err.kind).toBe('config')
    expect(err.message).toContain('caFile')
    const lab = new Vim25Client({ ...base, url: tls.sdkUrl, insecure: true })
    expect((await lab.find('VirtualMachine', tls.vms[0] as string, signal()))?.type).toBe('VirtualMachine')
    await lab.logout()
  })
})
