/**
 * A vm's intended pause: an operator's suspend or resume carried out on its node (`suspension`) and
 * its answer (`suspensionOutcome`); a vm suspended outside Vigil is left so. Never a failure.
 */

import type { StepContext } from './context.js'
import { issue, setPhase } from './resource-actions.js'
import type { ResourceSpec } from './spec.js'
import type { ObservedState, PendingAction, ResourceState } from './types.js'

/** The answer to a suspend or a resume: the vm sleeps or runs; a refusal drops the wish, said. */
export function suspensionOutcome(
  ctx: StepContext,
  spec: ResourceSpec,
  r: ResourceState,
  p: PendingAction,
  ok: boolean,
  message: string | undefined,
): void {
  if (ok && p.type === 'suspend') {
    r.observed[p.node] = { state: 'suspended', at: ctx.now, reason: 'suspended by Vigil' }
    setPhase(ctx, spec.id, r, 'suspended', `suspended on ${p.node} by an operator`, 'operator.suspended')
    return
  }
  if (ok) {
    r.observed[p.node] = { state: 'running', at: ctx.now, reason: 'resumed by Vigil' }
    r.wantSuspended = null
    r.guest = null // its guest's heartbeat starts again: a new baseline, not a stall
    setPhase(ctx, spec.id, r, 'running', `resumed on ${p.node}`, 'action.resume')
    return
  }
  r.wantSuspended = null
  ctx.record({
    kind: 'refuse',
    resource: spec.id,
    node: p.node,
    summary: `${p.type} on ${p.node} failed: ${message ?? 'failed'}; left as it is`,
    rule: `action.${p.type}-failed`,
  })
}

/**
 * A vm's intended pause (VCS's admin suspend): what an operator asked (`wantSuspended`) is carried
 * out on its node, and a vm its hypervisor reports suspended on purpose is left so. Neither is a
 * failure: no ladder, no relocation, no guest-hang detection while it sleeps. True when it decided.
 */
export function suspension(
  ctx: StepContext,
  spec: ResourceSpec,
  r: ResourceState,
  node: string,
  observed: ObservedState,
): boolean {
  const asleep = observed === 'suspended' || observed === 'paused'
  const carryOut = (type: 'suspend' | 'resume', kind: 'stop' | 'start', doing: string) => {
    const decision = ctx.record({
      kind,
      resource: spec.id,
      node,
      summary: `${doing} on ${node}: an operator ${type}s it`,
      rule: `operator.${type}`,
    })
    issue(ctx, spec, r, { type, node, decision })
    return true
  }
  if (r.wantSuspended === true) {
    if (observed === 'running') return carryOut('suspend', 'stop', 'suspending')
    if (!asleep) return false // stopped or failed meanwhile: its own recovery
    setPhase(ctx, spec.id, r, 'suspended', `suspended on ${node} by an operator`, 'operator.suspended')
    return true
  }
  if (r.wantSuspended === false) {
    if (observed === 'running') {
      r.wantSuspended = null
      return false
    }
    if (!asleep) return false
    return carryOut('resume', 'start', 'resuming')
  }
  if (observed !== 'suspended') return false
  setPhase(
    ctx,
    spec.id,
    r,
    'suspended',
    `suspended on ${node} outside Vigil (an operator's suspend): intended, left so until resumed`,
    'observed.suspended',
  )
  return true
}
