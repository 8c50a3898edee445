import { expect, test } from 'vitest'
import { renderGroup, type StatusGroup } from './status.js'

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
