import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { runAction } from '@vigil/driver-kit'
import { monitorConformance, rejectedKeys } from '@vigil/driver-kit/conformance'
import { createLogger } from '@vigil/kit'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { checkConfigSchema, checkDriver } from './index.js'

const ctx = { log: createLogger('test', 'silent') }
let server: Server
let port = 0
let healthy = true
let hang = false

beforeAll(async () => {
  server = createServer((req, res) => {
    if (hang) return // never answers
    if (req.url === '/health') {
      res.writeHead(healthy ? 200 : 503)
      res.end(healthy ? 'status: ok' : 'status: down')
      return
    }
    res.writeHead(404).end()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  port = (server.address() as AddressInfo).port
})
afterAll(() => {
  server.closeAllConnections()
  server.close()
})

// Against the real server above: a live URL, a closed port, a server that never answers.
monitorConformance(checkDriver, async () => ({
  healthy: { kind: 'http', url: `http://127.0.0.1:${port}/health`, failuresBeforeCritical: 1 },
  broken: { kind: 'http', url: `http://127.0.0.1:${port}/missing` },
  samplesToFail: 3,
  invalid: [
    { config: { kind: 'tcp' }, key: 'port' },
    { config: { kind: 'exec', command: ['true'], colour: 'red' }, key: 'colour' },
  ],
  hanging: { kind: 'exec', command: ['sleep', '30'], timeoutMs: 60_000 },
}))

const make = (config: unknown) =>
  checkDriver.create(checkConfigSchema.parse(config), { resourceId: 'x', log: ctx.log })
const states = async (d: ReturnType<typeof make>, n: number) => {
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push((await runAction(d, 'monitor', ctx))?.state ?? 'none')
  return out
}

describe('check driver against real sockets and processes', () => {
  test('http: a 503 fails only after failuresBeforeCritical probes, and passes again after successesBeforePassing', async () => {
    const d = make({
      kind: 'http',
      url: `http://127.0.0.1:${port}/health`,
      bodyMatch: 'status: ok',
      failuresBeforeCritical: 2,
      successesBeforePassing: 2,
    })
    healthy = true
    expect(await states(d, 1)).toEqual(['running'])
    healthy = false
    expect(await states(d, 3)).toEqual(['running', 'failed', 'failed'])
    healthy = true
    expect(await states(d, 2)).toEqual(['failed', 'running'])
  })

  test('http: a server that never answers fails each probe within its timeout', async () => {
    hang = true
    try {
      const d = make({
        kind: 'http',
        url: `http://127.0.0.1:${port}/health`,
        timeoutMs: 200,
        failuresBeforeCritical: 1,
      })
      const r = await runAction(d, 'monitor', ctx)
      expect(r?.state).toBe('failed')
      expect(r?.detail).toContain('no answer within 200 ms')
    } finally {
      hang = false
    }
  })

  test('tcp: an open port passes, a closed one fails', async () => {
    expect(await states(make({ kind: 'tcp', port, failuresBeforeCritical: 1 }), 1)).toEqual(['running'])
    const closed = createServer()
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()))
    const closedPort = (closed.address() as AddressInfo).port
    await new Promise<void>((r) => closed.close(() => r()))
    const r = await runAction(
      make({ kind: 'tcp', port: closedPort, failuresBeforeCritical: 1 }),
      'monitor',
      ctx,
    )
    expect(r?.state).toBe('failed')
    expect(r?.detail).toContain('ECONNREFUSED')
  })

  // Only the hanging command gets a short limit: a loaded machine can take longer than 200 ms to
  // spawn even `true`.
  test.each([
    { command: ['true'], timeoutMs: 10_000, state: 'running', detail: 'exit 0' },
    { command: ['sh', '-c', 'exit 3'], timeoutMs: 10_000, state: 'failed', detail: 'exit 3' },
    { command: ['sleep', '5'], timeoutMs: 200, state: 'failed', detail: 'no exit within 200 ms' },
    { command: ['/no/such/script'], timeoutMs: 10_000, state: 'failed', detail: 'ENOENT' },
  ])('exec $command -> $state', async ({ command, timeoutMs, state, detail }) => {
    const r = await runAction(
      make({ kind: 'exec', command, timeoutMs, failuresBeforeCritical: 1 }),
      'monitor',
      ctx,
    )
    expect(r?.state).toBe(state)
    expect(r?.detail).toContain(detail)
  })

  test.each([
    { config: { kind: 'tcp' }, key: 'port' },
    { config: { kind: 'http', url: 'ftp://x' }, key: 'url' },
    { config: { kind: 'exec', command: [] }, key: 'command' },
    { config: { kind: 'smtp' }, key: 'kind' },
    { config: { kind: 'tcp', port: 80, colour: 'red' }, key: 'colour' },
  ])('rejects $config naming $key', ({ config, key }) => {
    expect(rejectedKeys(checkConfigSchema, config)).toContain(key)
  })

  test('a check cannot start or stop anything (monitor only)', async () => {
    await expect(runAction(make({ kind: 'tcp', port }), 'start', ctx)).rejects.toMatchObject({
      kind: 'config',
    })
  })
})
