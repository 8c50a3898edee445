/**
 * What the what-if plan reads of the engine state, in a form that crosses to another thread without
 * a deep copy: each resource's node and phase as typed arrays (their buffers are moved, not
 * copied), the few resources with a placement constraint of their own (a node to avoid, failures,
 * an operator's move) and the nodes' placement fields as small objects. A structured clone of the
 * whole state held the hub's event loop 327 ms at 5,000 hosts and 50,000 resources.
 *
 * The contract: `whatIfPlan(spec, stateFromPlanView(spec, planView(spec, state)))` is
 * `whatIfPlan(spec, state)` (plan.test.ts checks it). A field placement starts to read must be
 * carried here.
 */

import { initialState } from './engine.js'
import type { ClusterSpec } from './spec.js'
import type { EngineState, NodeState, ResourcePhase, ResourceState } from './types.js'

type NodePlacementFields = Pick<
  NodeState,
  'condition' | 'maintenance' | 'evacuating' | 'degraded' | 'connectivity'
> & {
  fencePhase: NodeState['fence']['phase']
}

export interface PlanView {
  /** Per resource, in the spec's resource order: its node's position in `nodes`, or -1. */
  node: Int32Array
  /** Per resource: its phase, as a position in `phases`. */
  phase: Uint8Array
  phases: ResourcePhase[]
  /** The spec's nodes' ids, in `node`'s numbering. */
  nodeIds: string[]
  /** Resources with a constraint of their own, by position in the spec's resource order. */
  constrained: {
    i: number
    avoid: string | null
    failures: ResourceState['failures']
    move: ResourceState['move']
  }[]
  /** The spec's nodes, in its order. */
  nodes: NodePlacementFields[]
  maintenance: EngineState['maintenance']
}

/** The buffers a `postMessage` of the view may move rather than copy. */
export function planViewTransfer(view: PlanView): ArrayBuffer[] {
  return [view.node.buffer as ArrayBuffer, view.phase.buffer as ArrayBuffer]
}

export function planView(spec: ClusterSpec, state: EngineState): PlanView {
  const nodeIds = spec.nodes.map((n) => n.id)
  const position = new Map(nodeIds.map((id, i) => [id, i]))
  const phases: ResourcePhase[] = []
  const phaseCode = new Map<ResourcePhase, number>()
  const node = new Int32Array(spec.resources.length)
  const phase = new Uint8Array(spec.resources.length)
  const constrained: PlanView['constrained'] = []
  spec.resources.forEach((rs, i) => {
    const r = state.resources[rs.id]
    if (!r) throw new Error(`engine: no state for resource ${rs.id}`)
    node[i] = r.node === null ? -1 : (position.get(r.node) ?? -1)
    let code = phaseCode.get(r.phase)
    if (code === undefined) {
      code = phases.push(r.phase) - 1
      phaseCode.set(r.phase, code)
    }
    phase[i] = code
    if (r.avoid !== null || r.failures.length > 0 || r.move !== null)
      constrained.push({ i, avoid: r.avoid, failures: r.failures, move: r.move })
  })
  const nodes = spec.nodes.map((ns) => {
    const n = state.nodes[ns.id]
    if (!n) throw new Error(`engine: no state for node ${ns.id}`)
    return {
      condition: n.condition,
      fencePhase: n.fence.phase,
      maintenance: n.maintenance,
      evacuating: n.evacuating,
      degraded: n.degraded,
      connectivity: n.connectivity,
    }
  })
  return { node, phase, phases, nodeIds, constrained, nodes, maintenance: state.maintenance }
}

/** An engine state holding what the view carries (every other field at its starting value). */
export function stateFromPlanView(spec: ClusterSpec, view: PlanView): EngineState {
  const state = initialState(spec, 0)
  state.maintenance = view.maintenance
  spec.nodes.forEach((ns, i) => {
    const v = view.nodes[i] as NodePlacementFields
    const n = state.nodes[ns.id] as NodeState
    n.condition = v.condition
    n.fence.phase = v.fencePhase
    n.maintenance = v.maintenance
    n.evacuating = v.evacuating
    n.degraded = v.degraded
    n.connectivity = v.connectivity
  })
  spec.resources.forEach((rs, i) => {
    const r = state.resources[rs.id] as ResourceState
    const at = view.node[i] as number
    r.node = at < 0 ? null : (view.nodeIds[at] ?? null)
    r.phase = view.phases[view.phase[i] as number] as ResourcePhase
  })
  for (const c of view.constrained) {
    const r = state.resources[(spec.resources[c.i] as { id: string }).id] as ResourceState
    r.avoid = c.avoid
    r.failures = c.failures
    r.move = c.move
  }
  return state
}
