import { createLogger } from '@vigil/kit'
import { expect, test } from 'vitest'
import { type LeadershipGroup, leadershipEvents } from './takeover.js'

/** A group whose etcd reads are answered by the test, and a hub that notes what it is told to do. */
function harness() {
  const reads: { resolve: (state: unknown) => void; reject: (err: Error) => void }[] = []
  const calls: string[] = []
  const group: LeadershipGroup & { leader: boolean } = {
    leader: true,
    isLeader: () => group.leader,
    loadState: () => new Promise((resolve, reject) => reads.push({ resolve, reject })),
    loadClusterFile: async () => null,
    stepDown: (reason) => calls.push(`stepDown ${reason}`),
  }
  const events = leadershipEvents(
    'hub-a',
    () => group,
    {
      setEpoch: (e) => calls.push(`epoch ${e}`),
      runClusterFile: (f) => calls.push(`clusterFile ${f === null ? 'own' : 'committed'}`),
      takeOver: (committed, why) =>
        calls.push(`takeOver ${committed === null ? 'own' : 'committed'}: ${why}`),
      standDown: () => calls.push('standDown'),
      step: () => calls.push('step'),
      resumeFences: () => calls.push('resumeFences'),
      announceEpoch: () => {
        calls.push('announce')
        return 3
      },
      countTakeover: () => calls.push('count'),
      event: (e) => calls.push(`event ${e.kind}`),
      closing: () => false,
      now: () => 0,
    },
    createLogger('test', 'silent'),
  )
  const settled = () => new Promise((resolve) => setImmediate(resolve))
  return { group, events, reads, calls, settled }
}

test('a takeover: the epoch at once, then the committed state, its own step before the fences in flight, the epoch announced', async () => {
  const h = harness()
  h.events.onLead(42)
  expect(h.calls).toEqual(['epoch 42'])
  h.reads[0]?.resolve({ schema: 1 })
  await h.settled()
  expect(h.calls).toEqual([
    'epoch 42',
    'clusterFile own',
    'takeOver committed: leader of the hub group under epoch 42',
    'count',
    'event hub.takeover',
    'step',
    'resumeFences',
    'announce',
  ])
})

test.each([
  ['deposed during the read', (h: ReturnType<typeof harness>) => h.events.onDepose('lease lost')],
  [
    'no longer the leader when the read answers',
    (h: ReturnType<typeof harness>) => {
      h.group.leader = false
    },
  ],
])('%s: the read is dropped, nothing is taken over', async (_, meanwhile) => {
  const h = harness()
  h.events.onLead(7)
  meanwhile(h)
  h.reads[0]?.resolve(null)
  await h.settled()
  expect(h.calls.filter((c) => c.startsWith('takeOver') || c === 'resumeFences')).toEqual([])
})

test('led again before the first read answered: only the newest takeover acts', async () => {
  const h = harness()
  h.events.onLead(7)
  h.events.onLead(8)
  h.reads[1]?.resolve(null)
  h.reads[0]?.resolve({ schema: 1 })
  await h.settled()
  expect(h.calls.filter((c) => c.startsWith('takeOver'))).toEqual([
    'takeOver own: leader of the hub group under epoch 8',
  ])
})

test('a leader that cannot read the state gives the leadership up', async () => {
  const h = harness()
  h.events.onLead(9)
  h.reads[0]?.reject(new Error('deadline exceeded'))
  await h.settled()
  expect(h.calls).toEqual(['epoch 9', 'stepDown could not read the group state: deadline exceeded'])
})

test('a deposition stands the engine down at once and says why', () => {
  const h = harness()
  h.events.onDepose('etcd unreachable')
  expect(h.calls).toEqual(['standDown', 'event hub.deposed'])
})
