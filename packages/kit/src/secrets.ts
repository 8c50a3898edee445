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
