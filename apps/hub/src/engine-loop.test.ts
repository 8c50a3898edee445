import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { trace } from '@opentelemetry/api'
import { clusterSpecSchema, type DecisionRecord, type Input } from '@vigil/engine'
import { createLogger } from '@vigil/kit'
import { afterEach, expect, test, vi } from 'vitest'
import type { CommandDispatcher } from './commands.js'
import { EngineLoop } from './engine-loop.js'
import { emptyHubMetrics } from './metrics.test-helper.js'
import { type EventRow, HubStore } from './store.js'
import { DecisionTracer } from './tracing.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

/**
 * A loop over n1 and n2 (`observe`: no cluster file, the nodes in `known`, which a test may change
 * as ingest would), with a hand-driven clock.
 */
function setup(
  opts: {
    group?: { commit: (stateJson: string) => Promise<boolean> }
    observe?: boolean
    store?: HubStore
    now?: number
    slicedSaveAbove?: number
    resources?: { id: string; kind: 'app' }[]
  } = {},
) {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-engine-loop-'))
  dirs.push(dir)
  const store = opts.store ?? new HubStore(join(dir, 'hub.sqlite'))
  let now = opts.now ?? 1_000_000
  const clock = { wallMs: () => now, monoMs: () => now }
  const records: DecisionRecord[] = []
  const events: EventRow[] = []
  const shown: string[] = []
  const stepsAsked: string[] = []
  const known = ['n1', 'n2']
  const metrics = emptyHubMetrics()
  const loop = new EngineLoop({
    stepSoon: () => stepsAsked.push('soon'),
    tracer: new DecisionTracer(trace.getTracer('test'), 30_000),
    spec: opts.observe
      ? null
      : clusterSpecSchema.parse({ nodes: [{ id: 'n1' }, { id: 'n2' }], resources: opts.resources ?? [] }),
    knownNodes: () => [...known],
    store,
    // A seam: no resources in this spec, so the engine never sends a command.
    commands: {} as CommandDispatcher,
    metrics,
    clock,
    log: createLogger('test', 'silent'),
    epoch: () => 1,
    onRecord: (r) => records.push(r),
    onEvent: (e) => events.push(e),
    onNodeCondition: (node) => shown.push(node),
    fence: () => {},
    ...(opts.group ? { group: opts.group } : {}),
    ...(opts.slicedSaveAbove === undefined ? {} : { slicedSaveAbove: opts.slicedSaveAbove }),
  })
  const advance = (ms: number, heard: string[]) => {
    for (let t = 0; t < ms; t += 100) {
      now += 100
      for (const node of heard) loop.input({ type: 'heartbeat', node })
      loop.tick()
    }
  }
  const later = (ms: number) => {
    now += ms
  }
  return { store, loop, records, events, shown, known, metrics, advance, stepsAsked, later }
}

/** The node.condition events, as `node: from -> to (severity, rule)`. */
const conditionEvents = (events: EventRow[]) =>
  events
    .filter((e) => e.kind === 'node.condition')
    .map((e) => `${e.node}: ${e.attrs?.from} -> ${e.attrs?.to} (${e.severity}, ${e.attrs?.rule ?? '-'})`)

const answers: [Input, number][] = [
  [{ type: 'fence-result', actionId: 'a-1', node: 'n1', device: 'bmc', outcome: 'off' }, 1],
  [{ type: 'power-state', node: 'n1', state: 'off', device: 'bmc' }, 1],
  [{ type: 'action-result', actionId: 'a-2', ok: true }, 1],
  [{ type: 'operator', op: { op: 'cleanup', resource: 'web' } }, 1],
  [{ type: 'heartbeat', node: 'n1' }, 0],
  [{ type: 'disk-heartbeat', node: 'n1' }, 0],
]
test.each(answers)('an awaited answer (%o) steps at once, a sample waits for the tick', (input, asked) => {
  const { loop, stepsAsked } = setup()
  loop.input(input)
  expect(stepsAsked).toHaveLength(asked)
})

