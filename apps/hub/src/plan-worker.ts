import { parentPort } from 'node:worker_threads'
import { type ClusterSpec, type PlanView, stateFromPlanView, whatIfPlan } from '@vigil/engine'

/**
 * The what-if plan's thread: "if this node died now" for every node costs a second at 5,000 hosts,
 * which on the hub's event loop would stall ingest (heartbeats, commands) for as long. It gets the
 * spec once and, per plan, what the plan reads of the state (a PlanView: typed arrays moved, not
 * copied), and answers with the plan as JSON text: one flat string to copy back, parsed on the
 * hub's side only when asked for. The engine stays pure.
 */
export interface PlanRequest {
  id: number
  /** Sent when it changed (a reload): copying it at every plan would cost the event loop. */
  spec?: ClusterSpec
  view: PlanView
  now: number
}

export interface PlanAnswer {
  id: number
  /** The plan (WhatIf[]) as JSON. */
  plan?: string
  error?: string
}

let spec: ClusterSpec | null = null

parentPort?.on('message', (req: PlanRequest) => {
  const env = { now: () => req.now, newId: (kind: string) => `${kind}-plan` }
  if (req.spec) spec = req.spec
  try {
    if (!spec) throw new Error('no cluster spec received')
    const plan = whatIfPlan(spec, stateFromPlanView(spec, req.view), env)
    parentPort?.postMessage({ id: req.id, plan: JSON.stringify(plan) } satisfies PlanAnswer)
  } catch (err) {
    parentPort?.postMessage({ id: req.id, error: (err as Error).message } satisfies PlanAnswer)
  }
})
