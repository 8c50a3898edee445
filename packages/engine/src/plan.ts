import { StepContext } from './context.js'
import { candidatesFor } from './placement.js'
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
 * the others' current load (in priority order, each placement consuming capacity). Pure; the
 * input state is not modified.
 */
export function whatIfPlan(spec: ClusterSpec, state: EngineState, env: EngineEnv): WhatIf[] {
  const out: WhatIf[] = []
  for (const node of [...spec.nodes].sort((a, b) => a.id.localeCompare(b.id))) {
    const ctx = new StepContext(spec, structuredClone(state), env)
    const victim = ctx.state.nodes[node.id]
    if (!victim) continue
    victim.condition = 'dead'
    const moving = ctx.resourceSpecs.filter(
      (r) => r.kind !== 'guest-app' && ctx.state.resources[r.id]?.node === node.id,
    )
    if (moving.length === 0) continue
    for (const r of moving) (ctx.state.resources[r.id] as { node: string | null }).node = null
    const plan: WhatIf = { node: node.id, moves: [], unplaceable: [] }
    for (const r of moving) {
      const cands = candidatesFor(ctx, r)
      const best = cands.find((c) => c.eliminated === null)
      if (best) {
        plan.moves.push({ resource: r.id, to: best.node })
        ;(ctx.state.resources[r.id] as { node: string | null; phase: string }).node = best.node
        ;(ctx.state.resources[r.id] as { phase: string }).phase = 'running'
      } else {
        plan.unplaceable.push({
          resource: r.id,
          why: cands.map((c) => `${c.node}: ${c.eliminated}`).join('; '),
        })
      }
    }
    out.push(plan)
  }
  return out
}
