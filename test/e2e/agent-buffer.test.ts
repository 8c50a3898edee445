import { agentConfigSchema, type RunningAgent, startAgent } from '@vigil/agent'
import { createLogger } from '@vigil/kit'
import { afterEach, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { type HubProcess, startHub } from '../harness/hub.js'
import { freePort } from '../harness/mosquitto.js'
import { tempDir } from '../harness/processes.js'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

interface EventView {
  id: number
  source: 'hub' | 'agent'
  kind: string
  attrs: { seq: number; dropped?: number } | null
}

// The broker goes away (the hub process, with its embedded broker, stops) while the agent keeps
// raising events; the agent keeps the newest `capacity` of them and, when the broker is back, sends
// them in order followed by a count of what it had to drop. Nothing is stored twice.
test('events raised while the broker is away are buffered, bounded, and replayed in order', async () => {
  const dir = tempDir('buffer')
  cleanups.push(dir.remove)
  const ports = [
    '--listen',
    `127.0.0.1:${await freePort()}`,
    '--broker-listen',
    `127.0.0.1:${await freePort()}`,
  ]
  let hub: HubProcess = await startHub(dir.path, ports)
  cleanups.push(() => hub.process.stop())

  const config = agentConfigSchema.parse({
    node: 'buffered',
    mqtt: { url: hub.mqttUrl },
    commands: { hubPublicKeyFile: `${hub.dbPath}.pub.pem` },
    eventBuffer: { capacity: 3 },
    reconnect: { minMs: 50, maxMs: 200 },
  })
  const agent: RunningAgent = await startAgent(config, {
    log: createLogger('agent', 'silent'),
    version: 'test',
  })
  cleanups.push(() => agent.stop())
  await eventually(
    'agent healthy',
    async () => (await hub.api<{ state: string }>('/api/nodes/buffered')).body.state === 'healthy',
  )

  await hub.process.stop()
  await eventually('agent sees the broker gone', () => !agent.connected)
  for (let i = 1; i <= 5; i++) agent.emit({ kind: `test.e${i}`, severity: 'info', message: `event ${i}` })

  hub = await startHub(dir.path, ports)
  const events = await eventually('replayed events stored', async () => {
    const list = (await hub.api<{ events: EventView[] }>('/api/events?node=buffered&limit=100')).body.events
    return list.some((e) => e.kind === 'agent.events_dropped') ? list : undefined
  })
  const agentEvents = events
    .filter((e) => e.kind.startsWith('test.') || e.kind === 'agent.events_dropped')
    .sort((a, b) => a.id - b.id)
  expect(agentEvents.map((e) => e.kind)).toEqual(['test.e3', 'test.e4', 'test.e5', 'agent.events_dropped'])
  expect(agentEvents.at(-1)?.attrs?.dropped).toBe(2)
  const seqs = agentEvents.map((e) => e.attrs?.seq)
  expect(seqs).toEqual([...seqs].sort((a, b) => (a ?? 0) - (b ?? 0)))
  // Nothing the agent sent is stored twice (hub-made events have no agent sequence number).
  const fromAgent = events.filter((e) => e.source === 'agent')
  expect(new Set(fromAgent.map((e) => e.attrs?.seq)).size).toBe(fromAgent.length)
})
