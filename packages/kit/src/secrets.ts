import { readFileSync } from 'node:fs'
import { VigilError } from './errors.js'

/** Reads a file a config key points to (a CA certificate, a key); an error names the file and key. */
export function readConfigFile(file: string, key: string): Buffer {
  try {
    return readFileSync(file)
  } catch (cause) {
    throw new VigilError('config_unreadable', `${key}: cannot read ${file} (${(cause as Error).message})`, {
      cause,
    })
  }
}

/**
 * Reads a secret (a password) from a file, trimming the trailing newline. The error names the file
 * but never the content; callers must not log the value.
 */
export function readSecretFile(file: string, key: string): string {
  return readConfigFile(file, key).toString('utf8').trim()
}

/**
 * The credentials an MQTT client needs from a config's `mqtt` section: the password from its file,
 * else from the environment; the CA certificate from its file.
 */
export function brokerCredentials(
  mqtt: {
    username?: string | undefined
    passwordFile?: string | undefined
    caFile?: string | undefined
    certFile?: string | undefined
    keyFile?: string | undefined
  },
  envPassword: string | undefined,
): { username?: string; password?: string; ca?: Buffer; cert?: Buffer; key?: Buffer } {
  const out: { username?: string; password?: string; ca?: Buffer; cert?: Buffer; key?: Buffer } = {}
  if (mqtt.username) out.username = mqtt.username
  const password = mqtt.passwordFile ? readSecretFile(mqtt.passwordFile, 'mqtt.passwordFile') : envPassword
  if (password) out.password = password
  if (mqtt.caFile) out.ca = readConfigFile(mqtt.caFile, 'mqtt.caFile')
  if (mqtt.certFile) out.cert = readConfigFile(mqtt.certFile, 'mqtt.certFile')
  if (mqtt.keyFile) out.key = readConfigFile(mqtt.keyFile, 'mqtt.keyFile')
  return out
}
