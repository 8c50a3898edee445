import Database from 'better-sqlite3'
import mqtt from 'mqtt'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { forgedCommand } from '../harness/forged.js'
import { type HubProcess, hubKeyArgs, startHub } from '../harness/hub.js'
import { tempDir, VigilProcess } from '../harness/processes.js'

/**
 * Hostile and broken input published to a real hub's embedded broker: the hub keeps running,
 * counts each message under its reason, logs at most one line per reason per second, and stores
 * nothing from any of it.
 */
describe('bad input over MQTT', () => {
  const dir = tempDir('bad-input')
  let hub: HubProcess
  let agent: VigilProcess
  let rogue: mqtt.MqttClient

  beforeAll(async () => {
    hub = await startHub(dir.path)
    agent = new VigilProcess(['agent', '--node', 'good', '--mqtt-url', hub.mqttUrl, ...hubKeyArgs(hub)], {
      cwd: dir.path,
    })
    await agent.waitForLog('agent connected', (l) => l.msg === 'connected to broker')
    rogue = await mqtt.connectAsync(hub.mqttUrl, { clientId: 'rogue', reconnectPeriod: 0 })
  })
  afterAll(async () => {
    rogue?.end(true)
    await agent?.stop()
    await hub?.process.stop()
    dir.remove()
  })

  const hb = (node: string) =>
    JSON.stringify({ v: 1, node, incarnation: 1, seq: 1, sentMono: 1, sentAt: Date.now(), intervalMs: 250 })
  const cases: { name: string; topic: string; payload: Buffer | string; reason: string; count: number }[] = [
    {
      name: 'garbage bytes',
      topic: 'vigil/v1/default/node/evil/hb',
      payload: Buffer.from([0xff, 0xfe, 0x00, 0x01]),
      reason: 'not_json',
      count: 50,
    },
    {
      name: 'JSON of the wrong shape',
      topic: 'vigil/v1/default/node/evil/facts',
      payload: '{"v":1,"node":"evil"}',
      reason: 'schema',
      count: 5,
    },
    {
      name: 'an unknown field',
      topic: 'vigil/v1/default/node/evil/hb',
      payload: hb('evil').replace('{', '{"root":true,'),
      reason: 'schema',
      count: 1,
    },
    {
      name: 'oversized payload',
      topic: 'vigil/v1/default/node/evil/hb',
      payload: Buffer.alloc(64 * 1024, 0x7b),
      reason: 'too_large',
      count: 3,
    },
    {
      name: 'an unknown channel',
      topic: 'vigil/v1/default/node/evil/bogus',
      payload: hb('evil'),
      reason: 'unknown_topic',
      count: 2,
    },
    {
      name: 'a topic outside the layout',
      topic: 'vigil/v1/default/whatever',
      payload: 'x',
      reason: 'unknown_topic',
      count: 1,
    },
    {
      name: 'a heartbeat speaking for another node',
      topic: 'vigil/v1/default/node/evil/hb',
      payload: hb('good'),
      reason: 'node_mismatch',
      count: 2,
    },
  ]

  test.each(cases)('$name is rejected as $reason', async ({ topic, payload, reason, count }) => {
    const before = (await hub.metric('vigil_messages_rejected_total', { reason })) ?? 0
    for (let i = 0; i < count; i++) await rogue.publishAsync(topic, payload, { qos: 1 })
    await eventually(
      `${count} more rejections as ${reason}`,
      async () => ((await hub.metric('vigil_messages_rejected_total', { reason })) ?? 0) >= before + count,
    )
    expect((await hub.api('/healthz')).status).toBe(200)
  })

  test('rejections are logged with a rate limit, not once per message', () => {
    const notJsonLines = hub.process.lines.filter(
      (l) => l.msg === 'message rejected' && l.reason === 'not_json',
    )
    expect(notJsonLines.length).toBeGreaterThanOrEqual(1)
    expect(notJsonLines.length).toBeLessThan(10) // 50 garbage messages were sent
    expect(notJsonLines[0]).toMatchObject({ topic: 'vigil/v1/default/node/evil/hb' })
  })

  test('nothing from the rejected messages was stored', async () => {
    const nodes = (await hub.api<{ nodes: { id: string }[] }>('/api/nodes')).body.nodes.map((n) => n.id)
    expect(nodes).toEqual(['good'])
    const db = new Database(hub.dbPath, { readonly: true, fileMustExist: true })
    try {
      expect(db.prepare("SELECT COUNT(*) AS n FROM nodes WHERE id != 'good'").get()).toEqual({ n: 0 })
      expect(
        db.prepare("SELECT COUNT(*) AS n FROM events WHERE node IS NULL OR node != 'good'").get(),
      ).toEqual({ n: 0 })
    } finally {
      db.close()
    }
  })

  test('a client other than the hub cannot publish a command: the broker drops it and the agent never runs it', async () => {
    const command = forgedCommand('good', '11111111-2222-4333-8444-555555555555')
    const intruder = await mqtt.connectAsync(hub.mqttUrl, { clientId: 'intruder', reconnectPeriod: 0 })
    const closed = new Promise<void>((resolve) => intruder.once('close', () => resolve()))
    intruder.publish('vigil/v1/default/node/good/cmd', JSON.stringify(command), { qos: 0 })
    await closed // aedes closes a client whose publish is not authorised (MQTT 3.1.1 has no negative ack)
    await hub.process.waitForLog(
      'broker refusal logged',
      (l) => l.msg === 'broker refused a publish' && l.clientId === 'intruder',
    )
    // The agent is still connected and answers the hub's own commands, but never saw the forged one.
    const ping = await hub.api<{ status: string }>('/api/nodes/good/ping', { method: 'POST' })
    expect(ping.body.status).toBe('ok')
    expect(agent.lines.some((l) => l.command === command.id)).toBe(false)
  })

  test('the hub still ingests good data after all of it', async () => {
    const before = (await hub.metric('vigil_heartbeats_received_total')) ?? 0
    await eventually(
      'more heartbeats',
      async () => ((await hub.metric('vigil_heartbeats_received_total')) ?? 0) > before + 2,
    )
    const node = await hub.api<{ state: string }>('/api/nodes/good')
    expect(node.body.state).toBe('healthy')
  })
})

