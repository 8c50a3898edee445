import { expect, test } from 'vitest'
import { initialState, step } from './engine.js'
import { clusterSpecSchema } from './spec.js'
import type { EngineEnv, Input, NodeCondition } from './types.js'

// The hub's detector is seeded with the interval the agent declares: at one beat a second under the
// default detection (tuned for 4 a second), a node is not suspected between beats, and a silence
// is still found within about 1.7 s.
test.each([
  [250, 'healthy'],
  [1000, 'healthy'],
  [5000, 'healthy'],
] as const)('an agent beating every %i ms, judged between its beats: %s', (every, expected) => {
  const spec = clusterSpecSchema.parse({ nodes: [{ id: 'n1' }, { id: 'n2' }], resources: [] })
  let now = 0
  const env: EngineEnv = { now: () => now, newId: (kind) => `${kind}-${now}` }
  let state = initialState(spec, now)
  const seen = new Set<NodeCondition>()
  for (now = 0; now <= 20 * every; now += 50) {
    const inputs: Input[] = []
    if (now % every === 0)
      inputs.push(
        { type: 'heartbeat', node: 'n1', intervalMs: every },
        { type: 'heartbeat', node: 'n2', intervalMs: every },
      )
    state = step(spec, state, inputs, env).state
    if (now > every) seen.add(state.nodes.n1?.condition as NodeCondition)
  }
  expect([...seen]).toEqual([expected])
})
