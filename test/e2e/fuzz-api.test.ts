import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, beforeAll, expect, test } from 'vitest'
import WebSocket from 'ws'
import { eventually } from '../harness/eventually.js'
import { type HubProcess, hubKeyArgs, startHub } from '../harness/hub.js'
import { tempDir, VigilProcess, writeLines } from '../harness/processes.js'

// Property-based fuzzing of the hub's HTTP API bodies and queries and of its live feed, on a real
// hub process: no input crashes it or gets a 500, every refusal is a JSON error naming what is
// wrong, and nothing is recorded for a refused request. Fixed seed; FUZZ_RUNS for a longer run.

const params = {
  numRuns: Number(process.env.FUZZ_RUNS ?? 60),
  seed: Number(process.env.FUZZ_SEED ?? 20261122),
}
const dir = tempDir('fuzz-api')
const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  dir.remove()
})

let hub: HubProcess
beforeAll(async () => {
  const clusterFile = writeLines(dir.path, 'cluster.yaml', [
    'nodes:',
    '  - id: node-a',
    'resources:',
    '  - id: web',
    '',
  ])
  const hubFile = join(dir.path, 'hub.yaml')
  writeFileSync(hubFile, 'api: { rateLimit: { perSecond: 10000, burst: 10000 } }\n')
  hub = await startHub(dir.path, ['--config', hubFile, '--cluster-file', clusterFile])
  cleanups.push(() => hub.process.stop())
  const agent = new VigilProcess(
    ['agent', '--node', 'node-a', '--mqtt-url', hub.mqttUrl, ...hubKeyArgs(hub)],
    {
      cwd: dir.path,
    },
  )
  cleanups.push(() => agent.stop())
  await eventually('node-a known', async () => (await hub.api('/api/nodes/node-a')).status === 200)
})

const endpoints: { path: string; valid: Record<string, unknown> }[] = [
  { path: '/api/resources/web/move', valid: { node: 'node-a', for: '10m', by: 'fuzz' } },
  { path: '/api/resources/web/migrate', valid: { node: 'node-a', for: '10m', by: 'fuzz' } },
  { path: '/api/maintenance', valid: { on: true, resource: 'web', for: '1m', by: 'fuzz' } },
  { path: '/api/resources/web/cleanup', valid: { by: 'fuzz' } },
  { path: '/api/nodes/node-a/evacuate', valid: { by: 'fuzz' } },
  { path: '/api/nodes/node-a/fence', valid: { confirm: 'node-a', by: 'fuzz' } },
  { path: '/api/fence/confirm', valid: { node: 'node-a', by: 'fuzz' } },
]

/** A body: random JSON, a valid body with one field changed or added, or text that is not JSON. */
const bodyFor = (valid: Record<string, unknown>) =>
  fc.oneof(
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc
      .tuple(fc.constantFrom(...Object.keys(valid), 'extra'), fc.jsonValue())
      .map(([k, v]) => JSON.stringify({ ...valid, [k]: v })),
    fc.string({ maxLength: 300 }),
  )

/** Operator actions recorded so far (what a refused request must not add to). */
const eventCount = async () =>
  (await hub.api<{ events: { source: string }[] }>('/api/events?limit=1000')).body.events.filter(
    (e) => e.source === 'operator',
  ).length

test.each(endpoints)(
  'POST $path: any body is accepted or refused with a JSON error, never a 500',
  async ({ path, valid }) => {
    const seen = new Set<number>()
    await fc.assert(
      fc.asyncProperty(bodyFor(valid), async (body) => {
        const before = await eventCount()
        const res = await fetch(new URL(path, hub.httpUrl), {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        })
        seen.add(res.status)
        expect([202, 200, 400, 404, 409]).toContain(res.status)
        const json = (await res.json()) as { error?: { code: string; message: string; field?: string } }
        if (res.status >= 400) {
          expect(json.error?.code).toMatch(/^(invalid|not_found|conflict)$/)
          expect(json.error?.message.length).toBeGreaterThan(0)
          if (res.status === 400) expect(await eventCount()).toBe(before) // nothing recorded
        }
      }),
      params,
    )
    expect(seen.has(400)).toBe(true)
  },
)

test('queries: any parameters are answered or refused naming the parameter', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom('/api/decisions', '/api/events', '/api/audit'),
      fc.dictionary(
        fc.constantFrom('node', 'resource', 'limit', 'after', 'who', 'correlation', 'x'),
        fc.string({ maxLength: 40 }),
      ),
      async (path, query) => {
        const res = await fetch(`${hub.httpUrl}${path}?${new URLSearchParams(query)}`)
        expect([200, 400]).toContain(res.status)
        const json = (await res.json()) as { error?: { field?: string; message: string } }
        if (res.status === 400) expect(json.error?.message).toMatch(/^\w*: /)
      },
    ),
    params,
  )
})

test('the live feed ignores whatever a client sends, and oversized frames only cost that client', async () => {
  const liveUrl = `${hub.httpUrl.replace('http', 'ws')}/live`
  const hello = () =>
    new Promise<string>((resolve, reject) => {
      const ws = new WebSocket(liveUrl)
      ws.once('message', (data) => {
        resolve(JSON.parse(String(data)).type)
        ws.close()
      })
      ws.once('error', reject)
    })
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.oneof(
          fc.string({ maxLength: 200 }),
          fc.uint8Array({ maxLength: 200 }),
          fc.uint8Array({ minLength: 5000, maxLength: 6000 }),
        ),
        {
          maxLength: 8,
        },
      ),
      async (frames) => {
        const ws = new WebSocket(liveUrl)
        await new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve())
          ws.once('error', reject)
        })
        const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
        for (const f of frames) if (ws.readyState === ws.OPEN) ws.send(f)
        ws.close()
        const code = await closed
        expect([1000, 1005, 1006, 1009]).toContain(code) // 1009: a frame over the 4 KiB limit
      },
    ),
    { ...params, numRuns: Math.min(params.numRuns, 30) },
  )
  expect(await hello()).toBe('hello')
  expect((await fetch(`${hub.httpUrl}/healthz`)).status).toBe(200)
})
