import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger } from '@vigil/kit'
import { afterEach, expect, test } from 'vitest'
import { allows, apiSchema, digestOf, RateLimiter, requiredRole, TokenStore } from './auth.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})
const log = createLogger('test', 'silent')

test.each([
  ['GET', '/healthz', null],
  ['GET', '/readyz', null],
  ['GET', '/', null],
  ['GET', '/status.js', null],
  ['POST', '/', 'operator'],
  ['GET', '/metrics', 'viewer'],
  ['GET', '/api/nodes', 'viewer'],
  ['GET', '/api/audit', 'operator'],
  ['POST', '/api/nodes/n1/ping', 'operator'],
  ['POST', '/api/resources/web/move', 'operator'],
  ['POST', '/api/maintenance', 'operator'],
  ['POST', '/api/nodes/n1/fence', 'admin'],
  ['POST', '/api/fence/confirm', 'admin'],
  ['POST', '/api/cluster/reload', 'admin'],
  ['DELETE', '/api/nodes', 'operator'],
])('%s %s needs %s', (method, path, role) => {
  expect(requiredRole(method, path)).toBe(role)
})

test.each([
  ['viewer', 'viewer', true],
  ['viewer', 'operator', false],
  ['operator', 'operator', true],
  ['operator', 'admin', false],
  ['admin', 'operator', true],
  [null, 'viewer', false],
] as const)('role %s for %s: %s', (role, needed, ok) => {
  expect(allows(role, needed)).toBe(ok)
})

test('tokens: only the digest is stored; a wrong or missing token is told apart; the file is re-read', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-auth-'))
  dirs.push(dir)
  const file = join(dir, 'tokens.yaml')
  writeFileSync(file, `tokens:\n  - { name: alice, role: admin, sha256: ${digestOf('secret-a')} }\n`)
  const store = new TokenStore(apiSchema.parse({ tokensFile: file, anonymous: 'none' }), log)
  expect(store.identify('Bearer secret-a')).toEqual({ name: 'alice', role: 'admin' })
  expect(store.identify('Bearer secret-b')).toBeNull()
  expect(store.identify(undefined)).toEqual({ name: 'anonymous', role: null })
  // Revoke alice, add bob: seen without a restart (the store re-reads at most every second).
  writeFileSync(file, `tokens:\n  - { name: bob, role: viewer, sha256: ${digestOf('secret-b')} }\n`)
  await new Promise((r) => setTimeout(r, 1100))
  expect(store.identify('Bearer secret-b')).toEqual({ name: 'bob', role: 'viewer' })
  expect(store.identify('Bearer secret-a')).toBeNull()
  // A broken file keeps the last good tokens rather than locking everyone out.
  writeFileSync(file, 'tokens: [{ name: "bad name!", role: root }]\n')
  await new Promise((r) => setTimeout(r, 1100))
  expect(store.identify('Bearer secret-b')).toEqual({ name: 'bob', role: 'viewer' })
})

test('without a tokens file the API is open (the demo); with one, anonymous is what the config says', () => {
  expect(new TokenStore(apiSchema.parse({}), log).identify(undefined)).toEqual({
    name: 'anonymous',
    role: 'admin',
  })
  expect(new TokenStore(apiSchema.parse({}), log).identify('Bearer x')).toBeNull()
})

test('a tokens file with a bad entry is refused at start, naming the key', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-auth-'))
  dirs.push(dir)
  const file = join(dir, 'tokens.yaml')
  writeFileSync(file, 'tokens:\n  - { name: alice, role: root, sha256: abc }\n')
  expect(() => new TokenStore(apiSchema.parse({ tokensFile: file }), log)).toThrow(/tokens\.0\.role/)
})

test('rate limit: a burst, then one per 1/rate seconds', () => {
  const limiter = new RateLimiter(2, 3)
  expect([0, 0, 0].map(() => limiter.take('k', 1000))).toEqual([0, 0, 0])
  expect(limiter.take('k', 1000)).toBe(500)
  expect(limiter.take('other', 1000)).toBe(0) // per key
  expect(limiter.take('k', 1500)).toBe(0)
  expect(limiter.take('k', 1500)).toBe(500)
})
