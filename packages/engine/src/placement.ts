import type { StepContext } from './context.js'
import type { ResourceSpec } from './spec.js'
import type { Candidate } from './types.js'

/** Score added for an operator's move while it lasts: wins over any preference. */
export const MOVE_SCORE = 1_000_000

/**
 * Every node as a candidate for `resource`, with its score or the reason it was eliminated.
 * Sorted best first (score, then fewer resources, then name), so the choice is deterministic.
 */
export function candidatesFor(
  ctx: StepContext,
  resource: ResourceSpec,
  exclude: ReadonlySet<string> = new Set(),
): Candidate[] {
  const r = ctx.state.resources[resource.id]
  const load = new Map<string, { memoryMb: number; vcpus: number; count: number }>()
  for (const other of ctx.spec.resources) {
    const s = ctx.state.resources[other.id]
    if (!s?.node || other.id === resource.id || s.phase === 'stopped' || other.kind === 'guest-app') continue
    const l = load.get(s.node) ?? { memoryMb: 0, vcpus: 0, count: 0 }
    load.set(s.node, {
      memoryMb: l.memoryMb + other.requires.memoryMb,
      vcpus: l.vcpus + other.requires.vcpus,
      count: l.count + 1,
    })
  }
  const out: Candidate[] = ctx.nodeSpecs.map((node) => {
    const n = ctx.node(node.id)
    const l = load.get(node.id) ?? { memoryMb: 0, vcpus: 0, count: 0 }
    const eliminated = ((): string | null => {
      if (exclude.has(node.id)) return 'excluded'
      if (resource.allowedNodes && !resource.allowedNodes.includes(node.id)) return 'not in allowedNodes'
      if (n.condition !== 'healthy') return `node is ${n.condition}`
      if (n.fence.phase !== 'idle') return `node fence is ${n.fence.phase}`
      if (ctx.inMaintenance(node.id)) return 'node in maintenance'
      if (r?.avoid === node.id) return 'it just failed here (relocating away)'
      if (l.memoryMb + resource.requires.memoryMb > node.capacity.memoryMb) {
        return `memory: ${l.memoryMb} + ${resource.requires.memoryMb} MB > ${node.capacity.memoryMb} MB`
      }
      if (l.vcpus + resource.requires.vcpus > node.capacity.vcpus)
        return `vcpus: ${l.vcpus} + ${resource.requires.vcpus} > ${node.capacity.vcpus}`
      for (const other of resource.antiAffinity) {
        if (ctx.state.resources[other]?.node === node.id) return `anti-affinity with ${other}`
      }
      for (const other of ctx.spec.resources) {
        if (other.antiAffinity.includes(resource.id) && ctx.state.resources[other.id]?.node === node.id)
          return `anti-affinity with ${other.id}`
      }
      if (resource.colocate) {
        for (const dep of resource.dependsOn) {
          const depNode = ctx.state.resources[dep]?.node
          if (depNode && depNode !== node.id) return `must be colocated with ${dep} (on ${depNode})`
        }
      }
      return null
    })()
    let score = resource.preferred[node.id] ?? 0
    if (r?.node === node.id) score += ctx.spec.defaults.stickiness
    if (r?.move && r.move.node === node.id && r.move.until > ctx.now) score += MOVE_SCORE
    return { node: node.id, score, eliminated, load: l.count }
  }) as (Candidate & { load: number })[]
  return (out as (Candidate & { load: number })[])
    .sort(
      (a, b) =>
        Number(a.eliminated !== null) - Number(b.eliminated !== null) ||
        b.score - a.score ||
        a.load - b.load ||
        a.node.localeCompare(b.node),
    )
    .map(({ node, score, eliminated }) => ({ node, score, eliminated }))
}
