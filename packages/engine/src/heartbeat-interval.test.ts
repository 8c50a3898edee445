import { expect, test } from 'vitest'
import { initialState, step } from './engine.js'
import { clusterSpecSchema } from './spec.js'
import type { EngineEnv, Input, NodeCondition } from './types.js'

// The hub's detector is seeded with the interval the agent declares: under the default detection
// (tuned for 4 beats a second) a node beating less often is not suspected between its beats, and
// its silence is still found: dead within two of its intervals and a second after its last beat.
test.each([250, 1000, 5000])(
  'an agent beating every %i ms: healthy between beats, dead once silent',
  (every) => {
    const spec = clusterSpecSchema.parse({ nodes: [{ id: 'n1' }, { id: 'n2' }], resources: [] })
    let now = 0
    const env: EngineEnv = { now: () => now, newId: (kind) => `${kind}-${now}`, selfCheck: true }
    let state = initialState(spec, now)
    const seen = new Set<NodeCondition>()
    const lastBeat = 20 * every
    for (now = 0; now <= lastBeat + 2 * every + 1000; now += 50) {
      const inputs: Input[] = []
      if (now % every === 0) {
        inputs.push({ type: 'heartbeat', node: 'n2', intervalMs: every })
        if (now <= lastBeat) inputs.push({ type: 'heartbeat', node: 'n1', intervalMs: every })
      }
      state = step(spec, state, inputs, env).state
      if (now > every && now <= lastBeat) seen.add(state.nodes.n1?.condition as NodeCondition)
    }
    expect([...seen]).toEqual(['healthy'])
    expect(state.nodes.n1?.condition).toBe('dead')
  },
)
