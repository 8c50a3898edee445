import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import {
  confirmAndExpectFailoverOnce,
  fenceWaitsForPerson,
  killNodeB,
  webRunsOn,
  writeMeatwareFailoverFiles,
} from '../harness/failover.js'
import { startHub } from '../harness/hub.js'
import { type Mosquitto, startMosquitto } from '../harness/mosquitto.js'
import type { VigilProcess } from '../harness/processes.js'
import { startWebAgent, webTestFixture } from '../harness/web.js'

// The broker (Debian's mosquitto, passwords and the shipped ACL) restarts in the middle of a
// failover: node-b is dead and its fence waits for a person when mosquitto goes away and comes
// back. The failover then completes once: one fence run, one decision to fence, web started once
// on node-a.

const { dir, cleanups } = webTestFixture('broker-restart')

test('a broker restart in the middle of a failover: it completes once', async () => {
  const acl = join(import.meta.dirname, '../../deploy/mosquitto/vigil.acl')
  const users = { hub: 'hub-secret', 'node-a': 'a-secret', 'node-b': 'b-secret' }
  const brokerDir = (name: string) => {
    const d = join(dir.path, name)
    mkdirSync(d)
    return d
  }
  let broker: Mosquitto = await startMosquitto(brokerDir('broker-1'), users, acl)
  cleanups.push(() => broker.stop())
  const hub = await startHub(
    dir.path,
    [...writeMeatwareFailoverFiles(dir.path), '--mqtt-url', broker.url, '--mqtt-username', 'hub'],
    { VIGIL_MQTT_PASSWORD: users.hub },
  )
  cleanups.push(() => hub.process.stop())
  const agents = new Map<string, VigilProcess>()
  for (const node of ['node-a', 'node-b'] as const) {
    const agent = startWebAgent(dir.path, node, hub, {
      mqttUrl: broker.url,
      args: ['--mqtt-username', node],
      env: { VIGIL_MQTT_PASSWORD: users[node] },
    })
    agents.set(node, agent)
    cleanups.push(() => agent.stop())
  }
  await webRunsOn(hub, dir.path, 'node-b')
  await killNodeB(hub, dir.path, agents.get('node-b'))

  // The broker goes away and comes back on the same port.
  await broker.stop()
  await eventually('the hub sees the broker gone', async () => (await hub.api('/readyz')).status === 503)
  broker = await startMosquitto(brokerDir('broker-2'), users, acl, undefined, broker.port)
  await eventually('the hub reconnected', async () => (await hub.api('/readyz')).status === 200, {
    timeoutMs: 30_000,
  })
  await eventually(
    'node-a heard again',
    async () =>
      (await hub.api<{ engine: { condition: string } }>('/api/nodes/node-a')).body.engine?.condition ===
      'healthy',
  )
  expect(await fenceWaitsForPerson(hub)).toBe(true) // still in flight: not forgotten, not re-decided

  await confirmAndExpectFailoverOnce(hub, dir.path)
})
