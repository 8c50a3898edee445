import { describe, expect, test } from 'vitest'
import { type ChannelPayload, decode, encode, MAX_PAYLOAD_BYTES } from './codec.js'
import { clusterChannelFilter, NODE_CHANNELS, type NodeChannel, nodeTopic, parseTopic } from './topics.js'

const base = { v: 1 as const, node: 'node-1', incarnation: 1_700_000_000_000 }
const uuid = '0b7a3c1e-8d5f-4a5e-9a1b-2c3d4e5f6a7b'

const valid: { [C in NodeChannel]: ChannelPayload<C> } = {
  hb: { ...base, seq: 42, sentMono: 1234.5, sentAt: 1_700_000_000_250, intervalMs: 250 },
  status: {
    ...base,
    state: 'online',
    at: 1_700_000_000_000,
    agentVersion: '0.1.0',
    role: 'host',
    capabilities: ['ping'],
  },
  facts: {
    ...base,
    collectedAt: 1_700_000_000_000,
    hostname: 'node-1.example',
    os: { platform: 'linux', release: '6.1.0', arch: 'x64' },
    cpus: 2,
    memory: { totalBytes: 1024, availableBytes: 512 },
    load: [0.1, 0.2, 0.3],
    uptimeSeconds: 100,
    processCount: 77,
    filesystems: [
      {
        mount: '/',
        device: '/dev/vda',
        fstype: 'ext4',
        sizeBytes: 100,
        freeBytes: 50,
        availBytes: 40,
        inodes: 10,
        inodesFree: 5,
      },
    ],
    interfaces: [
      {
        name: 'eth0',
        mac: '52:54:00:12:34:56',
        mtu: 1500,
        operstate: 'up',
        carrier: true,
        speedMbps: 1000,
        addresses: ['10.0.0.1/24'],
      },
    ],
  },
  obs: {
    ...base,
    seq: 1,
    at: 1_700_000_000_000,
    observations: [{ driver: 'process', target: 'nginx', state: 'running', metrics: { rssBytes: 1e6 } }],
  },
  event: {
    ...base,
    seq: 3,
    at: 1_700_000_000_000,
    kind: 'nic.link_down',
    severity: 'warning',
    message: 'eth1 down',
  },
  cmd: {
    v: 1,
    id: uuid,
    issuer: { hub: 'hub', epoch: 3 },
    seq: 9,
    issuedAt: 1_700_000_000_000,
    expiresAt: 1_700_000_005_000,
    target: 'node-1',
    action: 'ping',
    args: {},
  },
  ack: {
    ...base,
    id: uuid,
    status: 'ok',
    receivedAt: 1_700_000_000_001,
    finishedAt: 1_700_000_000_002,
    result: { pong: true },
  },
}

describe('topics', () => {
  test('round-trip every channel', () => {
    for (const channel of NODE_CHANNELS) {
      expect(parseTopic(nodeTopic('c1', 'n1', channel))).toEqual({ cluster: 'c1', node: 'n1', channel })
    }
  })

  test.each([
    'vigil/v1/c1/node/n1/unknown',
    'vigil/v2/c1/node/n1/hb',
    'vigil/v1/c1/vm/n1/hb',
    'vigil/v1/c1/node/n1/hb/extra',
    'vigil/v1/c1/node//hb',
    'vigil/v1/c1/node/-bad/hb',
    'other/topic',
    '',
  ])('rejects %j', (topic) => {
    expect(parseTopic(topic)).toBeNull()
  })

  test('cluster filter uses a single-level wildcard for the node', () => {
    expect(clusterChannelFilter('c1', 'hb')).toBe('vigil/v1/c1/node/+/hb')
  })
})

describe('decode accepts a valid payload of every channel', () => {
  test.each(NODE_CHANNELS)('%s', (channel) => {
    const text = encode(channel, valid[channel])
    const decoded = decode(channel, Buffer.from(text), channel === 'cmd' ? undefined : 'node-1')
    expect(decoded).toEqual({ ok: true, value: valid[channel] })
  })
})

/** The first element of a list inside a payload under mutation. */
const first = (list: unknown) => (list as Record<string, unknown>[])[0] as Record<string, unknown>

