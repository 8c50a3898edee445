/**
 * Where a resource with no node starts: a copy found running is adopted, nothing starts while a
 * copy may still run elsewhere (`mayRunOn`), and otherwise the best candidate (scored by
 * placement.ts) is started, unless nodes still within the startup grace may be better.
 */

import type { StepContext } from './context.js'
import { addLoad, candidatesFor } from './placement.js'
import { issue, setPhase } from './resource-actions.js'
import type { ResourceSpec } from './spec.js'
import type { Candidate, PendingAction, ResourceState } from './types.js'

/** Candidates kept in a placement record (best first); the rest are counted, not listed. */
const RECORDED_CANDIDATES = 25
const NAMED_IN_SUMMARY = 5

/** "; node3: score 0, node1: node is dead" for the runners-up, then "and N more". */
function describeOthers(candidates: Candidate[], best: Candidate): string {
  const others = candidates.filter((c) => c !== best)
  if (others.length === 0) return ''
  const named = others
    .slice(0, NAMED_IN_SUMMARY)
    .map((c) => `${c.node}: ${c.eliminated ?? `score ${c.score}`}`)
  const more = others.length > NAMED_IN_SUMMARY ? `, and ${others.length - NAMED_IN_SUMMARY} more` : ''
  return `; ${named.join(', ')}${more}`
}

const STARTS: ReadonlySet<PendingAction['type']> = new Set(['start', 'restart', 'reset-vm', 'reboot-vm'])

/**
 * Why a copy of the resource may still be running on `nodeId`, or null if it surely is not.
 * The rule behind "a resource never runs on two hosts": a node counts as clean only when it is
 * fenced (confirmed), or its agent reported the resource stopped (and nothing was started since).
 */
export function mayRunOn(ctx: StepContext, spec: ResourceSpec, nodeId: string): string | null {
  if (spec.allowedNodes && !spec.allowedNodes.includes(nodeId)) return null // never started there
  const n = ctx.node(nodeId)
  if (n.fence.phase === 'confirmed') return null
  const r = ctx.state.resources[spec.id] as ResourceState
  if (r.pending && r.pending.node === nodeId && STARTS.has(r.pending.type))
    return `a ${r.pending.type} is in flight there`
  const o = r.observed[nodeId]
  if (n.askedFor?.[spec.id] !== undefined)
    return 'a live migration to it was cut off: waiting for its agent to say whether it runs there'
  if (o?.state === 'stopped') return null
  // A complete inventory not listing it is its agent's word that it is stopped there, as good as a
  // report of it stopped, whatever the node has become since (a start since would be pending).
  if (!o && n.inventory !== null) return null
  if (n.condition === 'healthy') return o ? `it is ${o.state} there` : 'no report from its agent yet'
  return `node is ${n.condition} and ${o ? `it was last ${o.state} there` : 'never reported it'}`
}

/**
 * The nodes `mayRunOn` can name for a resource, in `nodeSpecs` order: those that reported it, its
 * pending action's node, those asked about it, and those with no complete inventory yet. Every other
 * node's inventory not listing it is its agent's word that it does not run there: the same answer
 * as asking every node, in O(reports) (a placement asked every one of 5,000 nodes).
 */
function mayHoldACopy(ctx: StepContext, spec: ResourceSpec, r: ResourceState): string[] {
  const positions = new Set(ctx.uninventoriedNodes())
  const add = (id: string | undefined) => {
    const i = id === undefined ? undefined : ctx.nodePosition(id)
    if (i !== undefined) positions.add(i)
  }
  for (const id in r.observed) add(id)
  add(r.pending?.node)
  for (const i of ctx.nodesAskedAbout())
    if (ctx.nodeStates()[i]?.askedFor?.[spec.id] !== undefined) positions.add(i)
  return [...positions].sort((a, b) => a - b).map((i) => (ctx.nodeSpecs[i] as { id: string }).id)
}

/** A node not heard since the engine (or the hub) started, still within the startup grace. */
function inStartupGrace(ctx: StepContext, id: string): boolean {
  const n = ctx.node(id)
  return (
    !n.heard && n.condition === 'unknown' && ctx.now - n.conditionSince < ctx.spec.detection.startupGraceMs
  )
}

