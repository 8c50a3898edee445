import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FenceError, fenceNode, runFenceOp } from '@vigil/fence-kit'
import { fenceConformance } from '@vigil/fence-kit/conformance'
import { createLogger } from '@vigil/kit'
import { type Bmc, freePort, startBmc } from '@vigil/testbed'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { ipmiConfigSchema, ipmiDriver } from './index.js'

fenceConformance(ipmiDriver, async () => {
  const bmc: Bmc = await startBmc()
  const config = {
    host: bmc.host,
    port: bmc.port,
    username: bmc.username,
    passwordFile: bmc.passwordFile,
  }
  const wrongPassword = `${bmc.dir}/wrong-password`
  writeFileSync(wrongPassword, 'not-the-password\n')
  return {
    config,
    plug: null,
    badCredentials: { ...config, username: 'admin', passwordFile: wrongPassword },
    unreachable: { ...config, port: await freePort('udp') },
    invalid: [
      { config: { ...config, pasword: 'x' }, key: 'pasword' },
      { config: { ...config, cipherSuite: 42 }, key: 'cipherSuite' },
      { config: { ...config, passwordFile: undefined }, key: 'passwordFile' },
      { config: { ...config, interface: 'serial' }, key: 'interface' },
    ],
    cleanup: () => bmc.stop(),
  }
})

describe('ipmi driver against ipmi_sim', () => {
  let bmc: Bmc
  const log = createLogger('test', 'silent')
  beforeAll(async () => {
    bmc = await startBmc()
  })
  afterAll(() => bmc.stop())
  const device = (extra: object = {}) =>
    ipmiDriver.create(
      ipmiConfigSchema.parse({
        host: bmc.host,
        port: bmc.port,
        username: bmc.username,
        passwordFile: bmc.passwordFile,
        ...extra,
      }),
      { deviceId: 'bmc', log },
    )

  test('a hung BMC (SIGSTOP) is unreachable within the timeout, and answers again once resumed', async () => {
    const d = device()
    bmc.daemon.hang()
    try {
      const started = performance.now()
      const err = await runFenceOp(d, 'status', null, { log }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(FenceError)
      expect((err as FenceError).kind).toBe('unreachable')
      expect(performance.now() - started).toBeLessThanOrEqual(d.timeouts.status + 1000)
    } finally {
      bmc.daemon.resume()
    }
    expect(['on', 'off']).toContain(await runFenceOp(d, 'status', null, { log }))
  })

  test('the BMC really switched the host: off and on reach its chassis control', async () => {
    const d = device()
    await runFenceOp(d, 'on', null, { log })
    const run = await fenceNode(d, [null], { timeoutMs: 10_000, log })
    expect(run.outcome).toBe('off')
    expect(bmc.power()).toBe('off')
    expect(bmc.powerLog().at(-1)).toBe('off')
  })

  test('the password reaches ipmitool through its environment, never its command line', async () => {
    const spy = join(bmc.dir, 'ipmitool-spy.sh')
    writeFileSync(
      spy,
      `#!/bin/sh\necho "$@" > ${bmc.dir}/argv\necho "$IPMI_PASSWORD" > ${bmc.dir}/env\nexec ipmitool "$@"\n`,
    )
    chmodSync(spy, 0o755)
    await runFenceOp(device({ ipmitool: spy }), 'status', null, { log })
    expect(readFileSync(join(bmc.dir, 'argv'), 'utf8')).not.toContain(bmc.password)
    expect(readFileSync(join(bmc.dir, 'argv'), 'utf8')).toContain('-E')
    expect(readFileSync(join(bmc.dir, 'env'), 'utf8').trim()).toBe(bmc.password)
  })

  test('a missing ipmitool is a config error, not "unreachable"', async () => {
    const err = await runFenceOp(device({ ipmitool: '/nonexistent/ipmitool' }), 'status', null, {
      log,
    }).catch((e: unknown) => e)
    expect((err as FenceError).kind).toBe('config')
  })
})
