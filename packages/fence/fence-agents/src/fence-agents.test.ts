import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FenceError, runFenceOp } from '@vigil/fence-kit'
import { fenceConformance } from '@vigil/fence-kit/conformance'
import { createLogger } from '@vigil/kit'
import { type Bmc, freePort, startBmc, startPdu } from '@vigil/testbed'
import { expect, test } from 'vitest'
import { fenceAgentsConfigSchema, fenceAgentsDriver } from './index.js'

const log = createLogger('test', 'silent')

function wrongPasswordFile(dir: string): string {
  const f = join(dir, 'wrong-password')
  writeFileSync(f, 'not-the-password\n')
  return f
}

// fence_ipmilan against ipmi_sim: --cipher=3, or every call takes ~14 s (ipmi_sim has no
// cipher suite discovery).
fenceConformance(fenceAgentsDriver, async () => {
  const bmc: Bmc = await startBmc()
  const options = { ip: bmc.host, ipport: bmc.port, username: bmc.username, lanplus: true, cipher: 3 }
  const config = { agent: 'fence_ipmilan', options, passwordFile: bmc.passwordFile }
  return {
    config,
    plug: null,
    badCredentials: { ...config, passwordFile: wrongPasswordFile(bmc.dir) },
    unreachable: { ...config, options: { ...options, ipport: await freePort('udp') } },
    invalid: [
      { config: { ...config, agent: 'ipmitool' }, key: 'agent' },
      { config: { ...config, options: { ...options, action: 'off' } }, key: 'options' },
      { config: { ...config, options: { ...options, 'Bad Key': 1 } }, key: 'options.Bad Key' },
      { config: { ...config, options: { ...options, ip: 'x\naction=off' } }, key: 'options.ip' },
      { config: { ...config, timeout: 5 }, key: 'timeout' },
    ],
    cleanup: () => bmc.stop(),
  }
})

// fence_apc_snmp against snmpd acting as an APC PDU (it recognises the PDU by its sysObjectID).
fenceConformance(fenceAgentsDriver, async () => {
  const pdu = await startPdu()
  const options = { ip: pdu.host, ipport: pdu.port, 'snmp-version': '2c', community: 'private' }
  const v3 = {
    ip: pdu.host,
    ipport: pdu.port,
    'snmp-version': '3',
    username: pdu.v3.user,
    'snmp-auth-prot': 'SHA',
    'snmp-sec-level': 'authPriv',
    'snmp-priv-prot': 'AES',
    'snmp-priv-passwd': pdu.v3.privKey,
  }
  const authKey = join(pdu.dir, 'auth-key-for-agent')
  writeFileSync(authKey, `${pdu.v3.authKey}\n`)
  return {
    config: { agent: 'fence_apc_snmp', options },
    plug: '6',
    badCredentials: { agent: 'fence_apc_snmp', options: v3, passwordFile: wrongPasswordFile(pdu.dir) },
    unreachable: {
      agent: 'fence_apc_snmp',
      options: { ...options, ipport: await freePort('udp'), 'power-timeout': 1 },
    },
    invalid: [{ config: { agent: 'fence_apc_snmp', options, passwordFile: '' }, key: 'passwordFile' }],
    cleanup: () => pdu.stop(),
  }
})

test('an agent that is not installed is a config error at creation, naming it', () => {
  const config = fenceAgentsConfigSchema.parse({ agent: 'fence_nonexistent' })
  expect(() => fenceAgentsDriver.create(config, { deviceId: 'x', log })).toThrow(
    expect.objectContaining({ kind: 'config', message: expect.stringContaining('fence_nonexistent') }),
  )
})

test('the password reaches the agent on its stdin, never its command line', async () => {
  const dir = (await import('node:fs')).mkdtempSync(join((await import('node:os')).tmpdir(), 'vigil-fa-'))
  const spy = join(dir, 'fence_spy')
  writeFileSync(spy, `#!/bin/sh\necho "$@" > ${dir}/argv\ncat > ${dir}/stdin\nexit 2\n`, { mode: 0o755 })
  const pw = join(dir, 'pw')
  writeFileSync(pw, 's3cret\n')
  const d = fenceAgentsDriver.create(
    fenceAgentsConfigSchema.parse({
      agent: 'fence_spy',
      searchPath: [dir],
      passwordFile: pw,
      options: { ip: 'h' },
    }),
    { deviceId: 'x', log },
  )
  expect(await runFenceOp(d, 'status', '3', { log })).toBe('off')
  const { readFileSync } = await import('node:fs')
  expect(readFileSync(join(dir, 'argv'), 'utf8').trim()).toBe('')
  expect(readFileSync(join(dir, 'stdin'), 'utf8')).toBe('action=status\nip=h\npassword=s3cret\nplug=3\n')
  const err = await runFenceOp(d, 'off', '3', { log }).catch((e: unknown) => e)
  expect(err).toBeInstanceOf(FenceError)
})
