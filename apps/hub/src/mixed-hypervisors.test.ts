import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger } from '@vigil/kit'
import { encode, type Hypervisor, nodeTopic, type Observation } from '@vigil/protocol'
import mqtt from 'mqtt'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { hubConfigSchema } from './config.js'
import { type RunningHub, startHub } from './hub.js'
import { HubMetrics } from './metrics.js'
import type { NodeView } from './nodes.js'

// Issue #19: a cluster file that mixes KVM, vSphere and Xen nodes works, and the hub shows the
// hypervisor of each vm. A real hub (embedded broker, engine with the cluster file) hears one agent
// per node, each running the vms of its hypervisor through its own driver.

/** What each node's agent observes (its drivers): the vms it runs, and a copy stopped on kvm-2. */
const AGENTS: Record<string, Observation[]> = {
  'kvm-1': [
    { driver: 'libvirt', target: 'vm-kvm', state: 'running', detail: 'running (booted)', hypervisor: 'kvm' },
    { driver: 'process', target: 'web', state: 'running', detail: 'pid 4242' },
  ],
  // vm-kvm is defined on both KVM hosts (either can start it): stopped here.
  'kvm-2': [{ driver: 'libvirt', target: 'vm-kvm', state: 'stopped', detail: 'shut off', hypervisor: 'kvm' }],
  'esx-1': [
    { driver: 'vsphere', target: 'vm-esx', state: 'running', detail: 'tools ok', hypervisor: 'vsphere' },
  ],
  'xen-1': [
    { driver: 'xl', target: 'vm-xen', state: 'running', detail: 'domid 3: running', hypervisor: 'xen' },
    // Xen through libvirt's libxl driver (uri xen:///system): the same hypervisor.
    {
      driver: 'libvirt',
      target: 'vm-libxl',
      state: 'running',
      detail: 'running (booted)',
      hypervisor: 'xen',
    },
  ],
}

/** Where each vm runs and on what, as the API, the metric and `vigil status` must show it. */
const VMS: { resource: string; node: string; hypervisor: Hypervisor }[] = [
  { resource: 'vm-esx', node: 'esx-1', hypervisor: 'vsphere' },
  { resource: 'vm-kvm', node: 'kvm-1', hypervisor: 'kvm' },
  { resource: 'vm-libxl', node: 'xen-1', hypervisor: 'xen' },
  { resource: 'vm-xen', node: 'xen-1', hypervisor: 'xen' },
]

const CLUSTER = 'mixed'
let dir: string
let hub: RunningHub
let client: mqtt.MqttClient
let beat: NodeJS.Timeout
const incarnation = Date.now()

async function get<T>(path: string): Promise<T> {
  const res = await fetch(`${hub.httpUrl}${path}`)
  expect(res.status, path).toBe(200)
  return (await res.json()) as T
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-mixed-'))
  const clusterFile = join(dir, 'cluster.json')
  writeFileSync(
    clusterFile,
    JSON.stringify({
      nodes: Object.keys(AGENTS).map((id) => ({ id })),
      resources: [
        // Each vm may run only on the nodes of its hypervisor: an ESX VM cannot start on a KVM host.
        { id: 'vm-kvm', kind: 'vm', allowedNodes: ['kvm-1', 'kvm-2'] },
        { id: 'vm-esx', kind: 'vm', allowedNodes: ['esx-1'] },
        { id: 'vm-xen', kind: 'vm', allowedNodes: ['xen-1'] },
        { id: 'vm-libxl', kind: 'vm', allowedNodes: ['xen-1'] },
        { id: 'web', allowedNodes: ['kvm-1'] },
      ],
    }),
  )
  hub = await startHub(
    hubConfigSchema.parse({
      cluster: CLUSTER,
      http: { listen: '127.0.0.1:0' },
      broker: { listen: '127.0.0.1:0' },
      store: { path: join(dir, 'hub.sqlite') },
      engine: { clusterFile },
    }),
    {
      log: createLogger('test', 'silent'),
      version: 'test',
      brokerWorkerUrl: new URL('../dist/broker-worker.js', import.meta.url),
    },
  )
  client = await mqtt.connectAsync(hub.mqttUrl, { clientId: 'mixed-agents', reconnectPeriod: 0 })
  let seq = 0
  const publish = async (node: string, channel: 'hb' | 'status' | 'obs', payload: object) =>
    client.publishAsync(
      nodeTopic(CLUSTER, node, channel),
      encode(channel, { v: 1, node, incarnation, ...payload } as never),
    )
  for (const node of Object.keys(AGENTS))
    await publish(node, 'status', {
      state: 'online',
      at: Date.now(),
      agentVersion: '0.1.0',
      role: 'host',
      capabilities: ['ping'],
    })
  // Every node stays alive (heartbeats) and keeps saying what it runs, as agents do.
  const tick = async () => {
    seq++
    for (const [node, observations] of Object.entries(AGENTS)) {
      await publish(node, 'hb', { seq, sentMono: seq, sentAt: Date.now(), intervalMs: 100 })
      await publish(node, 'obs', { seq, at: Date.now(), observations, complete: true })
    }
  }
  await tick()
  beat = setInterval(() => void tick().catch(() => {}), 100)
})

