import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, expect, test } from 'vitest'
import { HubMetrics } from './metrics.js'
import { type NodeJudgement, NodeTable } from './nodes.js'
import { HubStore, type NodeRow } from './store.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

const row = (id: string, shutdownAt: number | null = null): NodeRow => ({
  id,
  shutdownAt,
  incarnation: 1,
  lastHeartbeatAt: 1_000,
  role: 'host',
  agentVersion: '0.1.0',
  capabilities: [],
  facts: null,
  firstSeen: 500,
})

// One node truth (issue #22): what the API, the live feed, `vigil status`, the status page and the
// metrics show as a node's state is the engine's classification, joined to what its agent said.
test("a node's state is the engine's judgement of it; one the engine does not judge is unknown", () => {
  const judged: Record<string, NodeJudgement> = {
    a: {
      condition: 'healthy',
      since: 2_000,
      health: 100,
      fence: 'idle',
      maintenance: null,
      evacuating: false,
    },
    b: { condition: 'dead', since: 3_000, health: 0, fence: 'failed', maintenance: null, evacuating: false },
  }
  const table = new NodeTable((id) => judged[id] ?? null)
  table.load([row('b', 2_500), row('a'), row('c', 1_500)])
  expect(
    table.views().map((n) => [n.id, n.state, n.stateSince, n.shutdownAt, n.engine?.fence ?? null]),
  ).toEqual([
    ['a', 'healthy', 2_000, null, 'idle'],
    ['b', 'dead', 3_000, 2_500, 'failed'], // its agent shut down cleanly; the engine judges the silence
    ['c', 'unknown', null, 1_500, null],
  ])
  expect(table.view('a')).not.toHaveProperty('firstSeen')
  expect(table.running()).toEqual(['a'])
  // What the history samples: the same nodes in the same order, without the views.
  expect(table.healths()).toEqual(table.views().map((n) => ({ id: n.id, health: n.engine?.health ?? null })))
  expect(table.healths().map((n) => n.health)).toEqual([100, 0, null])
})

test('vigil_node_shutdown: 1 for each node whose agent shut down cleanly, 0 for every other', async () => {
  const table = new NodeTable()
  table.load([row('a'), row('b', 2_500)])
  const metrics = new HubMetrics({
    nodes: () => table.views(),
    brokerClients: () => 0,
    group: () => null,
    parts: () => [],
    epoch: () => 1,
  })
  const series = (await metrics.registry.getSingleMetric('vigil_node_shutdown')?.get())?.values ?? []
  expect(series.map((v) => [v.labels.node, v.value])).toEqual([
    ['a', 0],
    ['b', 1],
  ])
})

test("a database from before keeps each clean shutdown; the skeleton's liveness states are dropped", () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-nodes-'))
  dirs.push(dir)
  const path = join(dir, 'hub.sqlite')
  new HubStore(path).close()
  // Back to schema 4, whose nodes had the walking skeleton's state and its time.
  const db = new Database(path)
  db.exec(`ALTER TABLE nodes DROP COLUMN shutdown_at;
    ALTER TABLE nodes ADD COLUMN state TEXT NOT NULL DEFAULT 'unknown';
    ALTER TABLE nodes ADD COLUMN state_since INTEGER NOT NULL DEFAULT 0;`)
  const insert = db.prepare(
    `INSERT INTO nodes (id, state, state_since, incarnation, capabilities, first_seen) VALUES (?, ?, ?, 1, '[]', 1)`,
  )
  insert.run('gone', 'offline', 4_000)
  insert.run('crashed', 'lost', 5_000)
  insert.run('fine', 'online', 6_000)
  db.pragma('user_version = 4')
  db.close()

  const store = new HubStore(path)
  expect(store.loadNodes().map((n) => [n.id, n.shutdownAt])).toEqual([
    ['crashed', null],
    ['fine', null],
    ['gone', 4_000],
  ])
  store.saveNode({ ...row('fine'), shutdownAt: 7_000 })
  expect(store.loadNodes().find((n) => n.id === 'fine')?.shutdownAt).toBe(7_000)
  store.close()
})

test('a cluster-file node no agent has spoken for is shown with the engine’s judgement, never stored', () => {
  const dead: NodeJudgement = {
    condition: 'dead',
    since: 4_000,
    health: 0,
    fence: 'failed',
    maintenance: null,
    evacuating: false,
  }
  const table = new NodeTable(
    (id) => (id === 'silent' ? dead : null),
    () => ['heard', 'silent'],
  )
  table.load([row('heard')])
  expect(table.views().map((v) => [v.id, v.state, v.lastHeartbeatAt])).toEqual([
    ['heard', 'unknown', 1_000],
    ['silent', 'dead', null],
  ])
  expect(table.view('silent')?.state).toBe('dead')
  expect(table.view('stranger')).toBeUndefined()
  expect(table.running()).toEqual(['heard'])
  expect(table.get('silent')).toBeUndefined()
})

test('running(): the same array while no node joins and no shutdown is set or cleared; a new one after', () => {
  const table = new NodeTable()
  table.load([row('b'), row('a', 1_500)])
  const first = table.running()
  expect(first).toEqual(['b'])
  table.ensure('b', 2_000) // known already
  expect(table.running()).toBe(first)
  const a = table.get('a')
  if (!a) throw new Error('a is loaded')
  table.setShutdown(a, 1_600) // still shut down: the same set
  expect(table.running()).toBe(first)
  table.setShutdown(a, null) // a new run
  expect(table.running()).toEqual(['a', 'b'])
  table.ensure('c', 3_000)
  const third = table.running()
  expect(third).toEqual(['a', 'b', 'c'])
  const c = table.get('c')
  if (!c) throw new Error('c was just seen')
  table.setShutdown(c, 3_500)
  expect(table.running()).toEqual(['a', 'b'])
  expect(third).toEqual(['a', 'b', 'c']) // an answer given is never changed afterwards
})
