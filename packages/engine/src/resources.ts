/**
 * The step's visit of the resources: which need one, and for each what its state calls for
 * (maintenance, a pending action settled by what is seen, an extra copy, its node's fate, a failure,
 * placement), handed to the module that holds that case. An operator's stop is kept here.
 */

import { actionOutcome, rebaseGuestSilence } from './action-outcomes.js'
import type { StepContext } from './context.js'
import { runningDependents, waitForDependents } from './dependents.js'
import { handleFailure, restartAfterDependents } from './failures.js'
import { guestHung, manageGuestApp } from './guests.js'
import { place } from './place.js'
import { evacuate, failback, progressRelocation, relocateForMove } from './relocation.js'
import { issue, setPhase } from './resource-actions.js'
import { policyOf, type ResourceSpec } from './spec.js'
import { suspension } from './suspension.js'
import type { NodeState, ResourceState } from './types.js'
import { needsVisit, planVisits, settleVisits } from './visits.js'

/**
 * How long a vm seen running on a second node waits for its home to report it stopped before it
 * counts as a second copy: a live migration done outside Vigil ends with the source stopped, which
 * its agent reports at once (libvirt's lifecycle event) or at its next monitor.
 */
const OUTSIDE_MIGRATION_SETTLE_MS = 2000

/**
 * What a resource on a node that cannot act waits for. A dead node's fate is its fence: when the
 * fence is held by the governor or has failed, the wait has no end without an operator, and says so.
 */
function waitingOnNode(id: string, n: NodeState): [why: string, rule: string] {
  if (n.condition === 'dead' || n.condition === 'isolated') {
    if (n.fence.phase === 'held')
      return [
        `its node ${id} is ${n.condition} and its fence is held by the governor (fence budget spent): nothing of it starts elsewhere before the window frees or an operator fences it`,
        'wait.fence-held',
      ]
    if (n.fence.phase === 'failed')
      return [
        `its node ${id} is ${n.condition} and every fence level failed: nothing of it starts elsewhere before an operator confirms it off (vigil fence confirm ${id})`,
        'wait.fence-failed',
      ]
  }
  if (n.condition === 'agent-stopped')
    return [
      `its node ${id}'s agent stopped: left where it was, unwatched, until the agent is back`,
      'wait.node-agent-stopped',
    ]
  return [`its node ${id} is ${n.condition}`, `wait.node-${n.condition}`]
}

function unmanaged(ctx: StepContext, spec: ResourceSpec, r: ResourceState): boolean {
  return (
    spec.unmanaged ||
    r.maintenance !== null ||
    ctx.state.maintenance !== null ||
    (r.node !== null && ctx.state.nodes[r.node]?.maintenance != null)
  )
}

/** Reported running on `node` and on no other node. */
function runningOnlyOn(r: ResourceState, node: string): boolean {
  if (r.observed[node]?.state !== 'running') return false
  for (const other in r.observed) if (other !== node && r.observed[other]?.state === 'running') return false
  return true
}

/**
 * Visits the resources that need it (visits.ts says which), in the deterministic order: by
 * priority, then id.
 */
export function manageResources(ctx: StepContext): void {
  const states = ctx.resourceStates()
  const index = planVisits(ctx, states)
  const want = ctx.visits
  for (let i = 0; i < states.length; i++) {
    const spec = ctx.resourceSpecs[i] as ResourceSpec
    const r = states[i] as ResourceState
    if (!ctx.allDirty && want[i] === 0) {
      if (ctx.env.selfCheck && needsVisit(ctx, spec, r))
        throw new Error(`engine visit index: ${spec.id} needs a visit and was not marked`)
      continue
    }
    if (!needsVisit(ctx, spec, r)) continue
    manageOne(ctx, spec)
  }
  settleVisits(ctx, states, index)
}

