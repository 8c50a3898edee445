import type { StepContext } from './context.js'
import { type NodeSpec, policyOf, type ResourceSpec } from './spec.js'
import type { Candidate, NodeState, ResourceState } from './types.js'
import { indexedLoad } from './visits.js'

/** Score taken from a node with degraded links: it is chosen only when no better one is eligible. */
export const DEGRADED_PENALTY = 50

/** Why the node a resource was just relocated away from is passed over while another can run it. */
const AVOIDED = 'it just failed here (relocating away)'

/** Score added for an operator's move while it lasts: wins over any preference. */
export const MOVE_SCORE = 1_000_000

const NO_LOAD: Readonly<NodeLoad> = Object.freeze({ memoryMb: 0, vcpus: 0, count: 0 })

export interface NodeLoad {
  memoryMb: number
  vcpus: number
  count: number
}

/** What each node carries now: one pass over the resources (guest apps live inside their vms). */
export function nodeLoad(ctx: StepContext): Map<string, NodeLoad> {
  // A pass over every resource costs 70 ms at 50,000: the visit index keeps the sums.
  const indexed = indexedLoad(ctx)
  if (indexed && !ctx.env.selfCheck) return indexed
  const load = summedLoad(ctx)
  if (indexed) {
    const differs = [...new Set([...load.keys(), ...indexed.keys()])].find(
      (node) => JSON.stringify(load.get(node)) !== JSON.stringify(indexed.get(node)),
    )
    if (differs !== undefined)
      throw new Error(
        `engine visit index: load of ${differs} is ${JSON.stringify(indexed.get(differs))}, summed ${JSON.stringify(load.get(differs))}`,
      )
  }
  return load
}

/** What each node carries, summed over every resource. */
function summedLoad(ctx: StepContext): Map<string, NodeLoad> {
  const load = new Map<string, NodeLoad>()
  const states = ctx.resourceStates()
  for (let i = 0; i < states.length; i++) {
    const spec = ctx.resourceSpecs[i] as ResourceSpec
    const s = states[i]
    if (!s?.node || s.phase === 'stopped' || spec.kind === 'guest-app') continue
    // Summed in place into entries of its own; `addLoad` replaces entries, so copies of this map
    // (a what-if's) never change it.
    const l = load.get(s.node)
    if (l) {
      l.memoryMb += spec.requires.memoryMb
      l.vcpus += spec.requires.vcpus
      l.count += 1
    } else load.set(s.node, { memoryMb: spec.requires.memoryMb, vcpus: spec.requires.vcpus, count: 1 })
  }
  return load
}

export function addLoad(load: Map<string, NodeLoad>, node: string, spec: ResourceSpec, sign = 1): void {
  const l = load.get(node) ?? { memoryMb: 0, vcpus: 0, count: 0 }
  load.set(node, {
    memoryMb: l.memoryMb + sign * spec.requires.memoryMb,
    vcpus: l.vcpus + sign * spec.requires.vcpus,
    count: l.count + sign,
  })
}

/**
 * Every node as a candidate for `resource`, with its score or the reason it was eliminated.
 * Sorted best first (score, then fewer resources, then name), so the choice is deterministic.
 * `load` excludes nothing: the resource's own share is subtracted here if it sits on a node.
 */
export interface PlacementOptions {
  load?: Map<string, NodeLoad>
  unavailable?: ReadonlySet<string>
}

/**
 * The best eligible node, in one pass without explaining the others (the what-if plan asks this
 * for every resource of every node). Same order as candidatesFor: score, fewer resources, name.
 */
export function bestNode(ctx: StepContext, resource: ResourceSpec, options: PlacementOptions): string | null {
  const all = candidatesFor(ctx, resource, { ...options, explain: false })
  return all[0]?.eliminated === null ? all[0].node : null
}

/** What a resource's placement depends on besides the node: worked out once per question. */
export interface PlacementQuestion {
  resource: ResourceSpec
  r: ResourceState | undefined
  /** `ctx.nodeStates()`, in `nodeSpecs` order. */
  nodes: NodeState[]
  load: Map<string, NodeLoad>
  unavailable: ReadonlySet<string> | undefined
  stickiness: number
  conflicting: string[]
  ladder: ReturnType<typeof policyOf>
}

export function placementQuestion(
  ctx: StepContext,
  resource: ResourceSpec,
  options: PlacementOptions = {},
): PlacementQuestion {
  ctx.load ??= nodeLoad(ctx)
  const policy = policyOf(ctx.spec, resource)
  return {
    resource,
    r: ctx.state.resources[resource.id],
    nodes: ctx.nodeStates(),
    load: options.load ?? ctx.load,
    unavailable: options.unavailable,
    stickiness: policy.stickiness,
    conflicting: [...resource.antiAffinity, ...ctx.antiAffinityFrom(resource.id)],
    ladder: policy,
  }
}

/** One node judged as a home: its score, its count, and why it is out (null: eligible). */
export interface Judged {
  node: string
  score: number
  eliminated: string | null
  count: number
  /** Eligible, but a node it was relocated away from: taken only when no other node can be. */
  lastResort: boolean
}

