import { parentPort } from 'node:worker_threads'
import { type ClusterSpec, type EngineState, whatIfPlan } from '@vigil/engine'

/**
 * The what-if plan's thread: "if this node died now" for every node costs seconds at a thousand
 * hosts, which on the hub's event loop would stall ingest (heartbeats, commands) for as long. It
 * gets a copy of the spec and the state, and answers with the plan; the engine stays pure.
 */
export interface PlanRequest {
  id: number
  /** Sent when it changed (a reload): copying it at every plan would cost the event loop. */
  spec?: ClusterSpec
  state: EngineState
  now: number
}

let spec: ClusterSpec | null = null

parentPort?.on('message', (req: PlanRequest) => {
  const env = { now: () => req.now, newId: (kind: string) => `${kind}-plan` }
  if (req.spec) spec = req.spec
  try {
    if (!spec) throw new Error('no cluster spec received')
    parentPort?.postMessage({ id: req.id, plan: whatIfPlan(spec, req.state, env) })
  } catch (err) {
    parentPort?.postMessage({ id: req.id, error: (err as Error).message })
  }
})
