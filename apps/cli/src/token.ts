import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { isValidName } from '@vigil/protocol'
import { parse, stringify } from 'yaml'

export const TOKEN_ROLES = ['viewer', 'operator', 'admin'] as const

/**
 * The two files of secrets' digests the hub reads: API tokens (`tokens`, keyed by name, with a
 * role) and agents' broker passwords (`agents`, keyed by node). Same rules for both: the secret is
 * shown once, only its SHA-256 is written, the file is rewritten whole and owner-only.
 */
const KINDS = {
  tokens: { key: 'name', prefix: 'vigil_', header: 'Vigil API tokens (vigil token issue / revoke)' },
  agents: {
    key: 'node',
    prefix: '',
    header: "Vigil agents' broker passwords (vigil credentials issue / revoke)",
  },
} as const
type Kind = keyof typeof KINDS
type Entry = Record<string, string>

function read(file: string, kind: Kind): Entry[] {
  if (!existsSync(file)) return []
  const doc = parse(readFileSync(file, 'utf8')) as Record<string, Entry[] | undefined> | null
  return doc?.[kind] ?? []
}

function write(file: string, kind: Kind, entries: Entry[]): void {
  const tmp = `${file}.tmp-${process.pid}`
  writeFileSync(
    tmp,
    `# ${KINDS[kind].header}: SHA-256 digests only. The hub re-reads this file.\n${stringify({ [kind]: entries })}`,
    { mode: 0o600 },
  )
  renameSync(tmp, file)
}

/** Adds a secret for `id` and returns it: the only time it is shown. */
export function issueSecret(file: string, kind: Kind, id: string, extra: Entry = {}): string {
  const key = KINDS[kind].key
  const entries = read(file, kind)
  if (entries.some((e) => e[key] === id))
    throw new Error(`${file} already has an entry for "${id}" (revoke it first)`)
  const secret = `${KINDS[kind].prefix}${randomBytes(32).toString('base64url')}`
  entries.push({ [key]: id, ...extra, sha256: createHash('sha256').update(secret).digest('hex') })
  write(file, kind, entries)
  return secret
}

/** Removes `id`'s entry; the hub stops accepting its secret within a second or two. */
export function revokeSecret(file: string, kind: Kind, id: string): boolean {
  const key = KINDS[kind].key
  const entries = read(file, kind)
  const kept = entries.filter((e) => e[key] !== id)
  if (kept.length === entries.length) return false
  write(file, kind, kept)
  return true
}

export function issueToken(file: string, name: string, role: string): string {
  if (!(TOKEN_ROLES as readonly string[]).includes(role))
    throw new Error(`--role must be one of ${TOKEN_ROLES.join(', ')}`)
  if (!/^[A-Za-z0-9._@-]{1,64}$/.test(name)) throw new Error('name: letters, digits and . _ @ - (at most 64)')
  return issueSecret(file, 'tokens', name, { role })
}

export function issueAgentPassword(file: string, node: string): string {
  if (!isValidName(node)) throw new Error(`"${node}" is not a valid node name`)
  return issueSecret(file, 'agents', node)
}
