/**
 * Moving a running resource to another node: an operator's move, failback, evacuation, or a vm
 * relocated for its guest application, each stopping what depends on it first, then stopping it
 * (to be placed again) or live-migrating it.
 */

import type { StepContext } from './context.js'
import { waitForDependents } from './dependents.js'
import { bestNode, candidatesFor } from './placement.js'
import { issue, setPhase } from './resource-actions.js'
import { policyOf, type ResourceSpec } from './spec.js'
import type { NodeState, ResourceState } from './types.js'

export function relocateVm(ctx: StepContext, vmId: string, decision: string): void {
  const vm = ctx.state.resources[vmId]
  const vmSpec = ctx.spec.resources.find((x) => x.id === vmId)
  if (!vm || !vmSpec || !vm.node || vm.pending) return
  vm.avoid = vm.node
  vm.correlationId = decision
  vm.relocating = {
    why: 'relocating so that its guest application recovers elsewhere',
    rule: 'ladder.relocate-vm',
    decision,
  }
  setPhase(
    ctx,
    vmId,
    vm,
    'recovering',
    'relocating so that its guest application recovers elsewhere',
    'ladder.relocate-vm',
  )
}

export function relocateForMove(ctx: StepContext, spec: ResourceSpec, r: ResourceState): void {
  const move = r.move
  if (!move || !r.node) return
  const target = candidatesFor(ctx, spec).find((c) => c.node === move.node)
  if (!target || target.eliminated) return
  // A vm that allows it moves live (no downtime), as Pacemaker moves an allow-migrate resource;
  // a failed migration falls back to stop and start (action.migrate-failed).
  if (spec.kind === 'vm' && spec.liveMigrate) {
    const from = r.node
    const decision = ctx.record({
      kind: 'migrate',
      resource: spec.id,
      node: from,
      summary: `operator move to ${move.node}: live-migrating from ${from}`,
      rule: 'operator.move-live',
    })
    issue(ctx, spec, r, { type: 'migrate', node: from, to: move.node, decision })
    setPhase(ctx, spec.id, r, 'migrating', `to ${move.node}`, 'operator.move-live')
    return
  }
  const decision = ctx.record({
    kind: 'stop',
    resource: spec.id,
    node: r.node,
    summary: `operator move to ${move.node}: relocating from ${r.node}`,
    rule: 'operator.move',
  })
  r.relocating = { why: `moving to ${move.node}`, rule: 'operator.move', decision }
  progressRelocation(ctx, spec, r)
}

/**
 * Failback: a healthy node whose preference beats where it runs plus stickiness takes it back
 * (stickiness 100 against a preference of 10 keeps it where it is; a preference of 200 does not).
 */
