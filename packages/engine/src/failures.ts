/**
 * A resource's failure climbs its recovery ladder (restart, vm reboot or reset, relocate), counted
 * per node and bounded by the governor; past the ladder it is blocked and its final action taken.
 */

import type { StepContext } from './context.js'
import { stopDependentsFirst } from './dependents.js'
import { progressRelocation, relocateVm } from './relocation.js'
import { issue, setPhase } from './resource-actions.js'
import { policyOf, type ResourceSpec } from './spec.js'
import type { ObservedState, PendingAction, ResourceState } from './types.js'

/** Where a failure counts: its node, or for a guest application the host its vm runs on. */
export function countedNode(ctx: StepContext, spec: ResourceSpec, node: string): string {
  if (spec.kind !== 'guest-app' || !spec.vm) return node
  return ctx.state.resources[spec.vm]?.node ?? node
}

export function handleFailure(
  ctx: StepContext,
  spec: ResourceSpec,
  r: ResourceState,
  reason: string,
  key: string,
  observed: ObservedState | 'hung',
): void {
  const policy = policyOf(ctx.spec, spec)
  r.handledFailure = key
  const node = r.node as string
  // Restarts in place (restart, reboot-vm, reset-vm) count on this node only: a resource that
  // moved starts its ladder over on its new node (rgmanager restarts in place first after a
  // relocation; ApplicationHA counts per system, and a guest application's system is its vm's host).
  // Relocations count on every node, which bounds a resource failing everywhere.
  const host = countedNode(ctx, spec, node)
  const countAt = (step: number) =>
    r.failures.filter(
      (f) =>
        f.step === step &&
        ctx.now - f.at < policy.windowMs &&
        (policy.ladder[step] === 'relocate' || (f.node ?? host) === host),
    ).length
  while (r.step < policy.ladder.length && countAt(r.step) >= policy.maxRestarts) r.step++
  if (r.step >= policy.ladder.length) {
    block(
      ctx,
      spec,
      r,
      `${reason}; recovery ladder exhausted (${policy.ladder.join(' -> ')}, ${policy.maxRestarts} per step)`,
      'ladder.exhausted',
    )
    finalAction(ctx, spec, r, policy.finalAction, reason)
    return
  }
  const g = ctx.state.governor
  g.restarts = g.restarts.filter((t) => ctx.now - t < ctx.spec.governor.windowMs)
  if (g.restarts.length >= ctx.spec.governor.maxRestarts) {
    block(
      ctx,
      spec,
      r,
      `${reason}; governor: ${g.restarts.length} restarts in the window reached its limit`,
      'governor.max-restarts',
    )
    return
  }
  g.restarts.push(ctx.now)
  r.failures.push({ at: ctx.now, step: r.step, node: host })
  const step = policy.ladder[r.step] as string
  const decision = ctx.record({
    kind: step === 'relocate' ? 'stop' : step === 'restart' ? 'restart' : 'recover-vm',
    resource: spec.id,
    node,
    summary: `${reason}: ${step} (failure ${countAt(r.step)} of ${policy.maxRestarts} at this step)`,
    rule: `ladder.${step}`,
  })
  r.correlationId = decision
  const pend = (type: PendingAction['type'], target: string, on: string) =>
    issue(ctx, spec, r, { type, node: on, decision, resource: target })

  if (step === 'restart') {
    const type =
      spec.kind === 'vm' && observed === 'hung'
        ? 'reset-vm'
        : spec.kind === 'vm' && observed !== 'running'
          ? 'start'
          : 'restart'
    if (type === 'reset-vm') r.guest = null // re-armed by the first heartbeat after the reset
    // What depends on it stops first and starts again after it (Pacemaker's ordering): a stop
    // under a dependent still using it (a file system's) could fail, and a failed stop fences.
    if (
      spec.kind !== 'guest-app' &&
      stopDependentsFirst(ctx, spec.id, decision, 'which is restarting', true)
    ) {
      r.restartAfterDependents = { type, node, decision, since: ctx.now }
      setPhase(
        ctx,
        spec.id,
        r,
        'recovering',
        `${step} after: ${reason}; what depends on it stops first`,
        `ladder.${step}`,
      )
      return
    }
    pend(type, spec.id, node)
  } else if (step === 'reboot-vm' || step === 'reset-vm') {
    const vm = spec.kind === 'guest-app' ? (spec.vm as string) : spec.id
    const vmNode = ctx.state.resources[vm]?.node
    if (!vmNode) {
      block(ctx, spec, r, `${reason}; its vm ${vm} has no node to ${step} on`, 'ladder.no-vm')
      return
    }
    pend(step, vm, vmNode)
  } else if (spec.kind === 'guest-app') {
    relocateVm(ctx, spec.vm as string, decision)
  } else {
    r.avoid = node
    r.relocating = { why: `relocating after: ${reason}`, rule: 'ladder.relocate', decision }
    setPhase(ctx, spec.id, r, 'recovering', `${step} after: ${reason}`, `ladder.${step}`)
    progressRelocation(ctx, spec, r)
    return
  }
  setPhase(ctx, spec.id, r, 'recovering', `${step} after: ${reason}`, `ladder.${step}`)
}

