import { step } from './engine.js'
import type { ClusterSpec } from './spec.js'
import type { EngineEnv, EngineState, Input } from './types.js'

/**
 * Steps a cluster whose nodes n1 and n2 are heard, each with a complete (empty) inventory, until
 * `web` has a start pending (5 steps at most); `advance` moves the clock between steps.
 */
export function untilStartPending(
  spec: ClusterSpec,
  from: EngineState,
  env: EngineEnv,
  advance: () => void,
): EngineState {
  let state = from
  for (let i = 0; i < 5 && !state.resources.web?.pending; i++) {
    advance()
    const inputs: Input[] = ['n1', 'n2'].flatMap((node) => [
      { type: 'heartbeat', node } as const,
      { type: 'inventory', node, resources: {} } as const,
    ])
    state = step(spec, state, inputs, env).state
  }
  return state
}