test('a step that failed is dropped: the loop resumes from the last persisted state', () => {
  const { loop, records, advance, store } = setup()
  advance(1000, ['n1', 'n2'])
  loop.persist()
  // In memory only (the loop persists every 2 s): n1 goes silent and is declared dead.
  advance(1500, ['n2'])
  expect(loop.condition('n1')?.condition).toBe('dead')

  // Recovery discards it: n1 is back as it was persisted, its detector re-armed.
  loop.recover()
  expect(loop.condition('n1')?.condition).toBe('healthy')
  advance(300, ['n1', 'n2'])
  expect(records.some((r) => r.rule === 'hub.restarted')).toBe(true)
  expect(loop.condition('n1')?.condition).toBe('healthy')
  store.close()
})

test('records are stored as they are made, and the state survives a new loop on the same store', () => {
  const { loop, advance, store } = setup()
  advance(500, ['n1', 'n2'])
  advance(3000, ['n1']) // n2 goes silent: suspect, then dead, then "cannot be fenced"
  expect(store.decisions({ node: 'n2', limit: 50 }).map((d) => d.rule)).toEqual(
    expect.arrayContaining(['classify.suspect', 'classify.dead', 'fence.no-devices']),
  )
  loop.persist()
  expect(
    (store.loadEngineState() as { nodes: Record<string, { condition: string }> }).nodes.n2?.condition,
  ).toBe('dead')
  store.close()
})

test('the tally the history samples counts what the resource views show', () => {
  const resources = [
    { id: 'web', kind: 'app' as const },
    { id: 'db', kind: 'app' as const },
  ]
  const { loop, advance, store } = setup({ resources })
  loop.input({ type: 'inventory', node: 'n1', resources: { web: 'running' } })
  loop.input({ type: 'inventory', node: 'n2', resources: { db: 'failed' } })
  advance(200, ['n1', 'n2'])
  const views = loop.resourceViews()
  expect(loop.resourceTally()).toEqual({
    running: views.filter((r) => r.phase === 'running').length,
    total: views.length,
  })
  expect(loop.resourceTally()).toEqual({ running: 1, total: 2 })
  store.close()
})

type SavedNodes = { nodes: Record<string, { condition: string; hub: { lastAt: number } }> }

test('a large state is saved in slices between steps: no step runs until it is written', async () => {
  const { loop, advance, store, stepsAsked } = setup({ slicedSaveAbove: 0 })
  advance(100, ['n1', 'n2']) // the first step starts the first periodic save
  expect(loop.savingInSlices).toBe(true)
  // n2 goes silent for longer than it takes to be declared dead, but no step runs meanwhile.
  advance(3000, ['n1'])
  expect(loop.condition('n2')?.condition).toBe('healthy')
  await vi.waitFor(() => expect(loop.savingInSlices).toBe(false))
  const saved = store.loadEngineState() as SavedNodes
  expect(saved.nodes.n2?.condition).toBe('healthy')
  expect(saved.nodes.n1?.hub.lastAt).toBe(1_000_100) // as the step that started the save left it
  expect(stepsAsked).toContain('soon') // the queued heartbeats are stepped at once
  advance(100, ['n1'])
  expect(loop.condition('n2')?.condition).not.toBe('healthy')
  store.close()
})

test('a save in slices is dropped when the state it was writing is replaced', async () => {
  const { loop, advance, store } = setup({ slicedSaveAbove: 0 })
  advance(100, ['n1', 'n2'])
  await vi.waitFor(() => expect(loop.savingInSlices).toBe(false))
  advance(2000, ['n1', 'n2'])
  expect(loop.savingInSlices).toBe(true)
  loop.recover()
  expect(loop.savingInSlices).toBe(false)
  await new Promise((resolve) => setTimeout(resolve, 20))
  expect((store.loadEngineState() as SavedNodes).nodes.n1?.hub.lastAt).toBe(1_000_100)
  store.close()
})

