import { expect, test } from 'vitest'
import { initialState, step } from './engine.js'
import { clusterSpecSchema } from './spec.js'
import { untilStartPending } from './start-pending.test-helper.js'
import type { EngineEnv, Input } from './types.js'

// An action's deadline is the one its driver declares (advertised by the node's agent) plus the
// margin; the policy's actionTimeoutMs only where nothing is declared (issue "long actions": a
// 30 s engine deadline and a 120 s driver timeout for one migration, the shorter winning silently).
const spec = clusterSpecSchema.parse({
  nodes: [{ id: 'n1' }, { id: 'n2' }],
  resources: [{ id: 'web', allowedNodes: ['n1'] }],
})

function startDeadline(declarations: Input[]): number | undefined {
  let now = 1000
  const env: EngineEnv = { now: () => now, newId: (kind) => `${kind}-${now}`, selfCheck: true }
  let state = initialState(spec, now)
  state = step(spec, state, declarations, env).state
  // Heard, with a complete (empty) inventory: web is placed on n1 and a start issued.
  state = untilStartPending(spec, state, env, () => {
    now += 100
  })
  const p = state.resources.web?.pending
  return p ? p.deadline - p.issuedAt : undefined
}

test.each([
  ['nothing declared: the policy fallback', [], 30_000],
  [
    "declared by n1's agent: the driver's timeout plus the margin",
    [{ type: 'action-timeouts', node: 'n1', resources: { web: { start: 45_000 } } }],
    55_000,
  ],
  [
    'declared for another action only: the fallback',
    [{ type: 'action-timeouts', node: 'n1', resources: { web: { stop: 90_000 } } }],
    30_000,
  ],
  [
    'declared by another node: not this one',
    [{ type: 'action-timeouts', node: 'n2', resources: { web: { start: 45_000 } } }],
    30_000,
  ],
  [
    'a later declaration replaces the earlier one',
    [
      { type: 'action-timeouts', node: 'n1', resources: { web: { start: 45_000 } } },
      { type: 'action-timeouts', node: 'n1', resources: { web: { start: 5000 } } },
    ],
    15_000,
  ],
  [
    'unknown nodes, resources, actions and bad numbers are ignored',
    [
      { type: 'action-timeouts', node: 'nope', resources: { web: { start: 1 } } },
      { type: 'action-timeouts', node: 'n1', resources: { ghost: { start: 1 }, web: { start: -5, fly: 3 } } },
    ],
    30_000,
  ],
] as [string, Input[], number][])('a start on n1: %s', (_, declarations, expected) => {
  expect(startDeadline(declarations)).toBe(expected)
})
