import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, createLogger } from '@vigil/kit'
import { nodeTopic } from '@vigil/protocol'
import mqtt from 'mqtt'
import { afterEach, expect, test, vi } from 'vitest'
import { startBrokerThread } from './broker-thread.js'

const WORKER = new URL('../dist/broker-worker.js', import.meta.url)
const log = createLogger('test', 'silent')
const anonymous = { cluster: 'c', allowAnonymous: true, log }
const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

test("an agent's messages reach the hub's subscription in order, byte for byte, and the hub's commands reach the agent", async () => {
  const broker = await startBrokerThread({ host: '127.0.0.1', port: 0 }, anonymous, WORKER)
  const got: [string, string][] = []
  await broker.subscribe('vigil/v1/c/node/+/hb', (topic, payload) => {
    got.push([topic, payload.toString('utf8')])
  })
  broker.markReady()
  const agent = await mqtt.connectAsync(broker.url, { clientId: 'a1', reconnectPeriod: 0 })
  const commands: string[] = []
  agent.on('message', (_topic, payload) => commands.push(payload.toString()))
  await agent.subscribeAsync(nodeTopic('c', 'a1', 'cmd'), { qos: 1 })
  const sent = Array.from({ length: 300 }, (_, i) => JSON.stringify({ seq: i, pad: 'é'.repeat(i % 7) }))
  for (const p of sent) agent.publish(nodeTopic('c', 'a1', 'hb'), p)
  // Refused by the broker's rules (another cluster): never reaches the hub.
  agent.publish(nodeTopic('other', 'a1', 'hb'), '{}')
  await vi.waitFor(() => expect(got).toHaveLength(300))
  expect(got.map(([, p]) => p)).toEqual(sent)
  expect(new Set(got.map(([t]) => t))).toEqual(new Set([nodeTopic('c', 'a1', 'hb')]))
  await broker.publish(nodeTopic('c', 'a1', 'cmd'), '{"do":"it"}')
  await vi.waitFor(() => expect(commands).toEqual(['{"do":"it"}']))
  await vi.waitFor(() => expect(broker.clientCount()).toBe(1), { timeout: 3000 })
  await agent.endAsync()
  await broker.close()
  const outcome = await Promise.race([broker.died, new Promise((r) => setTimeout(() => r('alive'), 200))])
  expect(outcome).toBe('alive') // closed by the hub: not a death
})

test('a port in use fails the start as it would in-process, naming the cause', async () => {
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  const port = (taken.address() as { port: number }).port
  // What the hub's start-up report reads: "cannot listen on 127.0.0.1:<port>: address already in use".
  await expect(startBrokerThread({ host: '127.0.0.1', port }, anonymous, WORKER)).rejects.toMatchObject({
    code: 'EADDRINUSE',
    address: '127.0.0.1',
    port,
    syscall: 'listen',
  })
  taken.close()
})

test('a bad credentials file fails the start as a config error naming its key', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-broker-thread-'))
  dirs.push(dir)
  const file = join(dir, 'credentials.yaml')
  writeFileSync(file, 'agents:\n  - node: a1\n    sha256: not-hex\n')
  const started = startBrokerThread(
    { host: '127.0.0.1', port: 0 },
    { cluster: 'c', allowAnonymous: false, credentialsFile: file, log },
    WORKER,
  )
  await expect(started).rejects.toBeInstanceOf(ConfigError)
  await expect(started).rejects.toThrow(/sha256: must be 64 lowercase hex digits/)
})

test('past the limit of messages the hub has not taken, publishers are held, then released: none lost, none reordered', async () => {
  const broker = await startBrokerThread({ host: '127.0.0.1', port: 0 }, anonymous, WORKER, 3)
  const got: string[] = []
  await broker.subscribe('vigil/v1/c/node/+/obs', (_topic, payload) => {
    got.push(payload.toString())
  })
  broker.markReady()
  const agents = await Promise.all(
    ['a1', 'a2'].map((id) => mqtt.connectAsync(broker.url, { clientId: id, reconnectPeriod: 0 })),
  )
  agents.forEach((agent, a) => {
    for (let i = 0; i < 200; i++) agent.publish(nodeTopic('c', `a${a + 1}`, 'obs'), `a${a + 1}:${i}`)
  })
  await vi.waitFor(() => expect(got).toHaveLength(400), { timeout: 10_000 })
  for (const a of ['a1', 'a2'])
    expect(got.filter((m) => m.startsWith(`${a}:`))).toEqual(
      Array.from({ length: 200 }, (_, i) => `${a}:${i}`),
    )
  await Promise.all(agents.map((agent) => agent.endAsync()))
  await broker.close()
})