/**
 * A restart in place waiting for its dependents to stop (`restartAfterDependents`): issued once
 * none runs. Dropped when the resource's situation changed under it (it was seen running again,
 * its node is no longer healthy, is being fenced or is no longer its node, an operator stopped it,
 * it was blocked or put in maintenance): the usual rules take over. True while it waits or as it is issued (nothing else
 * to do this step).
 */
export function restartAfterDependents(ctx: StepContext, spec: ResourceSpec, r: ResourceState): boolean {
  const wait = r.restartAfterDependents
  if (!wait) return false
  const n = ctx.state.nodes[wait.node]
  const seen = r.observed[wait.node]
  if (
    r.node !== wait.node ||
    (seen?.state === 'running' && seen.at > wait.since) ||
    n?.condition !== 'healthy' ||
    n.fence.phase !== 'idle' ||
    n.maintenance !== null ||
    r.stoppedByOperator ||
    r.phase === 'blocked' ||
    r.maintenance !== null
  ) {
    r.restartAfterDependents = null
    return false
  }
  if (stopDependentsFirst(ctx, spec.id, wait.decision, 'which is restarting', true)) return true
  r.restartAfterDependents = null
  issue(ctx, spec, r, { type: wait.type, node: wait.node, decision: wait.decision })
  return true
}

export function block(
  ctx: StepContext,
  spec: ResourceSpec,
  r: ResourceState,
  why: string,
  rule: string,
): void {
  r.phase = 'blocked'
  r.phaseSince = ctx.now
  r.reason = { rule, why }
  const id = ctx.record({
    kind: 'blocked',
    resource: spec.id,
    node: r.node ?? undefined,
    summary: `blocked: ${why}; run cleanup once fixed`,
    rule,
  })
  ctx.alert(id, 'critical', `resource:${spec.id}`, `${spec.id} is blocked: ${why}`)
}

/**
 * A blocked resource's final action (ExpressCluster's): stop it where it runs, with what depends on
 * it; or fence its node (a guest application's node is its vm: refused at load). Notify: nothing
 * more than the block's alert.
 */
function finalAction(
  ctx: StepContext,
  spec: ResourceSpec,
  r: ResourceState,
  action: 'notify' | 'stop' | 'fence-node',
  reason: string,
): void {
  const node = r.node
  if (action === 'notify' || node === null) return
  if (action === 'fence-node') {
    const n = ctx.state.nodes[node]
    if (!n) return
    n.fence.forced ??= `final action of ${spec.id}: ${reason}`
    ctx.record({
      kind: 'fence',
      resource: spec.id,
      node,
      summary: `final action: fencing ${node}, where ${spec.id} failed past its ladder`,
      rule: 'ladder.final-fence',
    })
    return
  }
  if (r.observed[node]?.state === 'stopped') return
  const decision = ctx.record({
    kind: 'stop',
    resource: spec.id,
    node,
    summary: `final action: stopping it on ${node}`,
    rule: 'ladder.final-stop',
  })
  stopDependentsFirst(ctx, spec.id, decision, 'which its final action stops')
  issue(ctx, spec, r, { type: 'stop', node, decision })
}
