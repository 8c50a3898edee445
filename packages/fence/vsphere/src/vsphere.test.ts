import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fenceNode, runFenceOp } from '@vigil/fence-kit'
import { fenceConformance } from '@vigil/fence-kit/conformance'
import { createLogger } from '@vigil/kit'
import { freePort, startVcsim, type Vcsim } from '@vigil/testbed'
import { Vim25Client } from '@vigil/vsphere'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { vsphereFenceConfigSchema, vsphereFenceDriver } from './index.js'

const log = createLogger('test', 'silent')

let vcsim: Vcsim
beforeAll(async () => {
  vcsim = await startVcsim({ hosts: 2, vms: 4 })
}, 60_000)
afterAll(() => vcsim?.stop())

const config = () => ({ url: vcsim.sdkUrl, username: vcsim.username, passwordFile: vcsim.passwordFile })

fenceConformance(vsphereFenceDriver, async () => {
  const wrong = join(vcsim.passwordFile, '..', 'wrong-password')
  writeFileSync(wrong, 'not-the-password\n')
  return {
    config: config(),
    plug: vcsim.vms[0] as string,
    badCredentials: { ...config(), passwordFile: wrong },
    unreachable: { ...config(), url: `http://127.0.0.1:${await freePort('tcp')}/sdk` },
    invalid: [
      { config: { ...config(), url: 'vcenter.example.com' }, key: 'url' },
      { config: { ...config(), plug: 'x' }, key: 'plug' },
      { config: { url: vcsim.sdkUrl, username: 'u' }, key: 'passwordFile' },
    ],
  }
})

describe('vSphere fencing of a VM node', { timeout: 30_000 }, () => {
  const device = () =>
    vsphereFenceDriver.create(vsphereFenceConfigSchema.parse(config()), { deviceId: 'vc', log })

  test('a VM whose ESX host stopped answering is never read back off: the fence is unreachable', async () => {
    const vm = vcsim.vms[1] as string
    const d = device()
    await runFenceOp(d, 'on', vm, { log })
    // Which host runs it: power that one off (vCenter then cannot vouch for the VM).
    for (const host of vcsim.hosts) {
      await vcsim.hostPower(host, 'off')
      const run = await fenceNode(d, [vm], { timeoutMs: 5000, log })
      await vcsim.hostPower(host, 'on')
      if (run.outcome !== 'off') {
        expect(run.outcome).toBe('unreachable')
        return d.close?.()
      }
    }
    throw new Error('no host made the VM unreachable')
  })

  test('a suspended VM is not off: the fence powers it off', async () => {
    const vm = vcsim.vms[2] as string
    const d = device()
    await runFenceOp(d, 'on', vm, { log })
    const admin = new Vim25Client(vcsim.clientOptions())
    const signal = AbortSignal.timeout(5000)
    const ref = await admin.find('VirtualMachine', vm, signal)
    if (!ref) throw new Error(`no vm ${vm}`)
    await admin.task('SuspendVM_Task', ref, '', signal)
    expect(await runFenceOp(d, 'status', vm, { log })).toBe('on')
    await admin.logout()
    const run = await fenceNode(d, [vm], { timeoutMs: 5000, log })
    expect(run.outcome).toBe('off')
    await d.close?.()
  })

  test('a VM name vCenter does not know is a config error naming it', async () => {
    const err = await runFenceOp(device(), 'status', 'no-such-vm', { log }).catch((e: unknown) => e)
    expect(err).toMatchObject({ kind: 'config', message: expect.stringContaining('no-such-vm') })
  })
})