/** What a node offers any resource with no tie to it: the part of the score that is the node's own. */
export function nodeScore(ctx: StepContext, n: NodeState): number {
  let score = 0
  if (n.connectivity) score += ctx.spec.connectivityWeight * n.connectivity.reachable
  if (n.degraded) score -= DEGRADED_PENALTY
  return score
}

/** The node at position `i` of `nodeSpecs` judged for the question's resource. */
export function judgeNode(ctx: StepContext, q: PlacementQuestion, i: number): Judged {
  const { resource, r } = q
  const node = ctx.nodeSpecs[i] as NodeSpec
  const n = q.nodes[i] as NodeState
  const l = q.load.get(node.id) ?? NO_LOAD
  const own = r?.node === node.id && r.phase !== 'stopped' ? resource.requires : NO_LOAD
  const used = { memoryMb: l.memoryMb - own.memoryMb, vcpus: l.vcpus - own.vcpus }
  let eliminated: string | null = null
  if (q.unavailable?.has(node.id)) eliminated = 'node is down (what-if)'
  else if (resource.allowedNodes && !resource.allowedNodes.includes(node.id))
    eliminated = 'not in allowedNodes'
  else if (n.condition !== 'healthy') eliminated = `node is ${n.condition}`
  else if (n.fence.phase !== 'idle') eliminated = `node fence is ${n.fence.phase}`
  else if (ctx.state.maintenance || n.maintenance) eliminated = 'node in maintenance'
  else if (n.evacuating) eliminated = 'node is being evacuated'
  else if (used.memoryMb + resource.requires.memoryMb > node.capacity.memoryMb) {
    eliminated = `memory: ${used.memoryMb} + ${resource.requires.memoryMb} MB > ${node.capacity.memoryMb} MB`
  } else if (used.vcpus + resource.requires.vcpus > node.capacity.vcpus) {
    eliminated = `vcpus: ${used.vcpus} + ${resource.requires.vcpus} > ${node.capacity.vcpus}`
  } else {
    const clash = q.conflicting.find((other) => ctx.state.resources[other]?.node === node.id)
    if (clash) eliminated = `anti-affinity with ${clash}`
    else if (resource.colocate) {
      for (const dep of resource.dependsOn) {
        const depNode = ctx.state.resources[dep]?.node
        if (depNode && depNode !== node.id) {
          eliminated = `must be colocated with ${dep} (on ${depNode})`
          break
        }
      }
    }
  }
  // A node it was relocated away from within the ladder's window (it failed there, or was
  // fenced there) is a last resort, not a ban: taken only when no other node can run it (a
  // fenced host back healthy may be the only one a restricted resource is allowed on).
  const lastResort =
    eliminated === null &&
    r !== undefined &&
    (r.avoid === node.id ||
      r.failures.some(
        (f) =>
          f.node === node.id && q.ladder.ladder[f.step] === 'relocate' && ctx.now - f.at < q.ladder.windowMs,
      ))
  if (lastResort) eliminated = AVOIDED
  let score = resource.preferred[node.id] ?? 0
  score += nodeScore(ctx, n)
  // Where it stopped only for a dependency's restart in place holds it like its own node: a
  // resource with no node is never a what-if plan's question, so plan.ts has no tie to add.
  if (r?.node === node.id || (r?.node === null && r.returnTo === node.id)) score += q.stickiness
  if (r?.move && r.move.node === node.id && r.move.until > ctx.now) score += MOVE_SCORE
  return { node: node.id, score, eliminated, count: l.count, lastResort }
}

export function candidatesFor(
  ctx: StepContext,
  resource: ResourceSpec,
  options: PlacementOptions & { explain?: boolean } = {},
): Candidate[] {
  const explain = options.explain ?? true
  const q = placementQuestion(ctx, resource, options)
  let best: Judged | null = null
  const avoided: Judged[] = []
  const scored: Judged[] = []
  const count = ctx.nodeSpecs.length
  for (let i = 0; i < count; i++) {
    const c = judgeNode(ctx, q, i)
    if (c.lastResort) avoided.push(c)
    if (explain) scored.push(c)
    else if (c.eliminated === null && (best === null || before(c, best))) best = c
  }
  if (avoided.length > 0 && !(explain ? scored.some((c) => c.eliminated === null) : best)) {
    for (const c of avoided) {
      c.eliminated = null
      if (best === null || before(c, best)) best = c
    }
  }
  if (!explain) return best ? [{ node: best.node, score: best.score, eliminated: null }] : []
  scored.sort(
    (a, b) =>
      Number(a.eliminated !== null) - Number(b.eliminated !== null) ||
      b.score - a.score ||
      a.count - b.count ||
      byName(a.node, b.node),
  )
  return scored.map(({ node, score, eliminated }) => ({ node, score, eliminated }))
}

/** Node names in code-point order: the tie-break, the same in both paths (localeCompare is slow). */
function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Whether candidate `a` ranks above `b`: higher score, then fewer resources, then name. */
export function before(
  a: { score: number; count: number; node: string },
  b: { score: number; count: number; node: string },
): boolean {
  return (
    b.score - a.score < 0 ||
    (a.score === b.score && (a.count < b.count || (a.count === b.count && a.node < b.node)))
  )
}
