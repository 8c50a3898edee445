import { clusterSpecSchema, type Input, initialState, step, whatIfPlan } from '@vigil/engine'
import { createLogger } from '@vigil/kit'
import { afterEach, expect, test, vi } from 'vitest'
import { Planner } from './planner.js'

const log = createLogger('test', 'silent')
const planners: Planner[] = []
afterEach(async () => {
  for (const p of planners.splice(0)) await p.close()
})

/** Three nodes, web and db running on n1: what n1's death would move, and where. */
function cluster() {
  const spec = clusterSpecSchema.parse({
    nodes: [{ id: 'n1' }, { id: 'n2' }, { id: 'n3' }],
    resources: [
      { id: 'web', preferred: { n1: 10, n2: 5 } },
      { id: 'db', preferred: { n1: 10, n3: 5 } },
    ],
  })
  let now = 0
  const env = { now: () => now, newId: (kind: string) => `${kind}-${now}` }
  let state = initialState(spec, 0)
  const heard = ['n1', 'n2', 'n3'].map((node) => ({ type: 'heartbeat' as const, node }))
  for (; now <= 2000; now += 100) {
    const inventory = ['n1', 'n2', 'n3'].map(
      (node): Input => ({
        type: 'inventory',
        node,
        resources: node === 'n1' ? { web: 'running', db: 'running' } : {},
      }),
    )
    state = step(spec, state, [...heard, ...inventory], env).state
  }
  return { spec, state, now }
}

test('the plan computed on the thread is the one the engine computes, and is answered without waiting', async () => {
  const { spec, state, now } = cluster()
  const planner = new Planner(log, new URL('../dist/plan-worker.js', import.meta.url))
  planners.push(planner)
  expect(planner.latest()).toBeNull()
  planner.refresh(spec, state, now)
  expect(planner.busy).toBe(true)
  planner.refresh(spec, state, now + 1) // one at a time: ignored while busy
  await vi.waitFor(() => expect(planner.latest()).not.toBeNull(), { timeout: 10_000 })
  const expected = whatIfPlan(spec, state, { now: () => now, newId: (kind) => `${kind}-plan` })
  expect(planner.latest()).toEqual({ at: now, plan: expected })
  expect(
    expected
      .find((p) => p.node === 'n1')
      ?.moves.map((m) => m.resource)
      .sort(),
  ).toEqual(['db', 'web'])
  expect(planner.busy).toBe(false)
})
