import { expect, test } from 'vitest'
import { initialState, step } from './engine.js'
import { clusterSpecSchema } from './spec.js'
import { untilStartPending } from './start-pending.test-helper.js'
import type { EngineEnv, EngineState, Input } from './types.js'

// A result names the node that answered it: in a hub group a result can reach a hub that did not
// send the command (by the action id its agent echoed), and it must settle only the action pending
// on that node, never one on another node.
const spec = clusterSpecSchema.parse({
  nodes: [{ id: 'n1' }, { id: 'n2' }],
  resources: [{ id: 'web', allowedNodes: ['n1'] }],
})

function withStartPending(): { state: EngineState; env: EngineEnv; actionId: string; tick: () => void } {
  let now = 1000
  const env: EngineEnv = { now: () => now, newId: (kind) => `${kind}-${now}`, selfCheck: true }
  const state = untilStartPending(spec, initialState(spec, now), env, () => {
    now += 100
  })
  const actionId = state.resources.web?.pending?.actionId as string
  return { state, env, actionId, tick: () => (now += 100) }
}

test.each<[string, string | undefined, boolean]>([
  ['from the node the action is pending on: settles it', 'n1', true],
  ['without a node (the hub that sent it matched it itself): settles it', undefined, true],
  ['from another node: not this action', 'n2', false],
])('a start result %s', (_, node, settles) => {
  const { state, env, actionId, tick } = withStartPending()
  expect(actionId).toBeTruthy()
  tick()
  const result: Input = { type: 'action-result', actionId, ok: true, ...(node ? { node } : {}) }
  const after = step(spec, state, [result], env).state
  expect(after.resources.web?.pending === null).toBe(settles)
  expect(after.resources.web?.phase).toBe(settles ? 'running' : 'starting')
})
