/**
 * Node liveness from the hub's own view of heartbeats. This is the walking skeleton's detector:
 * it marks nodes, it never acts. The engine (issue #4) replaces it with phi-accrual detectors
 * corroborated across independent channels before anything is fenced.
 *
 *   online  -- heartbeats arriving
 *   suspect -- none for suspectAfterMs (or the broker published the agent's last will)
 *   lost    -- none for lostAfterMs
 *   offline -- the agent announced a clean shutdown
 *   unknown -- known from the store, not heard since this hub started
 */
export type NodeState = 'online' | 'suspect' | 'lost' | 'offline' | 'unknown'
export const NODE_STATES: readonly NodeState[] = ['online', 'suspect', 'lost', 'offline', 'unknown']

export interface LivenessPolicy {
  suspectAfterMs: number
  lostAfterMs: number
}

export interface LivenessInput {
  current: NodeState
  /** Hub-monotonic time of the last heartbeat, or of hub start for nodes not yet heard. */
  lastHeardMono: number
  /** The broker published the agent's last will since the last heartbeat. */
  willReceived: boolean
}

/** Pure: the state a node should be in at `nowMono`. */
export function nextLivenessState(input: LivenessInput, nowMono: number, policy: LivenessPolicy): NodeState {
  if (input.current === 'offline') return 'offline'
  const silentFor = nowMono - input.lastHeardMono
  if (silentFor >= policy.lostAfterMs) return 'lost'
  if (input.current === 'unknown') return 'unknown'
  if (input.current === 'lost') return 'lost' // only a heartbeat brings a lost node back
  if (silentFor >= policy.suspectAfterMs || input.willReceived) return 'suspect'
  return 'online'
}
