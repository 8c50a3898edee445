import { StepContext } from './context.js'
import { addLoad, bestNode, candidatesFor, nodeLoad } from './placement.js'
import type { ClusterSpec } from './spec.js'
import type { EngineEnv, EngineState } from './types.js'

export interface WhatIf {
  node: string
  /** Where each of its resources would go if it died now. */
  moves: { resource: string; to: string }[]
  unplaceable: { resource: string; why: string }[]
}

/**
 * "If this node died now": for every node that runs resources, where each would be placed given
 * the others' current load (in priority order, each placement consuming capacity). Pure: works on
 * a load map, never on the state itself.
 */
export function whatIfPlan(spec: ClusterSpec, state: EngineState, env: EngineEnv): WhatIf[] {
  const ctx = new StepContext(spec, state, env)
  const baseLoad = nodeLoad(ctx)
  const byNode = new Map<string, typeof ctx.resourceSpecs>()
  for (const r of ctx.resourceSpecs) {
    const node = state.resources[r.id]?.node
    if (r.kind === 'guest-app' || !node) continue
    byNode.set(node, [...(byNode.get(node) ?? []), r])
  }
  const out: WhatIf[] = []
  for (const node of ctx.nodeSpecs) {
    const moving = byNode.get(node.id)
    if (!moving) continue
    const load = new Map(baseLoad)
    const unavailable = new Set([node.id])
    const plan: WhatIf = { node: node.id, moves: [], unplaceable: [] }
    for (const r of moving) {
      const best = bestNode(ctx, r, { load, unavailable })
      if (best) {
        plan.moves.push({ resource: r.id, to: best })
        addLoad(load, best, r)
      } else {
        const why = candidatesFor(ctx, r, { load, unavailable }).map((c) => `${c.node}: ${c.eliminated}`)
        plan.unplaceable.push({ resource: r.id, why: why.join('; ') })
      }
    }
    out.push(plan)
  }
  return out
}
