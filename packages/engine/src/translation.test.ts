import type { CommandResult, Heartbeat, Observation, ObservationBatch, Status } from '@vigil/protocol/schemas'
import { describe, expect, test } from 'vitest'
import { AgentTranslation, actionResultInput, commandFor } from './translation.js'
import type { Input } from './types.js'

const heartbeat = (disk: Heartbeat['disk'] = []): Heartbeat => ({
  v: 1,
  node: 'node1',
  incarnation: 1,
  seq: 1,
  sentMono: 0,
  sentAt: 0,
  intervalMs: 250,
  disk,
})

const batch = (observations: Observation[], complete = true): ObservationBatch => ({
  v: 1,
  node: 'node1',
  incarnation: 1,
  seq: 1,
  at: 0,
  observations,
  complete,
})

describe('heartbeats', () => {
  test('a disk slot is alive while its counter goes up; the first sighting is only a baseline', () => {
    const t = new AgentTranslation()
    const slot = (counter: number, incarnation = 1) => [{ node: 'node2', incarnation, counter }]
    const diskInputs = (hb: Heartbeat) => t.heartbeat(hb).filter((i) => i.type === 'disk-heartbeat')
    expect(diskInputs(heartbeat(slot(5)))).toEqual([])
    expect(diskInputs(heartbeat(slot(6)))).toEqual([{ type: 'disk-heartbeat', node: 'node2' }])
    expect(diskInputs(heartbeat(slot(6)))).toEqual([])
    expect(diskInputs(heartbeat(slot(1, 2)))).toEqual([{ type: 'disk-heartbeat', node: 'node2' }])
    expect(diskInputs(heartbeat(slot(9, 1)))).toEqual([])
  })

  test('a heartbeat is the node heard, at the interval its agent says, with the peers it hears', () => {
    expect(new AgentTranslation().heartbeat({ ...heartbeat(), hears: ['node2'] })).toEqual([
      { type: 'heartbeat', node: 'node1', intervalMs: 250 },
      { type: 'peer-view', node: 'node1', hears: ['node2'] },
    ])
  })
})

describe('observation batches', () => {
  test('a complete batch is an inventory naming only what runs, with each failure’s why', () => {
    const inputs = new AgentTranslation().observations(
      batch([
        { driver: 'libvirt', target: 'vm1', state: 'running' },
        { driver: 'libvirt', target: 'vm2', state: 'stopped' },
        { driver: 'process', target: 'db', state: 'failed', detail: 'exited 1' },
      ]),
    )
    expect(inputs).toEqual([
      {
        type: 'inventory',
        node: 'node1',
        resources: { vm1: 'running', db: 'failed' },
        reasons: { db: 'exited 1' },
      },
    ])
  })

  test.each([
    ['a monitor failed', true, 'unknown'],
    ['the batch is partial', false, 'running'],
  ] as const)('%s: no inventory, each answered monitor counts alone', (_, complete, state) => {
    const inputs = new AgentTranslation().observations(
      batch(
        [
          { driver: 'libvirt', target: 'vm1', state },
          { driver: 'process', target: 'db', state: 'stopped' },
        ],
        complete,
      ),
    )
    expect(inputs.some((i) => i.type === 'inventory')).toBe(false)
    expect(inputs).toContainEqual({ type: 'resource-state', node: 'node1', resource: 'db', state: 'stopped' })
    expect(inputs.filter((i) => i.type === 'resource-state')).toHaveLength(state === 'unknown' ? 1 : 2)
  })

  test.each([
    ['every link up', [{ state: 'running' as const }], false, 'all links up'],
    ['a link down', [{ state: 'failed' as const, detail: 'eth0 down' }], true, 'eth0 down'],
    [
      'a bond short of a slave',
      [{ state: 'running' as const, metrics: { degraded: 1 } }],
      true,
      'bond0 running',
    ],
  ])('links: %s', (_, links, degraded, detail) => {
    const inputs = new AgentTranslation().observations(
      batch(links.map((l) => ({ driver: 'nic', target: 'bond0', ...l }))),
    )
    expect(inputs).toContainEqual({ type: 'link-state', node: 'node1', degraded, detail })
  })

  test('connectivity is summed over the ping resources', () => {
    const inputs = new AgentTranslation().observations(
      batch([
        { driver: 'ping', target: 'gw', state: 'running', metrics: { reachable: 1, total: 2 } },
        { driver: 'ping', target: 'dns', state: 'running', metrics: { reachable: 2, total: 2 } },
      ]),
    )
    expect(inputs).toContainEqual({ type: 'connectivity', node: 'node1', reachable: 3, total: 4 })
  })

  test('a guest heartbeat count: a baseline first, alive when it goes up, a new baseline when it goes down', () => {
    const t = new AgentTranslation()
    const beats = (count: number) =>
      t
        .observations(
          batch([
            {
              driver: 'libvirt',
              target: 'vm1',
              state: 'running',
              ageMs: 40,
              metrics: { guestHeartbeats: count },
            },
          ]),
        )
        .filter((i) => i.type === 'guest-heartbeat' || i.type === 'guest-sample')
    const alive = [
      { type: 'guest-sample', node: 'node1', resource: 'vm1', ageMs: 40 },
      { type: 'guest-heartbeat', resource: 'vm1' },
    ]
    const sampleOnly = [alive[0]]
    expect(beats(10)).toEqual(sampleOnly)
    expect(beats(11)).toEqual(alive)
    expect(beats(11)).toEqual(sampleOnly)
    expect(beats(2)).toEqual(sampleOnly)
    expect(beats(3)).toEqual(alive)
  })
})

