import { createPublicKey, type KeyObject } from 'node:crypto'
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { readSecretFile, VigilError } from '@vigil/kit'
import { generateSigningKey, privateKeyFromPem } from '@vigil/protocol'

export interface SigningKey {
  privateKey: KeyObject
  publicPem: string
  /** Where agents can be pointed for `commands.hubPublicKeyFile`. */
  publicKeyFile: string | null
}

/**
 * The hub's command signing key (Ed25519). From `signing.keyFile` when set; otherwise created on
 * first start beside the database (`<db>.key.pem`, mode 0600) with its public half in
 * `<db>.pub.pem`, so a one-machine demo signs from the first command. Agents verify with the public
 * half (their `commands.hubPublicKeyFile`).
 */
export function loadSigningKey(keyFile: string | undefined, storePath: string): SigningKey {
  try {
    if (keyFile) {
      const privateKey = privateKeyFromPem(readSecretFile(keyFile, 'signing.keyFile'))
      const publicPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString()
      return { privateKey, publicPem, publicKeyFile: null }
    }
    const privateFile = `${storePath}.key.pem`
    const publicFile = `${storePath}.pub.pem`
    if (!existsSync(privateFile)) {
      const pair = generateSigningKey()
      writeFileSync(privateFile, pair.privatePem, { mode: 0o600 })
      chmodSync(privateFile, 0o600)
      writeFileSync(publicFile, pair.publicPem)
    }
    const privateKey = privateKeyFromPem(readFileSync(privateFile, 'utf8'))
    const publicPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString()
    if (!existsSync(publicFile)) writeFileSync(publicFile, publicPem)
    return { privateKey, publicPem, publicKeyFile: publicFile }
  } catch (err) {
    if (err instanceof VigilError) throw err
    throw new VigilError('config_invalid', `signing key: ${(err as Error).message}`, { cause: err })
  }
}