describe('bad input over HTTP', () => {
  const dir = tempDir('bad-http')
  let hub: HubProcess
  beforeAll(async () => {
    hub = await startHub(dir.path)
  })
  afterAll(async () => {
    await hub?.process.stop()
    dir.remove()
  })

  test.each([
    { path: '/api/nodes/nope', init: undefined, status: 404, code: 'not_found' },
    { path: '/api/nodes/nope/ping', init: { method: 'POST' }, status: 404, code: 'not_found' },
    { path: '/api/events?limit=0', init: undefined, status: 400, code: 'invalid', field: 'limit' },
    { path: '/api/events?limit=abc', init: undefined, status: 400, code: 'invalid', field: 'limit' },
    { path: '/api/events?node=a%2Fb', init: undefined, status: 400, code: 'invalid', field: 'node' },
    { path: '/api/events?colour=red', init: undefined, status: 400, code: 'invalid', field: 'colour' },
    { path: '/api/commands/xyz', init: undefined, status: 404, code: 'not_found' },
    { path: '/no/such/route', init: undefined, status: 404, code: 'not_found' },
    {
      path: '/api/nodes/x/ping',
      init: { method: 'POST', body: 'x'.repeat(70 * 1024), headers: { 'content-type': 'text/plain' } },
      status: 413,
      code: 'too_large',
    },
  ])('$path -> $status $code', async ({ path, init, status, code, field }) => {
    const res = await hub.api<{ error: { code: string; field?: string; message: string } }>(path, init)
    expect(res.status).toBe(status)
    expect(res.body.error.code).toBe(code)
    if (field) expect(res.body.error.field).toBe(field)
    expect((await hub.api('/healthz')).status).toBe(200)
  })
})
