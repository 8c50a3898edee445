import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { trace } from '@opentelemetry/api'
import { clusterSpecSchema, type DecisionRecord, type Input } from '@vigil/engine'
import { createLogger } from '@vigil/kit'
import { afterEach, expect, test } from 'vitest'
import type { CommandDispatcher } from './commands.js'
import { EngineLoop } from './engine-loop.js'
import { emptyHubMetrics } from './metrics.test-helper.js'
import { HubStore } from './store.js'
import { DecisionTracer } from './tracing.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function setup(opts: { group?: { commit: () => Promise<boolean> } } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-engine-loop-'))
  dirs.push(dir)
  const store = new HubStore(join(dir, 'hub.sqlite'))
  let now = 1_000_000
  const clock = { wallMs: () => now, monoMs: () => now }
  const records: DecisionRecord[] = []
  const stepsAsked: string[] = []
  const loop = new EngineLoop({
    stepSoon: () => stepsAsked.push('soon'),
    tracer: new DecisionTracer(trace.getTracer('test'), 30_000),
    spec: clusterSpecSchema.parse({ nodes: [{ id: 'n1' }, { id: 'n2' }] }),
    knownNodes: () => ['n1', 'n2'],
    store,
    // A seam: no resources in this spec, so the engine never sends a command.
    commands: {} as CommandDispatcher,
    metrics: emptyHubMetrics(),
    clock,
    log: createLogger('test', 'silent'),
    epoch: () => 1,
    onRecord: (r) => records.push(r),
    onEvent: () => {},
    fence: () => {},
    ...(opts.group ? { group: opts.group } : {}),
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
  return { store, loop, records, advance, stepsAsked, later }
}

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
