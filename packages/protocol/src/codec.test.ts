import { describe, expect, test } from 'vitest'
import { decode, encode, MAX_PAYLOAD_BYTES } from './codec.js'
import { valid } from './fixtures.test-helper.js'
import { clusterChannelFilter, NODE_CHANNELS, type NodeChannel, nodeTopic, parseTopic } from './topics.js'

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
    channel: 'obs',
    name: 'a hypervisor outside the closed set (a metric label)',
    mutate: (v) => {
      ;(v.observations as Record<string, unknown>[])[1] = {
        driver: 'libvirt',
        target: 'vm1',
        state: 'running',
        hypervisor: 'hyperv',
      }
    },
    field: 'observations.1.hypervisor',
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