afterAll(async () => {
  clearInterval(beat)
  await client?.endAsync()
  await hub?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('a cluster that mixes KVM, vSphere and Xen nodes', () => {
  interface ResourceView {
    id: string
    phase: string
    node: string | null
    hypervisor: Hypervisor | null
  }
  const resources = async () => (await get<{ resources: ResourceView[] }>('/api/resources')).resources

  test('the engine places each vm on its node, and /api/resources says what runs it', {
    timeout: 15_000,
  }, async () => {
    await expect
      .poll(async () => (await resources()).map((r) => [r.id, r.node, r.hypervisor]), { timeout: 10_000 })
      .toEqual([
        ...VMS.map((v) => [v.resource, v.node, v.hypervisor]),
        ['web', 'kvm-1', null], // not a vm
      ])
  })

  test.each(
    Object.entries(AGENTS).flatMap(([node, observations]) =>
      observations.map((o) => ({ node, target: o.target, hypervisor: o.hypervisor })),
    ),
  )(
    "/api/nodes/$node: $target's observation carries its hypervisor ($hypervisor)",
    async ({ node, target, hypervisor }) => {
      const view = await get<{ observations: Observation[] }>(`/api/nodes/${node}`)
      const observed = view.observations.find((o) => o.target === target)
      expect(observed?.hypervisor).toBe(hypervisor)
    },
  )

  test('vigil_vm_info: one series per vm where it runs, with its hypervisor; a stopped copy has none', async () => {
    const text = await (await fetch(hub.metricsUrl)).text()
    const series = text
      .split('\n')
      .filter((l) => l.startsWith('vigil_vm_info{'))
      .sort()
    expect(series).toEqual(
      VMS.map(
        (v) => `vigil_vm_info{resource="${v.resource}",node="${v.node}",hypervisor="${v.hypervisor}"} 1`,
      ),
    )
    expect(text).toMatch(/^# TYPE vigil_vm_info gauge$/m)
  })
})

// Where a vm is, for the on-call reader of vigil_vm_info: the nodes that hold its guest (running,
// paused: it still holds its disks) or where it died (failed); not the copies stopped cleanly on
// every other host that may run it, nor a node whose monitor could not tell.
test.each([
  ['running', true],
  ['paused', true],
  ['failed', true],
  ['stopped', false],
  ['unknown', false],
] as const)('vigil_vm_info for a vm %s on its node: %s', async (state, shown) => {
  const node = (id: string, observations: Observation[]) => ({ id, observations }) as unknown as NodeView
  const metrics = new HubMetrics({
    nodes: () => [
      node('xen-1', [{ driver: 'xl', target: 'vm1', state, hypervisor: 'xen' }]),
      node('xen-2', [{ driver: 'xl', target: 'vm1', state: 'stopped', hypervisor: 'xen' }]),
      node('app-1', [{ driver: 'process', target: 'web', state: 'running' }]),
    ],
    brokerClients: () => 0,
    group: () => null,
    parts: () => [],
    epoch: () => 1,
  })
  const series = (await metrics.registry.getSingleMetric('vigil_vm_info')?.get())?.values ?? []
  expect(series.map((v) => ({ ...v.labels, value: v.value }))).toEqual(
    shown ? [{ resource: 'vm1', node: 'xen-1', hypervisor: 'xen', value: 1 }] : [],
  )
})
