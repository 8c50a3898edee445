import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { parse, stringify } from 'yaml'

export const TOKEN_ROLES = ['viewer', 'operator', 'admin'] as const

interface TokenEntry {
  name: string
  role: string
  sha256: string
}

function read(file: string): TokenEntry[] {
  if (!existsSync(file)) return []
  const doc = parse(readFileSync(file, 'utf8')) as { tokens?: TokenEntry[] } | null
  return doc?.tokens ?? []
}

/** Rewrites the file whole (temp file, then rename): the hub never reads half of it. Owner-only. */
function write(file: string, tokens: TokenEntry[]): void {
  const tmp = `${file}.tmp-${process.pid}`
  writeFileSync(
    tmp,
    `# Vigil API tokens: SHA-256 digests only (vigil token issue / revoke). The hub re-reads this file.\n${stringify({ tokens })}`,
    { mode: 0o600 },
  )
  renameSync(tmp, file)
}

/**
 * Adds a token for `name` to the hub's tokens file and returns it: the only time it is shown. The
 * file keeps its SHA-256 only, so a copy of the file lets nobody in.
 */
export function issueToken(file: string, name: string, role: string): string {
  if (!(TOKEN_ROLES as readonly string[]).includes(role))
    throw new Error(`--role must be one of ${TOKEN_ROLES.join(', ')}`)
  if (!/^[A-Za-z0-9._@-]{1,64}$/.test(name)) throw new Error('name: letters, digits and . _ @ - (at most 64)')
  const tokens = read(file)
  if (tokens.some((t) => t.name === name))
    throw new Error(`${file} already has a token named "${name}" (revoke it first)`)
  const token = `vigil_${randomBytes(32).toString('base64url')}`
  tokens.push({ name, role, sha256: createHash('sha256').update(token).digest('hex') })
  write(file, tokens)
  return token
}

/** Removes `name`'s token; the hub stops accepting it within a second or two. */
export function revokeToken(file: string, name: string): boolean {
  const tokens = read(file)
  const kept = tokens.filter((t) => t.name !== name)
  if (kept.length === tokens.length) return false
  write(file, kept)
  return true
}
