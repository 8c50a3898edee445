import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger, systemClock } from '@vigil/kit'
import { type EtcdCluster, startEtcdCluster } from '@vigil/testbed'
import * as etcd3 from 'etcd3'
import { Etcd3 } from 'etcd3'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { type GroupConfig, HubGroup } from './group.js'

// A real 3-member etcd cluster (Debian's etcd-server) on loopback; every hub of the group is a
// HubGroup of its own with its own etcd client, as in separate processes.
let etcd: EtcdCluster
const dir = mkdtempSync(join(tmpdir(), 'vigil-group-'))
beforeAll(async () => {
  etcd = await startEtcdCluster({ dir })
}, 60_000)
afterAll(async () => {
  await etcd?.stop()
  rmSync(dir, { recursive: true, force: true })
})

interface Member {
  group: HubGroup
  led: number[]
  deposed: string[]
}

let clusterSeq = 0
function members(
  names: string[],
  cluster: string,
  config: Partial<GroupConfig> = {},
  mayLead: (name: string) => string | null = () => null,
): Member[] {
  return names.map((name) => {
    const m: Member = { group: null as unknown as HubGroup, led: [], deposed: [] }
    m.group = new HubGroup(
      etcd3,
      { endpoints: etcd.endpoints, leaseTtlSeconds: 2, pollMs: 100, ...config },
      { name, cluster, url: `http://${name}.example:7470` },
      {
        onLead: (epoch) => m.led.push(epoch),
        onDepose: (why) => m.deposed.push(why),
        mayLead: () => mayLead(name),
      },
      systemClock,
      createLogger('test', 'silent'),
    )
    return m
  })
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

const leaders = (ms: Member[]) => ms.filter((m) => m.group.isLeader())

describe('the hub group on a real etcd cluster', () => {
  test('exactly one hub leads; the others know who, and a commit succeeds only for the leader', async () => {
    const cluster = `c${++clusterSeq}`
    const ms = members(['hub-a', 'hub-b', 'hub-c'], cluster)
    for (const m of ms) m.group.start()
    try {
      await until('a leader', () => leaders(ms).length === 1 && leaders(ms)[0]?.led.length === 1)
      await until('every standby knows the leader', () =>
        ms.every((m) => m.group.view().leader?.hub === leaders(ms)[0]?.group.view().self),
      )
      const [leader] = leaders(ms) as [Member]
      const standbys = ms.filter((m) => m !== leader)
      expect(leader.led).toHaveLength(1)
      expect(leader.group.epoch).toBe(leader.led[0])
      expect(standbys.every((s) => s.group.role === 'standby' && s.led.length === 0)).toBe(true)

      const intent = { id: 'a-1', type: 'start', node: 'n1', resource: 'web', decision: 'd-1' }
      expect(await leader.group.commit(JSON.stringify({ schema: 1, n: 1 }), [intent])).toBe(true)
      for (const s of standbys)
        expect(await s.group.commit(JSON.stringify({ schema: 1, n: 2 }), [intent])).toBe(false)
      expect(await standbys[0]?.group.loadState()).toEqual({ schema: 1, n: 1 })
      const recorded = await leader.group.intents(leader.group.epoch as number)
      expect(recorded).toEqual([
        expect.objectContaining({ ...intent, hub: leader.group.view().self, epoch: leader.group.epoch }),
      ])
    } finally {
      for (const m of ms) await m.group.close()
    }
  })

  test('a hub that may not lead (its database cannot be written) gives the leadership up and does not campaign until it may', async () => {
    const cluster = `c${++clusterSeq}`
    const vetoed = new Set<string>()
    const ms = members(['hub-a', 'hub-b'], cluster, {}, (name) => (vetoed.has(name) ? 'database full' : null))
    for (const m of ms) m.group.start()
    try {
      await until('a leader', () => leaders(ms).length === 1)
      const first = leaders(ms)[0] as Member
      const other = ms.find((m) => m !== first) as Member
      vetoed.add(first.group.view().self)
      await until('the other hub leads', () => other.group.isLeader(), 5000)
      expect(first.deposed).toEqual(['this hub may not lead: database full'])
      // Vetoed, it stays a standby even once the leader leaves.
      await other.group.close()
      await new Promise((r) => setTimeout(r, 3000))
      expect(first.group.isLeader()).toBe(false)
      vetoed.clear()
      await until('it leads again once it may', () => first.group.isLeader(), 5000)
    } finally {
      for (const m of ms) await m.group.close()
    }
  })

  test('a leader that leaves hands over at once, under a greater epoch', async () => {
    const cluster = `c${++clusterSeq}`
    const ms = members(['hub-a', 'hub-b'], cluster)
    for (const m of ms) m.group.start()
    try {
      await until('a leader', () => leaders(ms).length === 1)
      const first = leaders(ms)[0] as Member
      const firstEpoch = first.group.epoch as number
      const other = ms.find((m) => m !== first) as Member
      await first.group.close()
      await until('the other hub leads', () => other.group.isLeader(), 5000)
      expect(other.group.epoch).toBeGreaterThan(firstEpoch)
      expect(await first.group.commit(JSON.stringify({ schema: 1 }), [])).toBe(false)
    } finally {
      for (const m of ms) await m.group.close()
    }
  })

  test('a leader whose key is taken away (its lease revoked behind its back) is deposed and writes nothing', async () => {
    const cluster = `c${++clusterSeq}`
    const [a, b] = members(['hub-a', 'hub-b'], cluster) as [Member, Member]
    a.group.start()
    await until('hub-a leads', () => a.group.isLeader())
    b.group.start()
    const admin = new Etcd3({ hosts: etcd.endpoints })
    try {
      const epochA = a.group.epoch as number
      // What a lease expiring in etcd while hub-a was paused looks like from etcd's side.
      await admin.delete().key(`/vigil/${cluster}/leader`)
      await until('hub-b leads', () => b.group.isLeader(), 5000)
      // hub-a, resuming, tries to record an action under its old leadership: refused by etcd.
      const committed = await a.group.commit(JSON.stringify({ schema: 1, by: 'a' }), [
        { id: 'a-9', type: 'fence', node: 'n2', decision: 'd-9' },
      ])
      expect(committed).toBe(false)
      expect(a.group.isLeader()).toBe(false)
      expect(a.deposed.length).toBeGreaterThanOrEqual(1)
      expect(b.group.epoch).toBeGreaterThan(epochA)
      expect(await admin.getAll().prefix(`/vigil/${cluster}/intents/`).keys()).toEqual([])
    } finally {
      admin.close()
      await a.group.close()
      await b.group.close()
    }
  })

  test('with 2 of 3 etcd members gone the leader stops acting within its lease, and one leads again after', async () => {
    const cluster = `c${++clusterSeq}`
    const ms = members(['hub-a', 'hub-b'], cluster)
    for (const m of ms) m.group.start()
    try {
      await until('a leader', () => leaders(ms).length === 1)
      const leader = leaders(ms)[0] as Member
      const lost = etcd.members.slice(1)
      for (const m of lost) m.kill()
      await until('no hub leads', () => leaders(ms).length === 0, 5000)
      await until('the leader knows it was deposed', () => leader.deposed.length > 0, 1000)
      expect(await leader.group.commit(JSON.stringify({ schema: 1 }), [])).toBe(false)
      // Long enough for every call made without quorum to have been left waiting (they must not
      // hold the leadership loop once etcd is back: each has a deadline).
      await new Promise((r) => setTimeout(r, 3000))
      expect(ms.every((m) => m.group.role === 'no-quorum')).toBe(true)
      for (const m of lost) await m.restart()
      await until('a leader again', () => leaders(ms).length === 1, 20_000)
    } finally {
      for (const m of ms) await m.group.close()
    }
  }, 40_000)
})
