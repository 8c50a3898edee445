/**
 * How a decision about a resource takes effect: an action asked of the world and waited for
 * (`issue`, within `actionBudgetMs`), and a change of phase recorded once (`setPhase`). Every other
 * resource module builds on these; this one imports none of them.
 */

import type { StepContext } from './context.js'
import { policyOf, type ResourceSpec } from './spec.js'
import type { PendingAction, ResourceActionType, ResourcePhase, ResourceState } from './types.js'

/** Asks the world for an action on behalf of a resource, and waits for it (one at a time). */
export function issue(
  ctx: StepContext,
  spec: ResourceSpec,
  r: ResourceState,
  a: { type: PendingAction['type']; node: string; decision: string; resource?: string; to?: string },
  afterStop: PendingAction['afterStop'] = null,
): void {
  const resource = a.resource ?? spec.id
  ctx.mark(spec.id)
  const actionId =
    a.type === 'migrate'
      ? ctx.act({ type: 'migrate', decision: a.decision, resource, node: a.node, to: a.to as string })
      : ctx.act({
          type: a.type as Exclude<ResourceActionType, 'migrate'>,
          decision: a.decision,
          resource,
          node: a.node,
        })
  r.pending = {
    actionId,
    type: a.type,
    node: a.node,
    issuedAt: ctx.now,
    deadline: ctx.now + actionBudgetMs(ctx, spec, a.node, resource, a.type),
    afterStop,
    ...(a.to ? { to: a.to } : {}),
    ...(resource !== spec.id ? { resource } : {}),
  }
}

/**
 * How long the engine waits for an action's result: the timeout its driver declares for that action
 * on that node (advertised by the agent), plus the margin for delivery and the way back; the
 * policy's `actionTimeoutMs` only where nothing is declared. The engine never gives up on an action
 * its driver is still allowed to run: two clocks for one action, the shorter winning silently, is
 * how a live migration of a few seconds went unrecorded.
 */
export function actionBudgetMs(
  ctx: StepContext,
  owner: ResourceSpec,
  node: string,
  resource: string,
  type: PendingAction['type'],
): number {
  const policy = policyOf(ctx.spec, owner)
  const declared = ctx.state.actionTimeouts?.[node]?.[resource]?.[type]
  return declared === undefined ? policy.actionTimeoutMs : declared + policy.actionMarginMs
}

export function setPhase(
  ctx: StepContext,
  id: string,
  r: ResourceState,
  phase: ResourcePhase,
  why: string,
  rule: string,
): void {
  ctx.mark(id)
  if (r.phase === phase) {
    // Still waiting, for something else now: said once, so a long wait always names its cause (a
    // node going from suspect to dead is the node's own record; the reason follows it silently).
    if (phase !== 'waiting' || r.reason?.rule === rule) return
    if (!rule.startsWith('wait.node-'))
      ctx.record({
        kind: 'resource-phase',
        resource: id,
        node: r.node ?? undefined,
        summary: `still waiting: ${why}`,
        rule,
        correlationId: r.correlationId,
      })
    r.reason = { rule, why }
    return
  }
  ctx.record({
    kind: 'resource-phase',
    resource: id,
    node: r.node ?? undefined,
    summary: `${r.phase} -> ${phase}: ${why}`,
    rule,
    correlationId: r.correlationId,
  })
  r.phase = phase
  r.phaseSince = ctx.now
  r.reason = { rule, why }
}
