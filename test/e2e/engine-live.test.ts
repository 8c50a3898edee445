import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort as freeTestbedPort } from '@vigil/testbed'
import { afterAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { type HubProcess, hubKeyArgs, startHub } from '../harness/hub.js'
import { freePort } from '../harness/mosquitto.js'
import { tempDir, VigilProcess, writeLines } from '../harness/processes.js'

interface Record {
  id: string
  kind: string
  node?: string
  rule: string
  summary: string
  evidence?: { channel: string; alive: boolean | null; says: string }[]
  correlationId: string
}

const dir = tempDir('engine-live')
const processes: { stop(): Promise<void> }[] = []
afterAll(async () => {
  for (const p of processes.reverse()) await p.stop()
  dir.remove()
})

// The engine runs live in the hub on real agents' heartbeats: a SIGKILLed agent is classified from
// independent channels, fencing is attempted through its levels, and, with none of node-b's fence
// devices answering, it fails, raises an alert and nothing fails over. Everything is recorded with its
// evidence; the dead BMC was reported by the device health check before anyone needed it.
test('the hub runs the engine on real agent streams and records why', async () => {
  const clusterFile = writeLines(dir.path, 'cluster.yaml', [
    'nodes:',
    '  - id: node-a',
    '  - id: node-b',
    '    fencing:',
    '      - devices: [ipmi-node-b]',
    '        timeoutMs: 2000',
    '      - devices: [pdu-b]',
    '        timeoutMs: 2000',
    '',
  ])
  // Neither of node-b's fence devices answers (ports nobody listens on): its BMC (level 1), then
  // its two PDU outlets (level 2).
  const hubFile = join(dir.path, 'hub.yaml')
  const passwordFile = join(dir.path, 'bmc-password')
  writeFileSync(passwordFile, 'secret\n')
  writeFileSync(
    hubFile,
    [
      'fencing:',
      '  devices:',
      '    - id: ipmi-node-b',
      '      driver: ipmi',
      '      hosts: { node-b: [] }',
      `      config: { host: 127.0.0.1, port: ${await freeTestbedPort('udp')}, username: admin, passwordFile: ${passwordFile} }`,
      '    - id: pdu-b',
      '      driver: apc-snmp',
      "      hosts: { node-b: ['3', '4'] }",
      `      config: { host: 127.0.0.1, port: ${await freeTestbedPort('udp')}, version: '2c', communityFile: ${passwordFile}, requestTimeoutMs: 300, retries: 0 }`,
      '',
    ].join('\n'),
  )
  const ports = [
    '--config',
    hubFile,
    '--listen',
    `127.0.0.1:${await freePort()}`,
    '--broker-listen',
    `127.0.0.1:${await freePort()}`,
  ]
  let hub: HubProcess = await startHub(dir.path, [...ports, '--cluster-file', clusterFile])
  const hubHandle = { stop: () => hub.process.stop() }
  processes.push(hubHandle)
  const agent = (node: string) => {
    const p = new VigilProcess(
      ['agent', '--node', node, '--mqtt-url', hub.mqttUrl, '--heartbeat-interval', '100', ...hubKeyArgs(hub)],
      { cwd: dir.path },
    )
    processes.push(p)
    return p
  }
  agent('node-a')
  const b = agent('node-b')

  const engineOf = async (node: string) =>
    (await hub.api<{ engine: { condition: string } | null }>(`/api/nodes/${node}`)).body.engine
  await eventually(
    'both healthy in the engine',
    async () =>
      (await engineOf('node-a'))?.condition === 'healthy' &&
      (await engineOf('node-b'))?.condition === 'healthy',
  )

  b.kill('SIGKILL')
  const decisions = async (node: string) =>
    (await hub.api<{ decisions: Record[] }>(`/api/decisions?node=${node}`)).body.decisions.reverse()
  const recorded = await eventually('fence attempted and failed for node-b', async () => {
    const list = await decisions('node-b')
    return list.some((d) => d.rule === 'fence.all-levels-failed') ? list : undefined
  })
  const rules = recorded.map((d) => d.rule)
  // One lost heartbeat never acts: suspect first, dead only once every channel agreed.
  expect(rules.indexOf('classify.suspect')).toBeGreaterThanOrEqual(0)
  expect(rules.indexOf('classify.dead')).toBeGreaterThan(rules.indexOf('classify.suspect'))
  expect(rules.indexOf('fence.dead')).toBeGreaterThan(rules.indexOf('classify.dead'))
  expect(rules.filter((r) => r === 'fence.level-failed')).toHaveLength(2)
  expect(rules).toContain('fence.next-level')
  const dead = recorded.find((d) => d.rule === 'classify.dead')
  expect(dead?.evidence?.find((e) => e.channel === 'hub')).toMatchObject({ alive: false })
  expect(dead?.evidence?.find((e) => e.channel === 'peers')).toMatchObject({
    alive: false,
    says: 'no peer hears it',
  })
  // The fence history has the device's run; the health check had already flagged the device.
  const fence = (
    await hub.api<{
      history: { node: string; device: string; outcome: string }[]
      devices: { id: string; up: boolean }[]
    }>('/api/fence')
  ).body
  // Each level's device is tried twice (one retry after its backoff) before the next level.
  expect(fence.history.map((h) => [h.device, h.outcome]).reverse()).toEqual([
    ['ipmi-node-b', 'unreachable'],
    ['ipmi-node-b', 'unreachable'],
    ['pdu-b', 'unreachable'],
    ['pdu-b', 'unreachable'],
  ])
  expect(fence.devices).toEqual([
    expect.objectContaining({ id: 'ipmi-node-b', up: false }),
    expect.objectContaining({ id: 'pdu-b', up: false }),
  ])
  expect(await hub.metric('vigil_node_fenceable', { node: 'node-b' })).toBe(0)
  expect(await hub.metric('vigil_fence_device_up', { device: 'ipmi-node-b' })).toBe(0)
  expect(
    await hub.metric('vigil_fence_operations_total', { device: 'ipmi-node-b', outcome: 'unreachable' }),
  ).toBe(2)
  const refusal = recorded.find((d) => d.rule === 'fence.all-levels-failed')
  expect(refusal?.summary).toContain('will not be started elsewhere')
  // One incident, one correlation id: from node-b's first step away from healthy to the refusal.
  const incident = recorded.find((d) => d.rule === 'classify.suspect')?.id
  expect(refusal?.correlationId).toBe(incident)
  expect(recorded.find((d) => d.rule === 'fence.dead')?.correlationId).toBe(incident)

  // Each record is served on its own, and the alert reached the event log.
  const one = await hub.api<Record>(`/api/decisions/${refusal?.id}`)
  expect(one.body.rule).toBe('fence.all-levels-failed')
  const events = (
    await hub.api<{ events: { kind: string; severity: string; node: string }[] }>('/api/events?node=node-b')
  ).body.events
  expect(events.some((e) => e.kind === 'engine.alert' && e.severity === 'critical')).toBe(true)
  const hubEvents = (await hub.api<{ events: { kind: string; message: string }[] }>('/api/events')).body
    .events
  expect(hubEvents.find((e) => e.kind === 'fence.device-down')?.message).toContain('cannot fence node-b')
  expect(events.find((e) => e.kind === 'fence.node-unfenceable')).toMatchObject({ severity: 'critical' })
  expect(await hub.metric('vigil_node_condition', { node: 'node-b', condition: 'dead' })).toBe(1)
  expect(await hub.metric('vigil_node_condition', { node: 'node-a', condition: 'healthy' })).toBe(1)
  expect(await hub.metric('vigil_decisions_total', { kind: 'fence' })).toBeGreaterThanOrEqual(1)
  // node-a may be briefly suspected if the machine stalls (suspicion alone never acts), but it is
  // never declared dead and never fenced.
  const aboutA = await decisions('node-a')
  expect(
    aboutA.filter((d) => d.rule === 'classify.dead' || d.kind === 'fence' || d.rule.startsWith('fence.')),
  ).toEqual([])

  // A hub restart resumes the engine's state: node-b stays dead with its fence failed, and the hub
  // does not fence it again.
  const fencesBefore = recorded.filter((d) => d.rule === 'fence.dead').length
  await hub.process.stop()
  hub = await startHub(dir.path, [...ports, '--cluster-file', clusterFile])
  await eventually('hub restart recorded', async () =>
    (await hub.api<{ decisions: Record[] }>('/api/decisions?limit=20')).body.decisions.some(
      (d) => d.rule === 'hub.restarted',
    ),
  )
  await eventually(
    'node-a healthy again after the restart',
    async () => (await engineOf('node-a'))?.condition === 'healthy',
  )
  expect((await engineOf('node-b'))?.condition).toBe('dead')
  expect((await decisions('node-b')).filter((d) => d.rule === 'fence.dead').length).toBe(fencesBefore)
})
