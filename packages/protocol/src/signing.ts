import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto'
import type { Command } from './schemas.js'

/**
 * The bytes a command's signature covers: every field but `sig`, in a fixed order, args sorted by
 * key, so the same command always yields the same bytes whatever the JSON key order on the wire.
 */
export function commandSigningBytes(cmd: Omit<Command, 'sig'>): Buffer {
  const args = Object.entries(cmd.args).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return Buffer.from(
    JSON.stringify([
      'vigil-command-v1',
      cmd.v,
      cmd.id,
      cmd.issuer.hub,
      cmd.issuer.epoch,
      cmd.seq,
      cmd.issuedAt,
      cmd.expiresAt,
      cmd.target,
      cmd.action,
      args,
    ]),
  )
}

/** Ed25519 signature of a command (base64), by the hub. */
export function signCommand(cmd: Omit<Command, 'sig'>, privateKey: KeyObject): string {
  return sign(null, commandSigningBytes(cmd), privateKey).toString('base64')
}

/**
 * True only for a command signed by the holder of one of the keys' private halves, unchanged
 * since. Several keys: during a key rotation agents trust the old and the new hub key.
 */
export function verifyCommand(cmd: Command, publicKeys: KeyObject | readonly KeyObject[]): boolean {
  if (!cmd.sig) return false
  const bytes = commandSigningBytes(cmd)
  const sig = Buffer.from(cmd.sig, 'base64')
  return (Array.isArray(publicKeys) ? publicKeys : [publicKeys]).some((key) => {
    try {
      return verify(null, bytes, key, sig)
    } catch {
      return false
    }
  })
}

export function generateSigningKey(): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  }
}

export function privateKeyFromPem(pem: string): KeyObject {
  const key = createPrivateKey(pem)
  if (key.asymmetricKeyType !== 'ed25519')
    throw new Error(`an Ed25519 key is required, not ${key.asymmetricKeyType}`)
  return key
}

/** Every public key of a PEM file holding one or several (old and new during a rotation). */
export function publicKeysFromPem(text: string): KeyObject[] {
  const blocks = text.match(/-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/g) ?? []
  if (blocks.length === 0) throw new Error('no PEM public key found')
  return blocks.map(publicKeyFromPem)
}

export function publicKeyFromPem(pem: string): KeyObject {
  const key = createPublicKey(pem)
  if (key.asymmetricKeyType !== 'ed25519')
    throw new Error(`an Ed25519 key is required, not ${key.asymmetricKeyType}`)
  return key
}
