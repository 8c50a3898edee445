import type { NodeView } from '@vigil/hub'
import { expect, test } from 'vitest'
import { renderGroup, renderStatus, type StatusGroup, type StatusResource } from './status.js'

const etcd = {
  endpoints: ['http://e1:2379', 'http://e2:2379', 'http://e3:2379'],
  reachable: true,
  lastError: null,
}

test.each<[string, StatusGroup, string]>([
  [
    'the leader',
    {
      enabled: true,
      role: 'leader',
      self: 'hub-a',
      leader: { hub: 'hub-a', url: 'http://a:7470', epoch: 57 },
      leaseRemainingMs: 1234,
      etcd,
    },
    'Hub group: leader hub-a (epoch 57, http://a:7470); this hub hub-a: LEADER, lease 1.2 s; etcd reachable (3 endpoints)',
  ],
  [
    'a standby',
    {
      enabled: true,
      role: 'standby',
      self: 'hub-b',
      leader: { hub: 'hub-a', url: 'http://a:7470', epoch: 57 },
      leaseRemainingMs: null,
      etcd,
    },
    'Hub group: leader hub-a (epoch 57, http://a:7470); this hub hub-b: STANDBY; etcd reachable (3 endpoints)',
  ],
  [
    'no quorum',
    {
      enabled: true,
      role: 'no-quorum',
      self: 'hub-b',
      leader: null,
      leaseRemainingMs: null,
      etcd: { ...etcd, reachable: false, lastError: 'deadline exceeded' },
    },
    'Hub group: NO LEADER: no hub acts (nothing is fenced or moved) until one leads; this hub hub-b: NO-QUORUM; etcd UNREACHABLE: deadline exceeded',
  ],
])('the status line of %s', (_, group, line) => {
  expect(renderGroup(group)).toBe(line)
})

const NOW = 1_700_000_100_000
const resource = (id: string, node: string | null, hypervisor?: string | null): StatusResource => ({
  id,
  phase: node ? 'running' : 'waiting',
  node,
  phaseSince: NOW - 42_000,
  health: node ? 100 : 30,
  failures: 0,
  pending: null,
  ...(hypervisor === undefined ? {} : { hypervisor }),
})
/** The resources section of `vigil status --brief`. */
function resourcesOf(resources: StatusResource[]): string[] {
  const lines = renderStatus({ cluster: 'mixed', name: 'hub', epoch: 1 }, [], NOW, true, resources).split(
    '\n',
  )
  return lines.slice(lines.findIndex((l) => l.startsWith('Resources:')))
}

// A cluster file that mixes KVM, vSphere and Xen nodes (issue #19): each vm says what runs it, in a
// column of its own (aligned like the others); resources that are not vms have none.
test('vigil status shows the hypervisor of each vm next to the node it runs on', () => {
  expect(
    resourcesOf([
      resource('vm-esx', 'esx-1', 'vsphere'),
      resource('vm-kvm', 'kvm-1', 'kvm'),
      resource('vm-lab', 'kvm-2', 'qemu'),
      resource('vm-xen', 'xen-1', 'xen'),
      resource('vm-new', null, 'xen'),
      resource('web', 'kvm-1', null),
    ]),
  ).toEqual([
    'Resources: 5 of 6 running',
    '  RESOURCE  PHASE    NODE   HYPERVISOR  SINCE     HEALTH  FAILURES  PENDING',
    '  vm-esx    RUNNING  esx-1  vsphere     42 s ago  100     0         -',
    '  vm-kvm    RUNNING  kvm-1  kvm         42 s ago  100     0         -',
    '  vm-lab    RUNNING  kvm-2  qemu        42 s ago  100     0         -',
    '  vm-xen    RUNNING  xen-1  xen         42 s ago  100     0         -',
    '  vm-new    WAITING  -      xen         42 s ago  30      0         -',
    '  web       RUNNING  kvm-1  -           42 s ago  100     0         -',
  ])
})