function manageOne(ctx: StepContext, spec: ResourceSpec): void {
  const r = ctx.state.resources[spec.id] as ResourceState
  const policy = policyOf(ctx.spec, spec)
  if (r.maintenance?.until != null && r.maintenance.until <= ctx.now) {
    r.maintenance = null
    ctx.record({
      kind: 'operator',
      resource: spec.id,
      summary: 'resource maintenance expired: re-armed',
      rule: 'maintenance.expired',
    })
  }
  if (r.move && r.move.until <= ctx.now) {
    ctx.record({
      kind: 'operator',
      resource: spec.id,
      summary: `manual move to ${r.move.node} expired: constraint removed (stickiness keeps it where it is)`,
      rule: 'operator.move-expired',
    })
    r.move = null
  }
  if (r.failures.length > 0) r.failures = r.failures.filter((f) => ctx.now - f.at < policy.failureTimeoutMs)
  if (r.failures.length === 0 && r.step > 0 && r.phase !== 'blocked') r.step = 0

  if (unmanaged(ctx, spec, r)) {
    if (r.node === null)
      r.node =
        Object.keys(r.observed)
          .sort()
          .find((n) => r.observed[n]?.state === 'running') ?? null
    setPhase(
      ctx,
      spec.id,
      r,
      'unmanaged',
      'in maintenance or unmanaged: observed, never acted on',
      'maintenance.unmanaged',
    )
    return
  }
  if (r.phase === 'unmanaged') {
    const running = r.node && r.observed[r.node]?.state === 'running'
    setPhase(ctx, spec.id, r, running ? 'running' : 'recovering', 'managed again', 'maintenance.rearmed')
  }
  if (r.phase === 'blocked') return

  // The world may already show the outcome even though the result was lost (a hub restart).
  if (r.pending && r.pending.type !== 'migrate') {
    const o = r.observed[r.pending.node]
    const expected = r.pending.type === 'stop' ? 'stopped' : 'running'
    if (
      o &&
      o.at > r.pending.issuedAt &&
      o.state === expected &&
      (r.pending.type === 'stop' || spec.kind !== 'guest-app')
    ) {
      actionOutcome(ctx, r.pending.actionId, true)
    }
  }
  // A migration is done once the target runs it and the source has let it go, both seen since it
  // was asked for (libvirt: running there, "shut off (migrated)" here): whether its result comes
  // first, later, or never (the agent or the hub restarted under it).
  if (r.pending?.type === 'migrate' && r.pending.to) {
    const p = r.pending
    const there = r.observed[p.to as string]
    const here = r.observed[p.node]
    if (
      there?.state === 'running' &&
      there.at > p.issuedAt &&
      here?.state === 'stopped' &&
      here.at > p.issuedAt
    )
      actionOutcome(ctx, p.actionId, true, undefined, `seen running on ${p.to} and stopped on ${p.node}`)
  }
  // A live migration's target fenced under it: the migration cannot finish, and the vm is where
  // it was. Settled now rather than at the source's answer (a migration may take minutes).
  if (
    r.pending?.type === 'migrate' &&
    r.pending.to &&
    ctx.state.nodes[r.pending.to]?.fence.phase === 'confirmed'
  )
    actionOutcome(ctx, r.pending.actionId, false, {
      kind: 'transient',
      message: `its target ${r.pending.to} was fenced during the migration`,
    })
  // Its node was fenced under the action: powered off, so nothing runs there and no result will
  // come. Waiting for the action's deadline would only lengthen the outage.
  if (r.pending && ctx.state.nodes[r.pending.node]?.fence.phase === 'confirmed') {
    const p = r.pending
    if (p.type === 'stop') actionOutcome(ctx, p.actionId, false)
    else if (p.type === 'migrate') {
      // The source is off: the vm either made it to the target before, or runs nowhere.
      if (p.to && runningOnlyOn(r, p.to))
        actionOutcome(ctx, p.actionId, true, undefined, `its source ${p.node} was fenced after the move`)
      else
        actionOutcome(ctx, p.actionId, false, {
          kind: 'transient',
          message: `${p.node} was fenced during the migration`,
        })
    } else {
      r.pending = null
      r.observed[p.node] = { state: 'stopped', at: ctx.now, reason: 'node fenced' }
      const n = ctx.node(p.node)
      ctx.record({
        kind: 'resource-phase',
        resource: spec.id,
        node: p.node,
        summary: `${p.type} on ${p.node} abandoned: the node was fenced (powered off) while it ran`,
        rule: 'recover.action-fenced',
        correlationId: n.fence.correlationId,
      })
    }
  }
  if (r.pending && ctx.now >= r.pending.deadline) {
    const p = r.pending
    if (p.type === 'migrate' && p.to && runningOnlyOn(r, p.to)) {
      // The result never came, but the vm runs on the target and nowhere else: it moved.
      actionOutcome(ctx, p.actionId, true, undefined, 'settled by observation at its deadline')
    } else {
      actionOutcome(ctx, p.actionId, false, {
        kind: 'transient',
        message: `no result within ${p.deadline - p.issuedAt} ms`,
      })
    }
  }
  if (r.pending) return
  if (restartAfterDependents(ctx, spec, r)) return

  if (r.stoppedByOperator) {
    keepStopped(ctx, spec, r)
    return
  }

  if (spec.kind === 'guest-app') {
    manageGuestApp(ctx, spec, r)
    return
  }

  // A copy where it does not belong (a resumed guest, a node back from a partition): stop it.
  // Without a home yet, a single running copy is adopted by place() instead.
  // Only nodes that reported it can hold a copy we know of (O(reports), not O(nodes)).
  // Allocation-free scan: most resources have one report (their home), so nothing is collected.
  let reporters: string[] | null = null
  if (r.node !== null) {
    for (const nodeId in r.observed) {
      if (nodeId === r.node) continue
      reporters ??= []
      reporters.push(nodeId)
    }
    reporters?.sort()
  }
  for (const nodeId of reporters ?? []) {
    if (nodeId === r.node) continue
    const o = r.observed[nodeId]
    const n = ctx.state.nodes[nodeId]
    const node = { id: nodeId }
    if (n && o && o.state !== 'stopped' && n.condition === 'healthy' && n.fence.phase !== 'confirmed') {
      const home = r.node === null ? undefined : r.observed[r.node]
      if (o.state === 'running' && !r.pending && home?.state === 'stopped') {
        // Its only copy now runs there: moved or started outside Vigil (an administrator's live
        // migration with the hypervisor's tools). Adopted where it runs, no failure counted.
        ctx.record({
          kind: 'resource-phase',
          resource: spec.id,
          node: nodeId,
          summary: `runs on ${nodeId}, no longer on ${r.node}: moved outside Vigil, adopted there`,
          rule: 'observed.moved-outside',
        })
        r.node = nodeId
        rebaseGuestSilence(ctx, r)
        return
      }
      if (
        spec.kind === 'vm' &&
        o.state === 'running' &&
        home?.state === 'running' &&
        ctx.now - o.at < OUTSIDE_MIGRATION_SETTLE_MS
      ) {
        // A live migration done outside Vigil ends with the source stopping, reported within the
        // settle time (`at` is when it was first seen running there): only then is it a second copy.
        return
      }
      const decision = ctx.record({
        kind: 'stop',
        resource: spec.id,
        node: node.id,
        summary: `${o.state} on ${node.id} as well as ${r.node ?? 'nowhere else'}: stopping the copy on ${node.id}`,
        rule: 'safety.extra-copy',
      })
      issue(ctx, spec, r, { type: 'stop', node: node.id, decision })
      return
    }
  }

  if (r.node) {
    const n = ctx.node(r.node)
    if (n.fence.phase === 'confirmed') {
      r.observed[r.node] = { state: 'stopped', at: ctx.now, reason: 'node fenced' }
      ctx.record({
        kind: 'resource-phase',
        resource: spec.id,
        node: r.node,
        summary: `stopped: its node ${r.node} was fenced`,
        rule: 'recover.node-fenced',
        correlationId: n.fence.correlationId,
      })
      r.correlationId = n.fence.correlationId
      // A suspended vm's memory died with its node: it is recovered (started afresh) like any other.
      r.wantSuspended = null
      r.avoid = r.node
      r.node = null
      r.phase = 'recovering'
      r.phaseSince = ctx.now
      r.reason = { rule: 'recover.node-fenced', why: `its node ${r.node} was fenced` }
    } else if (n.condition !== 'healthy' && n.condition !== 'unknown') {
      const [why, rule] = waitingOnNode(r.node, n)
      setPhase(ctx, spec.id, r, 'waiting', why, rule)
      return
    }
  }

  if (r.relocating && r.node) {
    progressRelocation(ctx, spec, r)
    return
  }

  if (r.node) {
    const o = r.observed[r.node]
    if (!o) return
    if (spec.kind === 'vm' && suspension(ctx, spec, r, r.node, o.state)) return
    const hung = spec.kind === 'vm' && o.state === 'running' && guestHung(ctx, r, spec)
    if (o.state === 'running' && !hung) {
      // An evacuation that cannot go anywhere yet keeps the resource waiting (said once), not
      // flipping between running and waiting at every step: evacuate() says which.
      if (ctx.node(r.node).evacuating) {
        evacuate(ctx, spec, r)
        return
      }
      setPhase(ctx, spec.id, r, 'running', `running on ${r.node}`, 'observed.running')
      if (r.move && r.move.node !== r.node) relocateForMove(ctx, spec, r)
      else failback(ctx, spec, r)
      return
    }
    const key = hung
      ? r.guest
        ? `hang@${r.guest.lastAt}`
        : `boot-hang@${r.bootWaitFrom}`
      : `${o.state}@${o.at}`
    if (r.handledFailure !== key) {
      const reason = hung
        ? r.guest
          ? 'guest heartbeat stalled (guest hung)'
          : `no guest heartbeat within its boot allowance (${(spec.bootAllowanceMs ?? 0) / 1000} s): hung while booting`
        : `${o.state} on ${r.node}${o.reason ? ` (${o.reason})` : ''}`
      handleFailure(ctx, spec, r, reason, key, hung ? 'hung' : o.state)
    }
    return
  }
  place(ctx, spec, r)
}