type Mutation = {
  channel: NodeChannel
  name: string
  mutate: (v: Record<string, unknown>) => void
  field: string
}
const mutations: Mutation[] = [
  {
    channel: 'hb',
    name: 'negative seq',
    mutate: (v) => {
      v.seq = -1
    },
    field: 'seq',
  },
  {
    channel: 'hb',
    name: 'fractional seq',
    mutate: (v) => {
      v.seq = 1.5
    },
    field: 'seq',
  },
  {
    channel: 'hb',
    name: 'missing incarnation',
    mutate: (v) => {
      delete v.incarnation
    },
    field: 'incarnation',
  },
  {
    channel: 'hb',
    name: 'wrong version',
    mutate: (v) => {
      v.v = 2
    },
    field: 'v',
  },
  {
    channel: 'hb',
    name: 'interval too small',
    mutate: (v) => {
      v.intervalMs = 1
    },
    field: 'intervalMs',
  },
  {
    channel: 'hb',
    name: 'unknown field',
    mutate: (v) => {
      v.extra = 1
    },
    field: 'extra',
  },
  {
    channel: 'hb',
    name: 'node with a slash',
    mutate: (v) => {
      v.node = 'a/b'
    },
    field: 'node',
  },
  {
    channel: 'hb',
    name: 'string sentAt',
    mutate: (v) => {
      v.sentAt = 'now'
    },
    field: 'sentAt',
  },
  {
    channel: 'status',
    name: 'unknown state',
    mutate: (v) => {
      v.state = 'zombie'
    },
    field: 'state',
  },
  {
    channel: 'status',
    name: 'capabilities not a list',
    mutate: (v) => {
      v.capabilities = 'ping'
    },
    field: 'capabilities',
  },
  {
    channel: 'facts',
    name: 'bad load tuple',
    mutate: (v) => {
      v.load = [1, 2]
    },
    field: 'load',
  },
  {
    channel: 'facts',
    name: 'bad filesystem entry',
    mutate: (v) => {
      first(v.filesystems).sizeBytes = -5
    },
    field: 'filesystems.0.sizeBytes',
  },
  {
    channel: 'facts',
    name: 'unknown operstate',
    mutate: (v) => {
      first(v.interfaces).operstate = 'sideways'
    },
    field: 'interfaces.0.operstate',
  },
  {
    channel: 'facts',
    name: 'zero cpus',
    mutate: (v) => {
      v.cpus = 0
    },
    field: 'cpus',
  },
  {
    channel: 'obs',
    name: 'unknown observation state',
    mutate: (v) => {
      first(v.observations).state = 'meh'
    },
    field: 'observations.0.state',
  },
  {
    channel: 'event',
    name: 'kind with capitals',
    mutate: (v) => {
      v.kind = 'Nic.Down'
    },
    field: 'kind',
  },
  {
    channel: 'event',
    name: 'unknown severity',
    mutate: (v) => {
      v.severity = 'fatal'
    },
    field: 'severity',
  },
  {
    channel: 'cmd',
    name: 'id not a uuid',
    mutate: (v) => {
      v.id = 'x'
    },
    field: 'id',
  },
  {
    channel: 'cmd',
    name: 'unknown action',
    mutate: (v) => {
      v.action = 'rm-rf'
    },
    field: 'action',
  },
  {
    channel: 'cmd',
    name: 'issuer without epoch',
    mutate: (v) => {
      v.issuer = { hub: 'hub' }
    },
    field: 'issuer.epoch',
  },
  {
    channel: 'ack',
    name: 'unknown status',
    mutate: (v) => {
      v.status = 'maybe'
    },
    field: 'status',
  },
  {
    channel: 'ack',
    name: 'error without message',
    mutate: (v) => {
      v.error = { code: 'x' }
    },
    field: 'error.message',
  },
]

describe('decode rejects a payload with a wrong field, naming the field', () => {
  test.each(mutations)('$channel: $name', ({ channel, mutate, field }) => {
    const payload = structuredClone(valid[channel]) as Record<string, unknown>
    mutate(payload)
    const decoded = decode(channel, JSON.stringify(payload))
    expect(decoded.ok).toBe(false)
    if (decoded.ok) return
    expect(decoded.error.reason).toBe('schema')
    expect(decoded.error.field).toBe(field)
    expect(decoded.error.message.startsWith(`${field}:`)).toBe(true)
  })
})

describe('decode rejects malformed payloads by reason', () => {
  test.each([
    { name: 'garbage bytes', payload: Buffer.from([0xff, 0x00, 0x13, 0x37]), reason: 'not_json' },
    { name: 'empty payload', payload: Buffer.alloc(0), reason: 'not_json' },
    { name: 'JSON array', payload: Buffer.from('[]'), reason: 'schema' },
    { name: 'JSON null', payload: Buffer.from('null'), reason: 'schema' },
    { name: 'oversized', payload: Buffer.alloc(MAX_PAYLOAD_BYTES.hb + 1, 0x20), reason: 'too_large' },
  ])('$name -> $reason', ({ payload, reason }) => {
    const decoded = decode('hb', payload)
    expect(decoded.ok).toBe(false)
    if (!decoded.ok) expect(decoded.error.reason).toBe(reason)
  })

  test('a payload that speaks for another node is rejected as node_mismatch', () => {
    const decoded = decode('hb', JSON.stringify(valid.hb), 'node-2')
    expect(decoded).toMatchObject({ ok: false, error: { reason: 'node_mismatch', field: 'node' } })
  })

  test('encode refuses to send an invalid payload', () => {
    expect(() => encode('hb', { ...valid.hb, seq: -1 })).toThrow()
  })
})
