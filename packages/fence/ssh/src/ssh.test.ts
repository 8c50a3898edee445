import { FenceError, fenceNode, runFenceOp } from '@vigil/fence-kit'
import { fenceConformance } from '@vigil/fence-kit/conformance'
import { createLogger } from '@vigil/kit'
import { type Sshd, startSshd } from '@vigil/testbed'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { sshConfigSchema, sshDriver } from './index.js'

const log = createLogger('test', 'silent')

function configFor(sshd: Sshd) {
  return {
    host: sshd.host.ip,
    port: sshd.port,
    username: sshd.username,
    privateKeyFile: sshd.clientKeyFile,
    hostKeySha256: sshd.hostKeySha256,
    offCommand: sshd.offCommand,
    connectTimeoutMs: 1000,
  }
}

fenceConformance(sshDriver, async () => {
  const sshd = await startSshd()
  const config = { ...configFor(sshd), unsafeConfirmWhenUnreachable: true }
  return {
    config,
    plug: null,
    // A generous handshake time: a slow handshake on a loaded machine (1 s in `config`) would read
    // as unreachable, and with `unsafeConfirmWhenUnreachable` as off, whatever the key.
    badCredentials: { ...config, privateKeyFile: sshd.strangerKeyFile, connectTimeoutMs: 10_000 },
    // The same test host on a port nothing listens on (traffic stays inside our namespaces).
    unreachable: { ...config, port: 23, unsafeConfirmWhenUnreachable: false },
    invalid: [
      { config: { ...config, hostKeySha256: 'abc' }, key: 'hostKeySha256' },
      { config: { ...config, password: 'x' }, key: 'password' },
      { config: { ...config, privateKeyFile: undefined }, key: 'privateKeyFile' },
    ],
    // "On" means sshd answers: right after an off, the host can still have a process or two of
    // the off command itself (so `running()`) while sshd is gone, and a test that took that for
    // "on" met a dead host (seen once: the wrong-credentials test read unreachable, hence off).
    powerOn: async () => {
      if (!(await sshd.answering())) await sshd.start()
    },
    cleanup: () => sshd.stop(),
  }
})

describe('ssh fencing of a host in its own network namespace', () => {
  let sshd: Sshd
  beforeAll(async () => {
    sshd = await startSshd()
  })
  afterAll(() => sshd.stop())
  const device = (extra: object = {}) =>
    sshDriver.create(sshConfigSchema.parse({ ...configFor(sshd), ...extra }), { deviceId: 'ssh', log })

  test('by default ssh takes the host down but never confirms it off', async () => {
    if (!(await sshd.answering())) await sshd.start()
    const run = await fenceNode(device(), [null], { timeoutMs: 3000, pollMs: 200, log })
    expect(sshd.running()).toBe(false)
    expect(run.outcome).toBe('unreachable')
    expect(run.steps[0]).toMatchObject({ op: 'off', result: 'ok' })
  })

  test('a pinned host key that does not match is refused before any command runs', async () => {
    if (!(await sshd.answering())) await sshd.start()
    const d = device({ hostKeySha256: `SHA256:${'A'.repeat(43)}` })
    const err = await runFenceOp(d, 'off', null, { log }).catch((e: unknown) => e)
    expect((err as FenceError).kind).toBe('auth')
    expect((err as FenceError).message).toContain('host key')
    expect(sshd.running()).toBe(true)
  })

  test('a partitioned host (link down) is unreachable, even though it is running', async () => {
    if (!(await sshd.answering())) await sshd.start()
    sshd.host.link(false)
    try {
      const err = await runFenceOp(device(), 'status', null, { log }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(FenceError)
      expect((err as FenceError).kind).toBe('unreachable')
      expect(sshd.running()).toBe(true)
    } finally {
      sshd.host.link(true)
    }
  })
})
