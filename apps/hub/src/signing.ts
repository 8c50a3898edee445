import { createPublicKey, type KeyObject } from 'node:crypto'
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { type Logger, readSecretFile, VigilError } from '@vigil/kit'
import { generateSigningKey, privateKeyFromPem } from '@vigil/protocol'
import { WatchedFile } from './auth.js'

export interface SigningKey {
  /** The key to sign with now: with `signing.keyFile`, re-read when the file changes (rotation). */
  privateKey(): KeyObject
  publicPem(): string
  /** Where agents can be pointed for `commands.hubPublicKeyFile`. */
  publicKeyFile: string | null
}

/**
 * The hub's command signing key (Ed25519). From `signing.keyFile` when set; otherwise created on
 * first start beside the database (`<db>.key.pem`, mode 0600) with its public half in
 * `<db>.pub.pem`, so a one-machine demo signs from the first command. Agents verify with the public
 * half (their `commands.hubPublicKeyFile`).
 */
export function loadSigningKey(keyFile: string | undefined, storePath: string, log: Logger): SigningKey {
  const pair = (privateKey: KeyObject) => ({
    privateKey,
    publicPem: createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString(),
  })
  try {
    if (keyFile) {
      // Rotation without a restart: put the new key in this file (agents already trusting both
      // public keys); commands are signed with it from the next one on.
      const watched = new WatchedFile(keyFile, 'signing.keyFile', log, (file) =>
        pair(privateKeyFromPem(readSecretFile(file, 'signing.keyFile'))),
      )
      return {
        privateKey: () => watched.current().privateKey,
        publicPem: () => watched.current().publicPem,
        publicKeyFile: null,
      }
    }
    const privateFile = `${storePath}.key.pem`
    const publicFile = `${storePath}.pub.pem`
    if (!existsSync(privateFile)) {
      const pair = generateSigningKey()
      writeFileSync(privateFile, pair.privatePem, { mode: 0o600 })
      chmodSync(privateFile, 0o600)
      writeFileSync(publicFile, pair.publicPem)
    }
    const fixed = pair(privateKeyFromPem(readFileSync(privateFile, 'utf8')))
    if (!existsSync(publicFile)) writeFileSync(publicFile, fixed.publicPem)
    return { privateKey: () => fixed.privateKey, publicPem: () => fixed.publicPem, publicKeyFile: publicFile }
  } catch (err) {
    if (err instanceof VigilError) throw err
    const file = keyFile ?? `${storePath}.key.pem`
    const what = keyFile ? 'signing.keyFile' : 'the signing key beside store.path'
    const why = /DECODER|PEM|asn1|key/i.test((err as Error).message)
      ? 'is not a PEM Ed25519 private key'
      : `cannot be read or written: ${(err as Error).message}`
    throw new VigilError('config_invalid', `${what}: ${file} ${why}`, { cause: err })
  }
}
