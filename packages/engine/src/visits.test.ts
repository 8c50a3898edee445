import { expect, test } from 'vitest'
import { initialState, step } from './engine.js'
import { clusterSpecSchema } from './spec.js'
import type { EngineEnv, EngineState, Input } from './types.js'

// The visit index (visits.ts) lets a step look only at resources that may need it. A change to a
// resource made without a mark is a bug: the self-check finds it at once, and without the check
// the sweep still visits that resource within 50 steps.
const resources = Array.from({ length: 200 }, (_, i) => ({ id: `r${String(i).padStart(3, '0')}` }))
const spec = clusterSpecSchema.parse({ nodes: [{ id: 'h1' }, { id: 'h2' }], resources })

function cluster(selfCheck: boolean) {
  let now = 1000
  let ids = 0
  const env: EngineEnv = { now: () => now, newId: (kind) => `${kind}-${ids++}`, selfCheck }
  let state: EngineState = initialState(spec, now)
  const running = Object.fromEntries(resources.map((r) => [r.id, 'running' as const]))
  const feed = (inputs: Input[] = []) => {
    now += 100
    const beats: Input[] = [
      { type: 'heartbeat', node: 'h1' },
      { type: 'heartbeat', node: 'h2' },
    ]
    const result = step(spec, state, [...beats, ...inputs], env)
    state = result.state
    return result
  }
  feed([
    { type: 'inventory', node: 'h1', resources: running },
    { type: 'inventory', node: 'h2', resources: {} },
  ])
  for (let i = 0; i < 5; i++) feed()
  return { feed, state: () => state, now: () => now }
}

/** What a missed mark looks like: a pending action put on a steady resource behind the engine's back. */
function pokePending(state: EngineState, id: string, now: number): void {
  const r = state.resources[id]
  if (!r) throw new Error(id)
  r.pending = {
    actionId: 'a-poked',
    type: 'restart',
    node: 'h1',
    issuedAt: now - 60_000,
    deadline: now - 1,
    afterStop: null,
  }
}

test('steady resources are all running and adopted before the poke', () => {
  const c = cluster(true)
  expect(Object.values(c.state().resources).every((r) => r.phase === 'running' && r.node === 'h1')).toBe(true)
})

test('the self-check names a resource that changed without a mark', () => {
  const c = cluster(true)
  pokePending(c.state(), 'r150', c.now())
  expect(() => c.feed()).toThrow(/visit index: r150/)
})

test('without the self-check, the sweep visits such a resource within 50 steps', () => {
  const c = cluster(false)
  pokePending(c.state(), 'r150', c.now())
  let steps = 0
  while (c.state().resources.r150?.pending && steps < 60) {
    c.feed()
    steps++
  }
  // Visited: its restart, seen done (running since), is settled.
  expect(c.state().resources.r150?.pending).toBeNull()
  expect(steps).toBeGreaterThan(1) // not at once: nothing marked it
  expect(steps).toBeLessThanOrEqual(50)
})
