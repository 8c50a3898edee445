import { createHash, timingSafeEqual } from 'node:crypto'
import { statSync } from 'node:fs'
import { ConfigError, type Logger, loadConfigFile } from '@vigil/kit'
import { z } from 'zod'

export const ROLES = ['viewer', 'operator', 'admin'] as const
export type Role = (typeof ROLES)[number]
const RANK: Record<Role, number> = { viewer: 1, operator: 2, admin: 3 }

export const apiSchema = z
  .strictObject({
    /**
     * Bearer tokens and their roles (`vigil token issue` writes it; only SHA-256 digests are kept).
     * Re-read when it changes: tokens are added and revoked without a restart.
     */
    tokensFile: z.string().min(1).optional(),
    /** With tokens configured, what a request without one may do: read (status page, metrics) or nothing. */
    anonymous: z.enum(['viewer', 'none']).default('viewer'),
    /** Changes (POST) per client: a token bucket per token name, or per address when anonymous. */
    rateLimit: z
      .strictObject({
        perSecond: z.number().positive().max(10_000).default(5),
        burst: z.number().int().min(1).max(10_000).default(20),
      })
      .prefault({}),
  })
  .prefault({})
export type ApiConfig = z.infer<typeof apiSchema>

export const tokensFileSchema = z.strictObject({
  tokens: z
    .array(
      z.strictObject({
        /** Who: recorded in the audit log and as the author of operator actions. */
        name: z.string().regex(/^[A-Za-z0-9._@-]{1,64}$/, 'letters, digits and . _ @ - (at most 64)'),
        role: z.enum(ROLES),
        /** Hex SHA-256 of the token; the token itself is never stored. */
        sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits'),
      }),
    )
    .default([]),
})

export interface Identity {
  /** The token's name, or `anonymous`. */
  name: string
  role: Role | null
}

/**
 * Who is asking. Compares the SHA-256 of the presented token with every stored digest in
 * constant time (all of them, whichever matches), so timing tells nothing about the tokens.
 */
export class TokenStore {
  private readonly file: WatchedFile<{ name: string; role: Role; digest: Buffer }[]> | null

  constructor(
    private readonly config: ApiConfig,
    log: Logger,
  ) {
    this.file = config.tokensFile
      ? new WatchedFile(config.tokensFile, 'api.tokensFile', log, (file) =>
          loadConfigFile(tokensFileSchema, file).tokens.map((t) => ({
            name: t.name,
            role: t.role,
            digest: Buffer.from(t.sha256, 'hex'),
          })),
        )
      : null
  }

  /** The identity behind an Authorization header value (or a bare token); null if it matches none. */
  identify(presented: string | undefined): Identity | null {
    if (presented === undefined || presented === '') {
      // No tokens configured: an open API (the demo; the hub warns at start). Else as configured.
      if (!this.enabled) return { name: 'anonymous', role: 'admin' }
      return { name: 'anonymous', role: this.config.anonymous === 'viewer' ? 'viewer' : null }
    }
    const token = presented.startsWith('Bearer ') ? presented.slice(7).trim() : presented.trim()
    const found = matchDigest(this.file?.current() ?? [], token)
    return found ? { name: found.name, role: found.role } : null
  }

  /** Whether tokens are configured at all (without them, every change is anonymous). */
  get enabled(): boolean {
    return this.config.tokensFile !== undefined
  }
}

/**
 * The entry whose digest is the SHA-256 of `secret`, comparing with every entry in constant time
 * (whichever matches), so that timing tells nothing about the stored secrets.
 */
export function matchDigest<T extends { digest: Buffer }>(entries: T[], secret: string): T | null {
  const digest = createHash('sha256').update(secret).digest()
  let found: T | null = null
  for (const e of entries) if (timingSafeEqual(e.digest, digest) && !found) found = e
  return found
}

/**
 * A file of secrets' digests, parsed at start (errors are fatal: a bad file must not start) and
 * re-read when it changes, at most once a second; a bad or missing file later keeps the last good
 * content rather than locking everyone out.
 */
export class WatchedFile<T> {
  private value: T
  private mtime: number
  private checkedAt = 0

  constructor(
    private readonly path: string,
    private readonly key: string,
    private readonly log: Logger,
    private readonly parse: (file: string) => T,
  ) {
    try {
      this.mtime = statSync(path).mtimeMs
    } catch (err) {
      throw new ConfigError([{ key, message: `cannot read ${path}: ${(err as Error).message}` }])
    }
    this.value = parse(path)
  }

  current(): T {
    const now = Date.now()
    if (now - this.checkedAt < 1000) return this.value
    this.checkedAt = now
    try {
      const mtime = statSync(this.path).mtimeMs
      if (mtime !== this.mtime) {
        this.mtime = mtime // a bad version is reported once, not every second
        this.value = this.parse(this.path)
        this.log.info({ file: this.path }, `${this.key} reloaded`)
      }
    } catch (err) {
      this.log.error(
        { err, file: this.path },
        `${this.key} unreadable or invalid: keeping the previous content`,
      )
    }
    return this.value
  }
}

/** A token for `vigil token issue`: 32 random bytes, prefixed so that secret scanners spot it. */
export function digestOf(token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

/**
 * The role a request needs: null for liveness probes; viewer to read; operator to act on
 * resources and nodes (move, maintenance, cleanup, evacuate, ping); admin for anything that fences
 * (fence on request, confirm a node off) or reads the audit log's full detail.
 */
export function requiredRole(method: string, path: string): Role | null {
  if (path === '/healthz' || path === '/readyz') return null
  // The status page's shell holds no data (it reads the API with the token its user signs in with).
  if (
    (method === 'GET' || method === 'HEAD') &&
    (path === '/' || path === '/status.js' || path === '/status.css')
  )
    return null
  if (method === 'GET' || method === 'HEAD') return path.startsWith('/api/audit') ? 'operator' : 'viewer'
  // A fence powers a host off; a cluster file reloaded can move everything: an admin's.
  if (
    /^\/api\/nodes\/[^/]+\/fence$/.test(path) ||
    path === '/api/fence/confirm' ||
    path === '/api/cluster/reload'
  )
    return 'admin'
  return 'operator'
}

export function allows(role: Role | null, needed: Role): boolean {
  return role !== null && RANK[role] >= RANK[needed]
}

/** A token bucket per key: `take` says how long to wait (0: go ahead). */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>()

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {}

  take(key: string, nowMs: number): number {
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: nowMs }
    b.tokens = Math.min(this.burst, b.tokens + ((nowMs - b.at) / 1000) * this.perSecond)
    b.at = nowMs
    this.buckets.set(key, b)
    if (this.buckets.size > 10_000) this.buckets.delete(this.buckets.keys().next().value as string)
    if (b.tokens >= 1) {
      b.tokens -= 1
      return 0
    }
    return Math.ceil(((1 - b.tokens) / this.perSecond) * 1000)
  }
}