test('a standby acts on nothing, then takes over on what it heard: a node it heard lately lives, one silent since is judged at once', async () => {
  const { loop, records, advance, later } = setup({ group: { commit: async () => true } })
  expect(loop.acting).toBe(false)
  advance(1000, ['n1', 'n2']) // heard as a standby: nothing is stepped, nothing recorded
  advance(1500, ['n2']) // n1 falls silent while the leader still leads
  expect(records).toEqual([])
  loop.takeOver(null, 'test')
  expect(loop.acting).toBe(true)
  loop.tick()
  later(300)
  loop.tick()
  await new Promise((r) => setImmediate(r))
  const rules = records.map((r) => `${r.rule} ${r.node ?? ''}`)
  expect(rules[0]).toBe('hub.takeover ')
  expect(rules).toContain('classify.suspect n1')
  expect(rules.some((r) => r.endsWith(' n2') && !r.startsWith('classify.healthy'))).toBe(false)
  expect(loop.condition('n2')?.condition).toBe('healthy')

  // Deposed: it stops at once and goes back to listening.
  loop.standDown()
  const before = records.length
  advance(1000, ['n2'])
  expect(records.length).toBe(before)
})

test('in a group, a large state is made once, in slices: the text committed is the text saved', async () => {
  const commits: string[] = []
  const { loop, store, advance } = setup({
    group: {
      commit: async (json: string) => {
        commits.push(json)
        return true
      },
    },
    slicedSaveAbove: 0,
  })
  loop.takeOver(null, 'test')
  advance(100, ['n1', 'n2']) // the first step: its periodic save and commit start
  advance(500, ['n1']) // steps wait for them
  await vi.waitFor(() => expect(commits).toHaveLength(1))
  expect(JSON.parse(commits[0] as string)).toEqual(store.loadEngineState())
  expect(JSON.parse(commits[0] as string).nodes.n1.hub.lastAt).toBe(1_000_100)
  store.close()
})

// One node truth (issue #22): the engine's classification is a node's state everywhere, and each
// change of it is in the event log, as the walking skeleton's liveness transitions were.
test("each change of a node's condition is a node.condition event with the decision behind it, and the node is shown again", () => {
  const { loop, events, shown, advance, store } = setup()
  advance(500, ['n1', 'n2'])
  advance(3000, ['n1']) // n2 falls silent: suspect, then dead
  expect(conditionEvents(events)).toEqual([
    'n1: unknown -> healthy (info, -)', // heard: nothing to explain, no decision record
    'n2: unknown -> healthy (info, -)',
    'n2: healthy -> suspect (warning, classify.suspect)',
    'n2: suspect -> dead (critical, classify.dead)',
  ])
  const dead = events.find((e) => e.attrs?.to === 'dead')
  expect(dead?.message).toBe('suspect -> dead')
  expect(store.getDecision(String(dead?.attrs?.decision))?.classification).toBe('dead')
  expect(store.events({ node: 'n2', limit: 10 }).filter((e) => e.kind === 'node.condition')).toHaveLength(3)
  expect(shown).toEqual(['n1', 'n2', 'n2', 'n2'])
  expect(loop.condition('n2')).toMatchObject({ condition: 'dead', fence: expect.any(String) })
  expect(loop.condition('n2')?.since).toBeGreaterThan(1_000_000)
  store.close()
})

test('a restarted hub tells only what changes after it resumed', () => {
  const first = setup()
  first.advance(500, ['n1', 'n2'])
  first.loop.persist()
  // The same store, a second later: the conditions it resumes were told by the first run.
  const second = setup({ store: first.store, now: 1_001_500 })
  second.advance(500, ['n1', 'n2'])
  second.advance(3000, ['n1'])
  expect(conditionEvents(second.events)).toEqual([
    'n2: healthy -> suspect (warning, classify.suspect)',
    'n2: suspect -> dead (critical, classify.dead)',
  ])
  first.store.close()
})