/**
 * An operator stopped it: stop every copy on a node that can act (what depends on it first, as a
 * relocation does), then it stays stopped and is never placed. A copy on a node that cannot act
 * (suspect, dead) waits for that node's fate like any resource.
 */
function keepStopped(ctx: StepContext, spec: ResourceSpec, r: ResourceState): void {
  r.relocating = null
  r.move = null
  const copies = Object.keys(r.observed)
    .sort()
    .filter((n) => r.observed[n]?.state !== 'stopped')
  const stoppable = copies.filter(
    (n) => ctx.state.nodes[n]?.condition === 'healthy' || (spec.kind === 'guest-app' && n === spec.vm),
  )
  if (stoppable.length === 0) {
    if (copies.length > 0) {
      setPhase(
        ctx,
        spec.id,
        r,
        'waiting',
        `stopped by an operator; its copy on ${copies.join(', ')} cannot be reached yet`,
        'operator.stop-wait',
      )
      return
    }
    r.node = null
    setPhase(ctx, spec.id, r, 'stopped', 'stopped by an operator', 'operator.stopped')
    return
  }
  const node = stoppable[0] as string
  // Already waiting for its dependents to stop: decided before, nothing new to record.
  if (r.phase === 'stopping' && runningDependents(ctx, spec.id).length > 0) return
  const decision = ctx.record({
    kind: 'stop',
    resource: spec.id,
    node,
    summary: `stopping on ${node}: an operator stopped it`,
    rule: 'operator.stop',
  })
  if (waitForDependents(ctx, spec, r, decision)) return
  issue(ctx, spec, r, { type: 'stop', node, decision })
}
