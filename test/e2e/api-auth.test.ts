import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import WebSocket from 'ws'
import { eventually } from '../harness/eventually.js'
import { type HubProcess, hubKeyArgs, startHub } from '../harness/hub.js'
import { runVigil, tempDir, VigilProcess, writeLines } from '../harness/processes.js'

// API roles on a real hub process: tokens issued with the CLI, a hub that lets nobody in without
// one, every role tried on every kind of request, the audit log, rate limiting, revocation without
// a restart, and the live feed.

const dir = tempDir('api-auth')
const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  dir.remove()
})

const tokensFile = join(dir.path, 'tokens.yaml')
const tokens: Record<string, string> = {}
let hub: HubProcess

beforeAll(async () => {
  for (const [name, role] of [
    ['vera', 'viewer'],
    ['otto', 'operator'],
    ['ada', 'admin'],
  ]) {
    const issued = await runVigil([
      'token',
      'issue',
      name as string,
      '--role',
      role as string,
      '--file',
      tokensFile,
    ])
    expect(issued.code, issued.stderr).toBe(0)
    tokens[name as string] = issued.stdout.trim()
  }
  const clusterFile = writeLines(dir.path, 'cluster.yaml', [
    'nodes:',
    '  - id: node-a',
    '    fencing: [{ devices: [people] }]',
    'resources:',
    '  - id: web',
    '',
  ])
  const hubFile = join(dir.path, 'hub.yaml')
  writeFileSync(
    hubFile,
    [
      `api: { tokensFile: ${tokensFile}, anonymous: none, rateLimit: { perSecond: 1, burst: 5 } }`,
      'fencing:',
      '  devices:',
      '    - { id: people, driver: meatware, hosts: { node-a: [node-a] } }',
      '',
    ].join('\n'),
  )
  hub = await startHub(dir.path, ['--config', hubFile, '--cluster-file', clusterFile])
  cleanups.push(() => hub.process.stop())
  const agent = new VigilProcess(
    ['agent', '--node', 'node-a', '--mqtt-url', hub.mqttUrl, ...hubKeyArgs(hub)],
    {
      cwd: dir.path,
    },
  )
  cleanups.push(() => agent.stop())
  await eventually(
    'node-a known',
    async () => (await call('GET', '/api/nodes/node-a', 'vera')).status === 200,
  )
})

async function call(method: string, path: string, who?: string, body?: unknown) {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (who) headers.authorization = `Bearer ${tokens[who] ?? who}`
  const res = await fetch(new URL(path, hub.httpUrl), {
    method,
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  return { status: res.status, body: (await res.json().catch(() => null)) as Record<string, unknown> }
}

describe('API roles', () => {
  test.each([
    // [who, method, path, body, expected status]
    [undefined, 'GET', '/api/nodes', undefined, 401],
    ['not-a-token', 'GET', '/api/nodes', undefined, 401],
    [undefined, 'GET', '/healthz', undefined, 200],
    ['vera', 'GET', '/api/nodes', undefined, 200],
    ['vera', 'GET', '/metrics', undefined, 200],
    ['vera', 'GET', '/api/audit', undefined, 403],
    ['vera', 'POST', '/api/maintenance', { on: true, resource: 'web', for: '1m' }, 403],
    ['otto', 'POST', '/api/maintenance', { on: true, resource: 'web', for: '1m' }, 202],
    ['otto', 'POST', '/api/nodes/node-a/fence', { confirm: 'node-a' }, 403],
    ['otto', 'POST', '/api/fence/confirm', { node: 'node-a', by: 'otto' }, 403],
    ['otto', 'GET', '/api/audit', undefined, 200],
    ['ada', 'POST', '/api/maintenance', { on: false, resource: 'web' }, 202],
  ])('%s %s %s %j -> %i', async (who, method, path, body, expected) => {
    expect((await call(method, path, who, body)).status).toBe(expected)
  })

  test('the author of an action is the token, whatever the body claims', async () => {
    expect((await call('POST', '/api/resources/web/cleanup', 'otto', { by: 'mallory' })).status).toBe(202)
    const events = (await call('GET', '/api/events?limit=20', 'vera')).body.events as {
      kind: string
      attrs: { by: string }
    }[]
    expect(events.find((e) => e.kind === 'operator.cleanup')?.attrs.by).toBe('otto')
  })

  test('the audit log records who, what, from where and the result, refusals included, and cannot be rewritten', async () => {
    const audit = await runVigil(['audit', '--json', '--hub', hub.httpUrl], {
      VIGIL_TOKEN: tokens.otto as string,
    })
    expect(audit.code, audit.stderr).toBe(0)
    const rows = JSON.parse(audit.stdout) as { who: string; path: string; status: number; source: string }[]
    expect(rows).toContainEqual(
      expect.objectContaining({ who: 'vera', path: '/api/maintenance', status: 403, source: '127.0.0.1' }),
    )
    expect(rows).toContainEqual(
      expect.objectContaining({ who: 'otto', path: '/api/maintenance', status: 202 }),
    )
    expect(rows).toContainEqual(
      expect.objectContaining({ who: 'invalid-token', path: '/api/nodes', status: 401 }),
    )
    const table = await runVigil(['audit', '--who', 'otto', '--hub', hub.httpUrl], {
      VIGIL_TOKEN: tokens.otto as string,
    })
    expect(table.stdout).toMatch(/otto\s+operator\s+127\.0\.0\.1\s+POST \/api\/maintenance\s+202/)
    // Append-only, enforced by the database itself.
    const db = new Database(hub.dbPath)
    expect(() => db.prepare('DELETE FROM audit').run()).toThrow('the audit log is append-only')
    expect(() => db.prepare("UPDATE audit SET who = 'nobody'").run()).toThrow('the audit log is append-only')
    db.close()
  })

  test('changes are rate limited per token', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 8; i++)
      statuses.push((await call('POST', '/api/resources/web/cleanup', 'ada', {})).status)
    expect(statuses.filter((s) => s === 202).length).toBeGreaterThanOrEqual(4) // ada spent one earlier
    expect(statuses).toContain(429)
    // Reads are not limited.
    expect((await call('GET', '/api/nodes', 'ada')).status).toBe(200)
  })

  test('the live feed wants a viewer token too (header or ?token= for browsers)', async () => {
    const liveUrl = hub.httpUrl.replace('http', 'ws')
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${liveUrl}/live`)
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
      ws.on('open', () => resolve(101))
    })
    expect(refused).toBe(401)
    const hello = await new Promise<{ type: string }>((resolve, reject) => {
      const ws = new WebSocket(`${liveUrl}/live?token=${encodeURIComponent(tokens.vera as string)}`)
      ws.on('message', (data) => {
        resolve(JSON.parse(String(data)))
        ws.close()
      })
      ws.on('error', reject)
    })
    expect(hello.type).toBe('hello')
  })

  test('a revoked token stops working without a restart', async () => {
    expect((await call('GET', '/api/nodes', 'vera')).status).toBe(200)
    const revoked = await runVigil(['token', 'revoke', 'vera', '--file', tokensFile])
    expect(revoked.code).toBe(0)
    await eventually('vera refused', async () => (await call('GET', '/api/nodes', 'vera')).status === 401)
    expect((await call('GET', '/api/nodes', 'otto')).status).toBe(200)
  })
})