export function place(ctx: StepContext, spec: ResourceSpec, r: ResourceState): void {
  const frozen = ctx.frozenNodes()
  if (frozen.length > 0) {
    setPhase(
      ctx,
      spec.id,
      r,
      'waiting',
      `placement paused while a hub-side partition is suspected (${frozen.join(', ')} frozen)`,
      'wait.frozen',
    )
    return
  }
  for (const dep of spec.dependsOn) {
    if (ctx.state.resources[dep]?.phase !== 'running') {
      setPhase(ctx, spec.id, r, 'waiting', `waiting for ${dep} to run first`, 'order.depends-on')
      return
    }
  }
  // Where a copy may run: every node, or (when every node sent a complete inventory) only the
  // nodes that reported it, which is the same answer in O(reports) instead of O(nodes).
  const suspects = ctx.everyNodeInventoried() ? Object.keys(r.observed).sort() : mayHoldACopy(ctx, spec, r)
  const maybe = suspects
    .map((node) => ({ node, why: mayRunOn(ctx, spec, node) }))
    .filter((x) => x.why !== null)
  if (
    maybe.length === 1 &&
    ctx.node(maybe[0]?.node as string).condition === 'healthy' &&
    r.observed[maybe[0]?.node as string]?.state === 'running'
  ) {
    const node = maybe[0]?.node as string
    r.node = node
    ctx.record({
      kind: 'resource-phase',
      resource: spec.id,
      node,
      summary: `found running on ${node}: adopted`,
      rule: 'adopt.running',
    })
    setPhase(ctx, spec.id, r, 'running', `running on ${node}`, 'adopt.running')
    return
  }
  // Several healthy nodes report it running (started by hand, or found at start): adopt the
  // best-placed copy; the extra-copy rule stops the others on the next step.
  const running = maybe.filter(
    (m) => ctx.node(m.node).condition === 'healthy' && r.observed[m.node]?.state === 'running',
  )
  if (running.length > 1 && running.length === maybe.length) {
    const ranked = candidatesFor(ctx, spec).filter((c) => running.some((m) => m.node === c.node))
    const keep = ranked[0]?.node ?? (running[0]?.node as string)
    r.node = keep
    ctx.record({
      kind: 'resource-phase',
      resource: spec.id,
      node: keep,
      summary: `found running on ${running.map((m) => m.node).join(' and ')}: keeping ${keep}`,
      rule: 'adopt.best-copy',
    })
    setPhase(ctx, spec.id, r, 'running', `running on ${keep}`, 'adopt.best-copy')
    return
  }
  if (maybe.length > 0) {
    const why = maybe.map((m) => `${m.node}: ${m.why}`).join('; ')
    if (r.phase !== 'waiting' || !ctx.records.some((x) => x.resource === spec.id)) {
      setPhase(
        ctx,
        spec.id,
        r,
        'waiting',
        `may still run elsewhere (${why}): not starting another copy`,
        'safety.copy-may-run',
      )
    }
    return
  }
  const candidates = candidatesFor(ctx, spec)
  const best = candidates.find((c) => c.eliminated === null)
  if (!best) {
    // Nodes not heard yet since the hub (re)started may be eligible in a moment: wait for them
    // before calling the resource unplaceable (and raising an alert).
    if (ctx.anyInStartupGrace() && ctx.nodeSpecs.some((n) => inStartupGrace(ctx, n.id))) {
      setPhase(
        ctx,
        spec.id,
        r,
        'waiting',
        'nodes not heard yet since the hub started: waiting for them before placing',
        'placement.awaiting-nodes',
      )
      r.awaitingNodes = true
      return
    }
    if (r.phase !== 'waiting' || r.awaitingNodes) {
      r.awaitingNodes = false
      setPhase(ctx, spec.id, r, 'waiting', 'no node can take it', 'placement.none')
      const id = ctx.record({
        kind: 'refuse',
        resource: spec.id,
        summary: 'cannot be placed: no eligible node',
        rule: 'placement.none',
        candidates,
      })
      ctx.alert(id, 'critical', `resource:${spec.id}`, `${spec.id} cannot be placed on any node`)
    }
    return
  }
  // A node it prefers over the best one now, not heard yet since the hub started, may be up in a
  // moment: wait for it within the startup grace rather than start it elsewhere and keep it there by
  // stickiness (Pacemaker's DC waits dc-deadtime for the other nodes before it places anything).
  // Seen in the lab: a host whose agent came up a second later lost its preferred resource for good.
  const waitFor =
    ctx.anyInStartupGrace() &&
    ctx.nodeSpecs.find(
      (n) => n.id !== best.node && inStartupGrace(ctx, n.id) && (spec.preferred[n.id] ?? 0) > best.score,
    )
  if (waitFor && !r.node) {
    if (r.phase !== 'waiting' || !r.awaitingNodes)
      setPhase(
        ctx,
        spec.id,
        r,
        'waiting',
        `its preferred node ${waitFor.id} is not heard yet since the hub started: waiting for it before placing`,
        'placement.awaiting-nodes',
      )
    r.awaitingNodes = true
    return
  }
  r.awaitingNodes = false
  const decision = ctx.record({
    kind: 'place',
    resource: spec.id,
    node: best.node,
    summary: `starting on ${best.node} (score ${best.score}${describeOthers(candidates, best)})`,
    rule: r.move?.node === best.node ? 'operator.move' : 'placement.best-score',
    candidates: candidates.slice(0, RECORDED_CANDIDATES),
    ...(candidates.length > RECORDED_CANDIDATES
      ? { candidatesOmitted: candidates.length - RECORDED_CANDIDATES }
      : {}),
    correlationId: r.correlationId,
  })
  issue(ctx, spec, r, { type: 'start', node: best.node, decision })
  if (ctx.load) addLoad(ctx.load, best.node, spec)
  r.node = best.node
  setPhase(ctx, spec.id, r, 'starting', `placed on ${best.node}`, 'placement.best-score')
}
