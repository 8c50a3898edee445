import { join } from 'node:path'
import { generateSigningKey, privateKeyFromPem, signCommand } from '@vigil/protocol'
import mqtt from 'mqtt'
import { afterEach, describe, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { forgedCommand } from '../harness/forged.js'
import { type HubProcess, hubKeyArgs, startHub } from '../harness/hub.js'
import { type Mosquitto, startMosquitto } from '../harness/mosquitto.js'
import { tempDir, VigilProcess } from '../harness/processes.js'
import { skeletonFlow } from './skeleton-flow.js'

/** A ping to a dead node fails within 1.5 s. */
const QUICK_COMMANDS = ['--command-timeout', '1500']
const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

describe('walking skeleton, end to end with real processes', () => {
  test('embedded broker: hub and two agents', async () => {
    const dir = tempDir('embedded')
    cleanups.push(dir.remove)
    const hub: HubProcess = await startHub(dir.path, QUICK_COMMANDS)
    cleanups.push(() => hub.process.stop())
    await skeletonFlow(
      hub,
      (node) =>
        new VigilProcess(['agent', '--node', node, '--mqtt-url', hub.mqttUrl, ...hubKeyArgs(hub)], {
          cwd: dir.path,
        }),
    )
  })

  test('external mosquitto with password authentication and the shipped ACL', async () => {
    const dir = tempDir('mosquitto')
    cleanups.push(dir.remove)
    const users = { hub: 'hub-secret', 'node-a': 'a-secret', 'node-b': 'b-secret' }
    const broker: Mosquitto = await startMosquitto(
      dir.path,
      users,
      join(import.meta.dirname, '../../deploy/mosquitto/vigil.acl'),
    )
    cleanups.push(() => broker.stop())
    const hub = await startHub(
      dir.path,
      [...QUICK_COMMANDS, '--mqtt-url', broker.url, '--mqtt-username', 'hub'],
      {
        VIGIL_MQTT_PASSWORD: users.hub,
      },
    )
    cleanups.push(() => hub.process.stop())
    await skeletonFlow(
      hub,
      (node) =>
        new VigilProcess(
          ['agent', '--node', node, '--mqtt-url', broker.url, '--mqtt-username', node, ...hubKeyArgs(hub)],
          {
            cwd: dir.path,
            env: { VIGIL_MQTT_PASSWORD: users[node as 'node-a' | 'node-b'] },
          },
        ),
    )
  })
})

describe('mosquitto with the shipped ACL', () => {
  test('an agent cannot speak for another node or publish commands; a wrong password cannot connect', async () => {
    const dir = tempDir('acl')
    cleanups.push(dir.remove)
    const users = { hub: 'hub-secret', 'node-a': 'a-secret', 'node-b': 'b-secret' }
    const broker = await startMosquitto(
      dir.path,
      users,
      join(import.meta.dirname, '../../deploy/mosquitto/vigil.acl'),
    )
    cleanups.push(() => broker.stop())
    const hub = await startHub(dir.path, ['--mqtt-url', broker.url, '--mqtt-username', 'hub'], {
      VIGIL_MQTT_PASSWORD: users.hub,
    })
    cleanups.push(() => hub.process.stop())
    const b = new VigilProcess(
      [
        'agent',
        '--node',
        'node-b',
        '--mqtt-url',
        broker.url,
        '--mqtt-username',
        'node-b',
        '--hub-key',
        `${hub.dbPath}.pub.pem`,
      ],
      {
        cwd: dir.path,
        env: { VIGIL_MQTT_PASSWORD: users['node-b'] },
      },
    )
    cleanups.push(() => b.stop())
    await b.waitForLog('node-b connected', (l) => l.msg === 'connected to broker')

    const impostor = await mqtt.connectAsync(broker.url, {
      username: 'node-a',
      password: users['node-a'],
      reconnectPeriod: 0,
    })
    cleanups.push(() => void impostor.end(true))
    const forged = forgedCommand('node-b', '99999999-2222-4333-8444-555555555555')
    await impostor.publishAsync('vigil/v1/default/node/node-b/cmd', JSON.stringify(forged), { qos: 1 })
    await impostor.publishAsync(
      'vigil/v1/default/node/node-c/hb',
      JSON.stringify({
        v: 1,
        node: 'node-c',
        incarnation: 1,
        seq: 1,
        sentMono: 1,
        sentAt: Date.now(),
        intervalMs: 250,
      }),
      { qos: 1 },
    )
    await eventually(
      'mosquitto logs both denials',
      () =>
        (
          broker
            .log()
            .match(
              /Denied PUBLISH from .* \(d0, q1, r0, m\d+, 'vigil\/v1\/default\/node\/node-(b\/cmd|c\/hb)'/g,
            ) ?? []
        ).length >= 2,
    )
    // The hub's own ping still reaches node-b, which proves the path works and the forged one was dropped.
    expect(
      (await hub.api<{ status: string }>('/api/nodes/node-b/ping', { method: 'POST' })).body.status,
    ).toBe('ok')
    expect(b.lines.some((l) => l.command === forged.id)).toBe(false)

    // A stolen hub broker credential passes the ACL, but not the agent: commands must carry the
    // hub's Ed25519 signature. Unsigned, and signed with another key, both are refused.
    const thief = await mqtt.connectAsync(broker.url, {
      username: 'hub',
      password: users.hub,
      reconnectPeriod: 0,
    })
    cleanups.push(() => void thief.end(true))
    const unsigned = {
      ...forgedCommand('node-b', '99999999-3333-4333-8444-555555555555'),
      issuer: { hub: 'hub', epoch: 10_000 },
    }
    const otherKey = generateSigningKey()
    const { sig: _none, ...body } = {
      ...forgedCommand('node-b', '99999999-4444-4333-8444-555555555555'),
      issuer: { hub: 'hub', epoch: 10_001 },
    }
    const badlySigned = { ...body, sig: signCommand(body, privateKeyFromPem(otherKey.privatePem)) }
    for (const c of [unsigned, badlySigned])
      await thief.publishAsync('vigil/v1/default/node/node-b/cmd', JSON.stringify(c), { qos: 1 })
    const refusals = await eventually('both refused by the agent', () => {
      const r = b.lines.filter(
        (l) => l.msg === 'command refused' && (l.command === unsigned.id || l.command === badlySigned.id),
      )
      return r.length === 2 ? r : undefined
    })
    expect(refusals.map((l) => l.reason).sort()).toEqual(['bad_signature', 'unsigned'])
    // The refusals moved no replay floor: the hub's own signed commands still run.
    expect(
      (await hub.api<{ status: string }>('/api/nodes/node-b/ping', { method: 'POST' })).body.status,
    ).toBe('ok')
    const nodes = (await hub.api<{ nodes: { id: string }[] }>('/api/nodes')).body.nodes.map((n) => n.id)
    expect(nodes).toEqual(['node-b'])

    const wrong = new VigilProcess(
      [
        'agent',
        '--node',
        'node-a',
        '--mqtt-url',
        broker.url,
        '--mqtt-username',
        'node-a',
        ...hubKeyArgs(hub),
      ],
      {
        cwd: dir.path,
        env: { VIGIL_MQTT_PASSWORD: 'wrong' },
      },
    )
    cleanups.push(() => wrong.stop())
    await wrong.waitForLog(
      'refused connection logged',
      (l) => l.msg === 'broker connection error' && /Not authorized|Bad username/i.test(String(l.err)),
    )
    expect(wrong.lines.some((l) => l.msg === 'connected to broker')).toBe(false)
  })
})
