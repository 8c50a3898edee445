import { writeFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { type FenceDevice, FenceError, runFenceOp } from '@vigil/fence-kit'
import { fenceConformance } from '@vigil/fence-kit/conformance'
import { vsphereFenceConfigSchema, vsphereFenceDriver } from '@vigil/fence-vsphere'
import { createLogger } from '@vigil/kit'
import { freePort, startVcsim, type Vcsim } from '@vigil/testbed'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { fenceAgentsConfigSchema, fenceAgentsDriver } from './index.js'

// Debian's fence_vmware_soap (python suds) against vcsim, which serves it a minimal vim25 WSDL
// (packages/testbed/vcsim/vim-min.wsdl), and against Vigil's own vSphere fence driver.

const log = createLogger('test', 'silent')
const ctx = { log }

let vcsim: Vcsim
beforeAll(async () => {
  vcsim = await startVcsim({ hosts: 2, vms: 3 })
}, 60_000)
afterAll(() => vcsim?.stop())

/** fence_vmware_soap's options for a vcsim: plain http unless it serves https (self-signed). */
function soapConfig(v: Vcsim) {
  const u = new URL(v.sdkUrl)
  const options: Record<string, string | number | boolean> = {
    ip: u.hostname,
    ipport: Number(u.port),
    username: v.username,
  }
  if (u.protocol === 'https:') options['ssl-insecure'] = true
  return { agent: 'fence_vmware_soap', options, passwordFile: v.passwordFile }
}

const nativeConfig = (v: Vcsim) => ({
  url: v.sdkUrl,
  username: v.username,
  passwordFile: v.passwordFile,
  insecure: v.sdkUrl.startsWith('https:'),
})

const agentDevice = (config: unknown) =>
  fenceAgentsDriver.create(fenceAgentsConfigSchema.parse(config), { deviceId: 'fa', log })
const nativeDevice = (v: Vcsim) =>
  vsphereFenceDriver.create(vsphereFenceConfigSchema.parse(nativeConfig(v)), { deviceId: 'vc', log })

async function kindOf(p: Promise<unknown>): Promise<string> {
  try {
    return `ok: ${String(await p)}`
  } catch (err) {
    if (err instanceof FenceError) return err.kind
    throw err
  }
}

fenceConformance(fenceAgentsDriver, async () => {
  const config = soapConfig(vcsim)
  const wrong = join(vcsim.passwordFile, '..', 'wrong-password')
  writeFileSync(wrong, 'not-the-password\n')
  return {
    config,
    plug: vcsim.vms[0] as string,
    badCredentials: { ...config, passwordFile: wrong },
    unreachable: { ...config, options: { ...config.options, ipport: await freePort('tcp') } },
    invalid: [
      { config: { ...config, agent: 'fence vmware soap' }, key: 'agent' },
      { config: { ...config, options: { ...config.options, password: 'vigil' } }, key: 'options' },
      { config: { ...config, options: { ...config.options, plug: 'x' } }, key: 'options' },
      {
        config: { ...config, options: { ...config.options, username: 'vigil\naction=off' } },
        key: 'options.username',
      },
      { config: { ...config, url: vcsim.sdkUrl }, key: 'url' },
    ],
  }
})

describe('fence_vmware_soap', { timeout: 60_000 }, () => {
  test('a VM vCenter does not have is an error, never off', async () => {
    const d = agentDevice(soapConfig(vcsim))
    expect(await kindOf(runFenceOp(d, 'status', 'no-such-vm', ctx))).not.toMatch(/^ok/)
    expect(await kindOf(runFenceOp(d, 'off', 'no-such-vm', ctx))).not.toMatch(/^ok/)
  })

  test('a vCenter that accepts the connection but never answers is unreachable, not auth', async () => {
    const sockets = new Set<Socket>()
    const server: Server = createServer((s) => sockets.add(s))
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as { port: number }).port
    try {
      const config = soapConfig(vcsim)
      const d = agentDevice({ ...config, options: { ...config.options, ipport: port, 'login-timeout': 1 } })
      expect(await kindOf(runFenceOp(d, 'status', vcsim.vms[0] as string, ctx))).toBe('unreachable')
    } finally {
      for (const s of sockets) s.destroy()
      await new Promise((r) => server.close(r))
    }
  })
})

/** Both read the VM's power, then each powers it off and on in turn, both reading it back. */
async function agree(agent: FenceDevice, native: FenceDevice, vm: string): Promise<void> {
  const both = async () => [
    await runFenceOp(agent, 'status', vm, ctx),
    await runFenceOp(native, 'status', vm, ctx),
  ]
  const [first, again] = await both()
  expect(again, 'before: fence_vmware_soap, then the native driver').toBe(first)
  const steps: [string, FenceDevice, 'on' | 'off'][] = [
    ['fence_vmware_soap', agent, 'on'],
    ['fence_vmware_soap', agent, 'off'],
    ['vsphere', native, 'on'],
    ['vsphere', native, 'off'],
    ['fence_vmware_soap', agent, 'on'],
    ['vsphere', native, 'off'],
  ]
  for (const [who, device, op] of steps) {
    await runFenceOp(device, op, vm, ctx)
    expect(await both(), `after ${who} ${op}: [fence_vmware_soap, vsphere]`).toEqual([op, op])
  }
}

describe('fence_vmware_soap and the native vSphere fence driver agree', { timeout: 90_000 }, () => {
  test('on a VM power, before and after each one powers it off and on', async () => {
    const native = nativeDevice(vcsim)
    await agree(agentDevice(soapConfig(vcsim)), native, vcsim.vms[1] as string)
    await native.close?.()
  })

  test('on the VMs there are: list names each one by name', async () => {
    const native = nativeDevice(vcsim)
    const soap = await runFenceOp(agentDevice(soapConfig(vcsim)), 'list', null, ctx)
    const ours = await runFenceOp(native, 'list', null, ctx)
    expect(soap.map((o) => o.plug).sort()).toEqual([...vcsim.vms].sort())
    expect(soap.map((o) => o.plug).sort()).toEqual(ours.map((o) => o.plug).sort())
    await native.close?.()
  })

  describe('over https (vcsim with a self-signed certificate, ssl-insecure)', () => {
    let tls: Vcsim
    beforeAll(async () => {
      tls = await startVcsim({ hosts: 1, vms: 1, tls: true })
    }, 60_000)
    afterAll(() => tls?.stop())

    test('they agree on a VM power', async () => {
      expect(tls.sdkUrl).toMatch(/^https:/)
      const native = nativeDevice(tls)
      await agree(agentDevice(soapConfig(tls)), native, tls.vms[0] as string)
      await native.close?.()
    })
  })
})