export function failback(ctx: StepContext, spec: ResourceSpec, r: ResourceState): void {
  const due = r.failbackDue ?? null
  if (!r.node || !(ctx.nodeBecameAvailable || (due !== null && ctx.now >= due))) return
  r.failbackDue = null
  const policy = policyOf(ctx.spec, spec)
  const candidates = candidatesFor(ctx, spec)
  // Where it runs, scored as any candidate (preference, connectivity, a degraded link) plus
  // stickiness: only a node that beats that takes it.
  const current = candidates.find((c) => c.node === r.node)
  const hereScore = current?.score ?? (spec.preferred[r.node] ?? 0) + policy.stickiness
  const hereConnectivity = ctx.state.nodes[r.node]?.connectivity
  for (const candidate of candidates) {
    if (candidate.eliminated || candidate.node === r.node || candidate.score <= hereScore) continue
    const node = candidate.node
    const score = candidate.score
    const preferredOnly = (spec.preferred[node] ?? 0) > (spec.preferred[r.node] ?? 0) + policy.stickiness
    // Stable first: the target healthy, and what made it better (the current node's lost ping
    // targets), for failbackStableMs.
    const since = Math.max(
      (ctx.state.nodes[node] as NodeState).conditionSince,
      preferredOnly ? 0 : (hereConnectivity?.since ?? hereConnectivity?.at ?? 0),
    )
    const stableAt = since + policy.failbackStableMs
    const because = preferredOnly
      ? `its preference ${score} beats staying on ${r.node} (${hereScore} with stickiness)`
      : `it scores ${score} against ${hereScore} on ${r.node} with stickiness${hereConnectivity ? ` (${r.node} reaches ${hereConnectivity.reachable} of ${hereConnectivity.total} ping targets)` : ''}`
    const why = `${preferredOnly ? 'failback' : 'moving'} to ${node}: ${because}`
    if (ctx.now < stableAt) {
      // Not yet: looked at again once it has held that long (if it still does).
      if (due === null)
        ctx.record({
          kind: 'refuse',
          resource: spec.id,
          node,
          summary: preferredOnly
            ? `failback to ${node} waits until it has been healthy for ${policy.failbackStableMs / 1000} s`
            : `moving to ${node} waits until this has held for ${policy.failbackStableMs / 1000} s: ${because}`,
          rule: 'placement.failback-wait',
        })
      r.failbackDue = stableAt
      return
    }
    const rule = preferredOnly ? 'placement.failback' : 'placement.better-node'
    const decision = ctx.record({ kind: 'stop', resource: spec.id, node: r.node, summary: why, rule })
    r.relocating = { why: preferredOnly ? `failing back to ${node}` : `moving to ${node}`, rule, decision }
    progressRelocation(ctx, spec, r)
    return
  }
}

/**
 * Evacuation of a resource running on the evacuated node: a vm that allows it is live-migrated (no
 * downtime); anything else is relocated. A vm no other node can take keeps running where it is and
 * waits (the node does not enter maintenance), tried again at each step.
 */
export function evacuate(ctx: StepContext, spec: ResourceSpec, r: ResourceState): void {
  const from = r.node as string
  if (spec.kind === 'vm' && spec.liveMigrate) {
    const to = bestNode(ctx, spec, { unavailable: new Set([from]) })
    if (!to) {
      setPhase(
        ctx,
        spec.id,
        r,
        'waiting',
        `no node can take it while ${from} is evacuated: it keeps running on ${from}`,
        'evacuate.no-target',
      )
      return
    }
    setPhase(ctx, spec.id, r, 'running', `running on ${from}`, 'observed.running')
    const decision = ctx.record({
      kind: 'migrate',
      resource: spec.id,
      node: from,
      summary: `evacuating ${from}: live-migrating to ${to}`,
      rule: 'evacuate.live-migrate',
    })
    issue(ctx, spec, r, { type: 'migrate', node: from, to, decision })
    setPhase(ctx, spec.id, r, 'migrating', `to ${to}`, 'evacuate.live-migrate')
    return
  }
  setPhase(ctx, spec.id, r, 'running', `running on ${from}`, 'observed.running')
  const decision = ctx.record({
    kind: 'stop',
    resource: spec.id,
    node: from,
    summary: `evacuating ${from}: relocating (no live migration for it)`,
    rule: 'evacuate.relocate',
  })
  r.relocating = { why: `evacuating ${from}`, rule: 'evacuate.relocate', decision }
  progressRelocation(ctx, spec, r)
}

/**
 * A relocation stops what depends on the resource first (their own dependents before them), then
 * the resource, which is then placed; dependents follow through the dependency-ordered placement.
 */
export function progressRelocation(ctx: StepContext, spec: ResourceSpec, r: ResourceState): void {
  const rel = r.relocating
  if (!rel || !r.node || r.pending) return
  if (waitForDependents(ctx, spec, r, rel.decision, rel.inPlace)) return
  if (rel.inPlace) r.returnTo = r.node
  issue(ctx, spec, r, { type: 'stop', node: r.node, decision: rel.decision }, 'place')
  r.relocating = null
  setPhase(ctx, spec.id, r, 'stopping', rel.why, rel.rule)
}
