import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FenceError, fenceNode, runFenceOp } from '@vigil/fence-kit'
import { fenceConformance } from '@vigil/fence-kit/conformance'
import { createLogger } from '@vigil/kit'
import { freePort, type Pdu, startPdu } from '@vigil/testbed'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { apcSnmpConfigSchema, apcSnmpDriver } from './index.js'

const log = createLogger('test', 'silent')

function v3Config(pdu: Pdu, extra: object = {}) {
  return {
    host: pdu.host,
    port: pdu.port,
    version: '3',
    v3: { user: pdu.v3.user, authKeyFile: pdu.files.authKey, privKeyFile: pdu.files.privKey, ...extra },
  }
}

fenceConformance(apcSnmpDriver, async () => {
  const pdu = await startPdu()
  const wrongKey = join(pdu.dir, 'wrong-key')
  writeFileSync(wrongKey, 'not-the-auth-key\n')
  const config = v3Config(pdu)
  return {
    config,
    plug: '3',
    badCredentials: v3Config(pdu, { authKeyFile: wrongKey }),
    unreachable: { ...config, port: await freePort('udp'), requestTimeoutMs: 300 },
    invalid: [
      { config: { ...config, community: 'private' }, key: 'community' },
      { config: { ...config, version: '2c' }, key: 'communityFile' },
      { config: { ...config, v3: undefined }, key: 'v3' },
      { config: { ...config, v3: { ...config.v3, privKeyFile: undefined } }, key: 'v3.privKeyFile' },
      { config: { ...config, v3: { ...config.v3, authProtocol: 'sha1' } }, key: 'v3.authProtocol' },
    ],
    cleanup: () => pdu.stop(),
  }
})

describe('apc-snmp driver against snmpd acting as an APC PDU', () => {
  let pdu: Pdu
  beforeAll(async () => {
    pdu = await startPdu()
  })
  afterAll(() => pdu.stop())
  const device = (config: object) =>
    apcSnmpDriver.create(apcSnmpConfigSchema.parse(config), { deviceId: 'pdu', log })
  const v2c = (communityFile: string) => ({ host: pdu.host, port: pdu.port, version: '2c', communityFile })

  test('v2c with the write community switches an outlet, and the PDU really switched it', async () => {
    const d = device(v2c(pdu.files.writeCommunity))
    await runFenceOp(d, 'on', '5', { log })
    expect(await runFenceOp(d, 'status', '5', { log })).toBe('on')
    await runFenceOp(d, 'off', '5', { log })
    expect(pdu.outlet(5)).toBe('off')
    expect(await runFenceOp(d, 'status', '5', { log })).toBe('off')
    expect(pdu.changes()).toContain('outlet 5 off')
    await d.close?.()
  })

  test('a host on two outlets (dual power supplies) is confirmed off only when both read off', async () => {
    const d = device(v3Config(pdu))
    await runFenceOp(d, 'on', '1', { log })
    await runFenceOp(d, 'on', '2', { log })
    const run = await fenceNode(d, ['1', '2'], { timeoutMs: 10_000, log })
    expect(run.outcome).toBe('off')
    expect(run.detail).toBe('all 2 plugs read back off')
    expect([pdu.outlet(1), pdu.outlet(2)]).toEqual(['off', 'off'])
    await d.close?.()
  })

  test('outlets can be named by their PDU name', async () => {
    const d = device(v3Config(pdu))
    await runFenceOp(d, 'off', 'outlet7', { log })
    expect(pdu.outlet(7)).toBe('off')
    await d.close?.()
  })

  test('the read-only community cannot switch: auth error, the outlet stays on', async () => {
    const ro = join(pdu.dir, 'ro-community')
    writeFileSync(ro, `${pdu.readCommunity}\n`)
    const rw = device(v2c(pdu.files.writeCommunity))
    await runFenceOp(rw, 'on', '4', { log })
    const d = device(v2c(ro))
    const err = await runFenceOp(d, 'off', '4', { log }).catch((e: unknown) => e)
    expect((err as FenceError).kind).toBe('auth')
    expect(pdu.outlet(4)).toBe('on')
    await d.close?.()
    await rw.close?.()
  })

  test('v2c with a wrong community gets no answer at all: unreachable (use v3 to tell them apart)', async () => {
    const wrong = join(pdu.dir, 'wrong-community')
    writeFileSync(wrong, 'nope\n')
    const d = device({ ...v2c(wrong), requestTimeoutMs: 300, retries: 0 })
    const err = await runFenceOp(d, 'status', '1', { log }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(FenceError)
    expect((err as FenceError).kind).toBe('unreachable')
    await d.close?.()
  })

  test('an outlet the PDU does not have is a config error naming it', async () => {
    const d = device(v3Config(pdu))
    const err = await runFenceOp(d, 'status', '42', { log }).catch((e: unknown) => e)
    expect((err as FenceError).kind).toBe('config')
    expect((err as FenceError).message).toContain('.42')
    await d.close?.()
  })

  test('a hung PDU (snmpd stopped) is unreachable', async () => {
    const d = device({ ...v3Config(pdu), requestTimeoutMs: 300, retries: 0 })
    pdu.daemon.hang()
    try {
      const err = await runFenceOp(d, 'status', '1', { log }).catch((e: unknown) => e)
      expect((err as FenceError).kind).toBe('unreachable')
    } finally {
      pdu.daemon.resume()
    }
    await d.close?.()
  })
})
