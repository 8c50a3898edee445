import { expect, test } from 'vitest'
import type { Command } from './schemas.js'
import {
  generateSigningKey,
  privateKeyFromPem,
  publicKeyFromPem,
  publicKeysFromPem,
  signCommand,
  verifyCommand,
} from './signing.js'

const hub = generateSigningKey()
const other = generateSigningKey()
const cmd: Omit<Command, 'sig'> = {
  v: 1,
  id: '11111111-2222-4333-8444-555555555555',
  issuer: { hub: 'hub', epoch: 3 },
  seq: 7,
  issuedAt: 1_700_000_000_000,
  expiresAt: 1_700_000_005_000,
  target: 'node-b',
  action: 'stop',
  args: { resource: 'web', decision: 'd-3-9' },
}
const signed = { ...cmd, sig: signCommand(cmd, privateKeyFromPem(hub.privatePem)) }
const pub = publicKeyFromPem(hub.publicPem)

test('a command signed by the hub verifies, whatever the order of its args', () => {
  expect(verifyCommand(signed, pub)).toBe(true)
  expect(verifyCommand({ ...signed, args: { decision: 'd-3-9', resource: 'web' } }, pub)).toBe(true)
})

test.each([
  ['unsigned', { sig: undefined }],
  ['another target', { target: 'node-c' }],
  ['another action', { action: 'reset-vm' as const }],
  ['another resource', { args: { resource: 'db', decision: 'd-3-9' } }],
  ['a later expiry', { expiresAt: 1_800_000_000_000 }],
  ['a newer epoch', { issuer: { hub: 'hub', epoch: 4 } }],
  ['a higher seq', { seq: 8 }],
  ['garbage signature', { sig: 'AAAA' }],
])('%s does not verify', (_what, change) => {
  expect(verifyCommand({ ...signed, ...change } as Command, pub)).toBe(false)
})

test('a command signed with another key does not verify', () => {
  const forged = { ...cmd, sig: signCommand(cmd, privateKeyFromPem(other.privatePem)) }
  expect(verifyCommand(forged, pub)).toBe(false)
})

test('only Ed25519 keys are accepted', async () => {
  const { generateKeyPairSync } = await import('node:crypto')
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 })
  expect(() => publicKeyFromPem(rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString())).toThrow(
    /Ed25519/,
  )
})

test('several trusted keys (a rotation): a command signed by either verifies, by neither does not', () => {
  const keys = publicKeysFromPem(`${other.publicPem}\n${hub.publicPem}`)
  expect(keys).toHaveLength(2)
  expect(verifyCommand(signed, keys)).toBe(true)
  expect(verifyCommand(signed, [publicKeyFromPem(other.publicPem)])).toBe(false)
  expect(() => publicKeysFromPem('not a key')).toThrow('no PEM public key found')
})
