import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FenceError, fenceNode, runFenceOp } from '@vigil/fence-kit'
import { fenceConformance } from '@vigil/fence-kit/conformance'
import { createLogger } from '@vigil/kit'
import { type Sshd, startSshd } from '@vigil/testbed'
import { Server } from 'ssh2'
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
    badCredentials: { ...config, privateKeyFile: sshd.strangerKeyFile },
    // The same test host on a port nothing listens on (traffic stays inside our namespaces).
    unreachable: { ...config, port: 23, unsafeConfirmWhenUnreachable: false },
    invalid: [
      { config: { ...config, hostKeySha256: 'abc' }, key: 'hostKeySha256' },
      { config: { ...config, password: 'x' }, key: 'password' },
      { config: { ...config, privateKeyFile: undefined }, key: 'privateKeyFile' },
    ],
    powerOn: async () => {
      if (!sshd.running()) await sshd.start()
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
    if (!sshd.running()) await sshd.start()
    const run = await fenceNode(device(), [null], { timeoutMs: 3000, pollMs: 200, log })
    expect(sshd.running()).toBe(false)
    expect(run.outcome).toBe('unreachable')
    expect(run.steps[0]).toMatchObject({ op: 'off', result: 'ok' })
  })

  test('a pinned host key that does not match is refused before any command runs', async () => {
    if (!sshd.running()) await sshd.start()
    const d = device({ hostKeySha256: `SHA256:${'A'.repeat(43)}` })
    const err = await runFenceOp(d, 'off', null, { log }).catch((e: unknown) => e)
    expect((err as FenceError).kind).toBe('auth')
    expect((err as FenceError).message).toContain('host key')
    expect(sshd.running()).toBe(true)
  })

  test('a partitioned host (link down) is unreachable, even though it is running', async () => {
    if (!sshd.running()) await sshd.start()
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

// The flake that found it (a loaded CI run): a refused key arrived as a closed connection, not as
// an authentication error, and with `unsafeConfirmWhenUnreachable` a closed connection read as
// "off". A server that completed the key exchange is up: that must never read as off.
test('a server that answers, then closes the connection during authentication, is an auth error, never off', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-ssh-'))
  const keygen = (name: string) => {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, name)])
    return join(dir, name)
  }
  const hostKey = keygen('host')
  const clientKey = keygen('client')
  // The pinned fingerprint, as ssh-keygen -l prints it: SHA-256 of the public key blob.
  const blob = Buffer.from(readFileSync(`${hostKey}.pub`, 'utf8').split(' ')[1] as string, 'base64')
  const fingerprint = `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`
  const server = new Server({ hostKeys: [readFileSync(hostKey)] }, (client) => {
    client.on('authentication', () => client.end()) // hangs up instead of answering
    client.on('error', () => {})
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  try {
    const d = sshDriver.create(
      sshConfigSchema.parse({
        host: '127.0.0.1',
        port: (server.address() as AddressInfo).port,
        username: 'root',
        privateKeyFile: clientKey,
        hostKeySha256: fingerprint,
        connectTimeoutMs: 2000,
        unsafeConfirmWhenUnreachable: true,
      }),
      { deviceId: 'ssh', log },
    )
    const err = await runFenceOp(d, 'status', null, { log }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(FenceError)
    expect((err as FenceError).kind).toBe('auth')
    expect((await fenceNode(d, [null], { timeoutMs: 3000, log })).outcome).toBe('auth-failed')
  } finally {
    server.close()
    rmSync(dir, { recursive: true, force: true })
  }
})