test('a node the engine does not judge has no condition: one it no longer observes, and any on a standby', async () => {
  const { loop, known, metrics, advance, events } = setup({ observe: true })
  advance(500, ['n1', 'n2'])
  expect(loop.condition('n2')?.condition).toBe('healthy')
  expect(loop.condition('n3')).toBeNull()
  // n2's agent announced a clean shutdown: no longer observed, its last condition no judgement of now.
  known.splice(known.indexOf('n2'), 1)
  advance(3000, ['n1'])
  expect(loop.condition('n2')).toBeNull()
  expect(conditionEvents(events).filter((e) => e.startsWith('n2'))).toEqual([
    'n2: unknown -> healthy (info, -)',
  ])
  const series = (await metrics.registry.getSingleMetric('vigil_node_condition')?.get())?.values ?? []
  expect(new Set(series.map((v) => v.labels.node))).toEqual(new Set(['n1']))
  // Its new run is heard: observed again, healthy again.
  known.push('n2')
  advance(500, ['n1', 'n2'])
  expect(loop.condition('n2')?.condition).toBe('healthy')

  const standby = setup({ group: { commit: async () => true } })
  standby.advance(500, ['n1', 'n2'])
  expect(standby.loop.condition('n1')).toBeNull() // its state is not stepped: it judges nothing
  standby.loop.takeOver(null, 'test')
  standby.advance(500, ['n1', 'n2'])
  await new Promise((r) => setImmediate(r))
  expect(standby.loop.condition('n1')?.condition).toBe('healthy')
})

test('observe mode: nodes joining on every tick are judged in batches, each within a second of being seen', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-engine-loop-'))
  dirs.push(dir)
  // Work takes time here: every reading of the clock is 5 ms later than the one before, so a
  // rebuild of the observed spec (with the step that follows it) costs at least 15 ms, and the next
  // waits at least 150 ms (ten times as long); ticks come every 20 ms.
  let now = 1_000_000
  const clock = { wallMs: () => now, monoMs: () => (now += 5) }
  let known: string[] = []
  const loop = new EngineLoop({
    tracer: new DecisionTracer(trace.getTracer('test'), 30_000),
    spec: null,
    knownNodes: () => known,
    store: new HubStore(join(dir, 'hub.sqlite')),
    commands: {} as CommandDispatcher,
    metrics: emptyHubMetrics(),
    clock,
    log: createLogger('test', 'silent'),
    epoch: () => 1,
    onRecord: () => {},
    onEvent: () => {},
    fence: () => {},
  })
  const seenAt = new Map<string, number>()
  const judgedAfter: number[] = []
  let waitedAtSomeTick = false
  /** One tick 20 ms on; each node judged since is noted with how long after it was first seen. */
  const tickAndCollect = () => {
    now += 20
    loop.tick()
    for (const [id, at] of seenAt)
      if (loop.condition(id) !== null) {
        judgedAfter.push(now - at)
        seenAt.delete(id)
      }
  }
  for (let i = 0; i < 60; i++) {
    // A new array when a node joins, the same one between (as the hub's node table gives them).
    known = [...known, `n${i}`]
    seenAt.set(`n${i}`, now)
    for (const id of known) loop.input({ type: 'heartbeat', node: id, intervalMs: 1000 })
    tickAndCollect()
    if (seenAt.has(`n${i}`)) waitedAtSomeTick = true
  }
  for (let t = 0; t < 100 && seenAt.size > 0; t++) tickAndCollect()
  expect(seenAt.size).toBe(0)
  expect(waitedAtSomeTick).toBe(true) // not one rebuild per tick
  expect(Math.max(...judgedAfter)).toBeLessThanOrEqual(1000 + 2 * 20 + 200) // the cap, a tick, the clock's own steps
})