describe('command results', () => {
  const result = (status: CommandResult['status'], error?: CommandResult['error']): CommandResult => ({
    v: 1,
    id: '00000000-0000-4000-8000-000000000001',
    node: 'node1',
    incarnation: 1,
    status,
    receivedAt: 0,
    finishedAt: 0,
    ...(error ? { error } : {}),
  })

  test.each([
    ['ok', result('ok'), { ok: true }],
    [
      'a transient driver failure keeps its scope and its own words',
      result('failed', { code: 'transient', message: 'libvirtd busy' }),
      { ok: false, error: { kind: 'transient', message: 'libvirtd busy' } },
    ],
    [
      'a local driver failure',
      result('failed', { code: 'local', message: 'no such bridge' }),
      { ok: false, error: { kind: 'local', message: 'no such bridge' } },
    ],
    [
      'a refusal is never retried and says it was refused',
      result('refused', { code: 'expired', message: 'command expired' }),
      {
        ok: false,
        error: { kind: 'config', message: 'node1 refused the command: expired: command expired' },
      },
    ],
  ])('%s', (_, r, expected) => {
    expect(actionResultInput('a1', r)).toEqual({
      type: 'action-result',
      actionId: 'a1',
      node: 'node1',
      ...expected,
    })
  })
})

test('an engine action becomes a command whose id travels as the idempotency key', () => {
  expect(
    commandFor({
      type: 'migrate',
      id: 'a7',
      node: 'node1',
      to: 'node2',
      resource: 'vm1',
      decision: 'd3',
    } as Parameters<typeof commandFor>[0]),
  ).toEqual({
    target: 'node1',
    action: 'migrate',
    args: { resource: 'vm1', decision: 'd3', action: 'a7', to: 'node2' },
  })
})

describe('status', () => {
  const status = (over: Partial<Status>): Status => ({
    v: 1,
    node: 'node1',
    incarnation: 1,
    state: 'online',
    at: 0,
    agentVersion: 'test',
    role: 'host',
    capabilities: [],
    ...over,
  })
  test.each([
    [
      'a birth with declared timeouts',
      status({ actionTimeouts: { web: { start: 5000 } } }),
      [{ type: 'action-timeouts', node: 'node1', resources: { web: { start: 5000 } } }],
    ],
    ['a birth declaring nothing', status({}), []],
    [
      'the agent alone stopping',
      status({ state: 'offline', stopping: 'agent' }),
      [{ type: 'agent-stopped', node: 'node1', hostShutdown: false }],
    ],
    [
      'stopping with its host',
      status({ state: 'offline', stopping: 'host' }),
      [{ type: 'agent-stopped', node: 'node1', hostShutdown: true }],
    ],
    [
      'an older agent stopping, saying nothing of what stops: its silence is judged',
      status({ state: 'offline' }),
      [],
    ],
    ["the broker's last will", status({ state: 'gone', stopping: 'agent' }), []],
  ] as [string, Status, Input[]][])('%s', (_, said, inputs) => {
    expect(new AgentTranslation().status(said)).toEqual(inputs)
  })
})