test.each([
  ['no vm', [resource('web', 'node-a', null)]],
  ['a hub that does not send hypervisors', [resource('web', 'node-a')]],
])('without a vm there is no hypervisor column: %s', (_, resources) => {
  expect(resourcesOf(resources)).toEqual([
    'Resources: 1 of 1 running',
    '  RESOURCE  PHASE    NODE    SINCE     HEALTH  FAILURES  PENDING',
    '  web       RUNNING  node-a  42 s ago  100     0         -',
  ])
})

// Nothing waits in silence (issue #24): a resource not settled says what it waits for, with the
// rule, under the table; settled ones and those from an older hub (no reason) add nothing.
test('vigil status lists what each waiting resource waits on', () => {
  const held = {
    ...resource('db', null),
    reason: { rule: 'wait.fence-held', why: 'its node node2 is dead and its fence is held by the governor' },
  }
  const running = {
    ...resource('web', 'node-a'),
    reason: { rule: 'observed.running', why: 'running on node-a' },
  }
  expect(resourcesOf([held, running, resource('old', null)]).slice(-2)).toEqual([
    'Waiting on:',
    '  db (waiting, 42 s): its node node2 is dead and its fence is held by the governor [wait.fence-held]',
  ])
})

// One node truth (issue #22): a node's state is the engine's classification, since when the engine
// says; an agent that shut down cleanly is marked beside it, and counted in the summary.
test("vigil status shows each node's engine condition, and an agent's clean shutdown beside it", () => {
  const node = (id: string, state: NodeView['state'], stateSince: number | null, shutdownAt: number | null) =>
    ({
      id,
      state,
      stateSince,
      shutdownAt,
      engine: null,
      incarnation: 1,
      lastHeartbeatAt: NOW - 1_000,
      role: 'host',
      agentVersion: '0.1.0',
      capabilities: [],
      facts: null,
      observations: [],
    }) satisfies NodeView
  const lines = renderStatus(
    { cluster: 'c', name: 'hub', epoch: 3 },
    [
      node('node-a', 'healthy', NOW - 60_000, null),
      node('node-b', 'dead', NOW - 5_000, NOW - 6_000),
      node('node-c', 'unknown', null, NOW - 90_000),
    ],
    NOW,
    true,
  ).split('\n')
  expect(lines).toEqual([
    'Cluster c - hub hub (epoch 3) - 3 nodes: 1 healthy, 1 dead, 1 unknown; 2 agents shut down',
    '',
    'NODE    STATE                      SINCE     LAST HEARTBEAT  ROLE  AGENT  CPUS  MEMORY AVAIL/TOTAL  LOAD  PROCS',
    'node-a  HEALTHY                    60 s ago  1 s ago         host  0.1.0  -     -                   -     -',
    'node-b  DEAD (agent shut down)     5 s ago   1 s ago         host  0.1.0  -     -                   -     -',
    'node-c  UNKNOWN (agent shut down)  -         1 s ago         host  0.1.0  -     -                   -     -',
  ])
})

test('vigil status on a standby says its nodes are judged by the leader, and where that is', () => {
  const standby: StatusGroup = {
    enabled: true,
    role: 'standby',
    self: 'hub-b',
    leader: { hub: 'hub-a', url: 'http://a:7470', epoch: 57 },
    leaseRemainingMs: null,
    etcd,
  }
  const lines = (group: StatusGroup) =>
    renderStatus({ cluster: 'c', name: 'hub-b', epoch: 57 }, [], NOW, true, [], group).split('\n')
  // Its own epoch says nothing (0, or the one it last led under): its role does.
  expect(lines(standby)[0]).toBe('Cluster c - hub hub-b (standby) - 0 nodes: none')
  expect(lines(standby)[2]).toBe(
    'Nodes are judged by the leader only: here each is UNKNOWN (vigil status --hub http://a:7470)',
  )
  expect(lines({ ...standby, role: 'leader', self: 'hub-a' }).join('\n')).not.toContain(
    'judged by the leader',
  )
})
