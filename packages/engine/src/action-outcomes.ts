/**
 * What the world answers about a resource: the result of an action the engine asked for (or its
 * timeout) settles its pending action; an action whose answer may be lost (an agent restarted, a
 * node heard again) is sent or asked again; an agent's report of a resource's state is recorded.
 */

import type { StepContext } from './context.js'
import { block, countedNode } from './failures.js'
import { forgetGuestApps, stopFailedInGuest } from './guests.js'
import { issue, setPhase } from './resource-actions.js'
import { policyOf, type ResourceSpec } from './spec.js'
import { suspensionOutcome } from './suspension.js'
import type { ObservedState, PendingAction, ResourceState } from './types.js'
import { pendingCandidates } from './visits.js'

/** The observed reason of a copy Vigil itself stopped (not a failure: nothing to count or repair). */
const STOPPED_BY_VIGIL = 'stopped by Vigil'

/**
 * A node's agent restarted: the actions it had been sent and not answered died with it (the new
 * agent never heard of them), so no result will come. Waiting out their deadline would cost
 * `actionTimeoutMs` and then escalate (a stop that times out fences the node), so start, stop and
 * restart are sent again at once: the driver contract makes them idempotent, and a late result of
 * the old action is ignored (its id is no longer pending). Other actions (migrate, vm reset or
 * reboot) have an outcome that cannot be known, and fail as a transient error.
 */
export function agentRestarted(ctx: StepContext, node: string): void {
  for (const { spec, r, p } of pendingWhere(ctx, (p) => p.node === node)) {
    if (isIdempotent(p)) resend(ctx, spec, r, p, 'its agent restarted before answering')
    else if (p.type === 'migrate') {
      // The hypervisor may be finishing the move without the agent: what runs where says how it
      // ended (settled by observation, or at the migration's deadline), never a guess now.
      if (p.resultLost) continue
      p.resultLost = true
      ctx.record({
        kind: 'resource-phase',
        resource: spec.id,
        node,
        summary: `migration to ${p.to} lost its result (the agent on ${node} restarted): settled by what runs where, by its deadline at the latest`,
        rule: 'action.migrate-result-lost',
        correlationId: r.correlationId,
      })
    } else
      actionOutcome(ctx, p.actionId, false, {
        kind: 'transient',
        message: `the agent on ${node} restarted before answering`,
      })
  }
}

/**
 * A node the hub could not hear (suspect, partitioned, isolated or frozen) is heard again: a
 * command sent to it while the hub could not reach it, or in the moment before the hub noticed,
 * may never have arrived (the agent's broker session can end with it), and nothing would show it
 * but the action's deadline, after which a stop escalates to a fence of a healthy node (found by
 * the chaos run: a hub cut 0.5 s after a stop was sent). Start, stop and restart are idempotent,
 * so they are sent again; a result of the first copy is ignored (its id is no longer pending).
 * Other actions keep waiting: their outcome cannot be repeated safely.
 */
export function heardAgain(ctx: StepContext, node: string): void {
  for (const { spec, r, p } of pendingWhere(ctx, (p) => p.node === node && p.issuedAt < ctx.now)) {
    if (isIdempotent(p)) resend(ctx, spec, r, p, 'it was sent while the hub could not hear the node')
    else if (!p.resultLost) askAgain(ctx, spec, r, p)
  }
}

/**
 * An action whose outcome cannot be repeated safely (a migration, a vm reset or reboot, a suspend
 * or resume) is asked again under its own action id, which the agent keeps apart from the command's
 * id and nonce: an agent that ran it (or runs it still) answers the repeat from its record, one that
 * never got it runs it now. Its deadline stays the first copy's.
 */
function askAgain(ctx: StepContext, spec: ResourceSpec, r: ResourceState, p: PendingAction): void {
  const decision = ctx.record({
    kind: 'resource-phase',
    resource: spec.id,
    node: p.node,
    summary: `${p.type} on ${p.node} asked again under its action id (it was sent while the hub could not hear the node): answered from the agent's record if it ran, never run twice`,
    rule: 'action.asked-again',
    correlationId: r.correlationId,
  })
  const resource = p.resource ?? spec.id
  if (p.type === 'migrate')
    ctx.actAgain({ type: 'migrate', id: p.actionId, decision, resource, node: p.node, to: p.to as string })
  else
    ctx.actAgain({
      type: p.type as Exclude<PendingAction['type'], 'migrate' | 'start' | 'stop' | 'restart'>,
      id: p.actionId,
      decision,
      resource,
      node: p.node,
    })
}

const isIdempotent = (p: PendingAction): p is PendingAction & { type: 'start' | 'stop' | 'restart' } =>
  p.type === 'start' || p.type === 'stop' || p.type === 'restart'

function resend(
  ctx: StepContext,
  spec: ResourceSpec,
  r: ResourceState,
  p: PendingAction & { type: 'start' | 'stop' | 'restart' },
  why: string,
): void {
  const decision = ctx.record({
    kind: p.type === 'stop' ? 'stop' : 'resource-phase',
    resource: spec.id,
    node: p.node,
    summary: `${p.type} on ${p.node} sent again: ${why}`,
    rule: 'action.resent',
    correlationId: r.correlationId,
  })
  r.pending = null
  issue(ctx, spec, r, { type: p.type, node: p.node, decision }, p.afterStop)
}

/** The resources with an action pending that `matches` (each marked touched: it is about to change). */
function* pendingWhere(
  ctx: StepContext,
  matches: (p: PendingAction) => boolean,
): Generator<{ spec: ResourceSpec; r: ResourceState; p: PendingAction }> {
  const states = ctx.resourceStates()
  const candidates = pendingCandidates(ctx, states)
  if (ctx.env.selfCheck)
    states.forEach((r, i) => {
      if (r.pending && !candidates.includes(i))
        throw new Error(
          `engine visit index: ${ctx.resourceSpecs[i]?.id} has an action pending and was not marked`,
        )
    })
  for (const i of candidates) {
    const r = states[i] as ResourceState
    const p = r.pending
    if (!p || !matches(p)) continue
    const spec = ctx.resourceSpecs[i] as ResourceSpec
    ctx.touch(spec.id)
    yield { spec, r, p }
  }
}

/** The result of an action the engine asked for (or its timeout). */
export function actionOutcome(
  ctx: StepContext,
  actionId: string,
  okReported: boolean,
  error?: { kind: 'transient' | 'local' | 'config'; message: string },
  /** How a success was known when no result said so (shown in the record). */
  settled?: string,
  /** The node that answered, if known: an answer from any other node is not this action's. */
  from?: string,
): void {
  for (const { spec, r, p } of pendingWhere(
    ctx,
    (p) => p.actionId === actionId && (from === undefined || p.node === from),
  )) {
    // A stop with no answer from a node that has since been fenced: powered off is stopped.
    const ok = okReported || (p.type === 'stop' && ctx.state.nodes[p.node]?.fence.phase === 'confirmed')
    r.pending = null
    const policy = policyOf(ctx.spec, spec)
    const targetIsSelf = !(spec.kind === 'guest-app' && (p.type === 'reboot-vm' || p.type === 'reset-vm'))
    if (ok && p.type === 'migrate' && p.to) {
      r.observed[p.node] = { state: 'stopped', at: ctx.now, reason: `migrated to ${p.to}` }
      r.observed[p.to] = { state: 'running', at: ctx.now, reason: `migrated from ${p.node}` }
      r.node = p.to
      rebaseGuestSilence(ctx, r)
      setPhase(
        ctx,
        spec.id,
        r,
        'running',
        `live-migrated from ${p.node} to ${p.to}${settled ? ` (${settled})` : ''}`,
        'action.migrate',
      )
      return
    }
    if (!ok && p.type === 'migrate') {
      // Still running where it was: fall back to stop and start elsewhere. Unless its source was
      // fenced under it: then it runs nowhere, and the fenced node's recovery places it.
      const fenced = ctx.state.nodes[p.node]?.fence.phase === 'confirmed'
      // The target may have taken the vm over before the end (the switchover is its last step):
      // nothing starts anywhere until its agent has said whether it runs it.
      const target = p.to ? ctx.state.nodes[p.to] : undefined
      if (target) {
        target.askedFor = { ...(target.askedFor ?? {}), [spec.id]: ctx.now }
        ctx.nodeFactsChanged()
      }
      // Its target gone (dead, fenced): the vm still runs on its source, which is where a stop
      // and start would put it again. It stays, running, rather than be cold-booted in place.
      const targetGone =
        target !== undefined && (target.condition !== 'healthy' || target.fence.phase !== 'idle')
      if (!fenced && targetGone && r.observed[p.node]?.state === 'running') {
        ctx.record({
          kind: 'refuse',
          resource: spec.id,
          node: p.node,
          summary: `live migration to ${p.to} failed (${error?.message ?? 'failed'}): ${p.to} is ${target.condition}, so it stays running on ${p.node}`,
          rule: 'action.migrate-failed',
        })
        setPhase(
          ctx,
          spec.id,
          r,
          'running',
          `stays on ${p.node}: its migration target ${p.to} is gone`,
          'action.migrate-failed',
        )
        return
      }
      const decision = ctx.record({
        kind: 'refuse',
        resource: spec.id,
        node: p.node,
        summary: `live migration to ${p.to} failed (${error?.message ?? 'failed'}): ${fenced ? 'recovering' : 'relocating'} instead`,
        rule: 'action.migrate-failed',
      })
      if (!fenced) r.relocating = { why: 'live migration failed', rule: 'action.migrate-failed', decision }
      return
    }
    if (p.type === 'suspend' || p.type === 'resume') {
      suspensionOutcome(ctx, spec, r, p, ok, error?.message)
      return
    }
    if (ok) {
      if (p.type === 'stop') {
        r.observed[p.node] = { state: 'stopped', at: ctx.now, reason: STOPPED_BY_VIGIL }
        r.bootWaitFrom = null
        // A resource blocked meanwhile (its starts failed everywhere) stays blocked, stopped.
        if (p.afterStop === 'place' && r.phase !== 'blocked') {
          r.node = null
          r.phase = 'recovering'
        }
      } else if (targetIsSelf) {
        r.observed[p.node] = { state: 'running', at: ctx.now, reason: `${p.type} succeeded` }
        r.avoid = null
        r.returnTo = null
        // Started (not restarted): placed anew, its ladder starts over on this node, and so do
        // the ladders of the applications inside a vm (their system is its host).
        if (p.type === 'start') {
          r.step = 0
          for (const app of ctx.guestAppsOf(spec.id)) {
            const a = ctx.state.resources[app.id]
            if (a) a.step = 0
          }
        }
        r.guest = null // a (re)started vm's guest detector re-arms with its first heartbeat
        if (spec.kind === 'vm' && spec.bootAllowanceMs !== undefined) r.bootWaitFrom = ctx.now
        if (spec.kind === 'vm') forgetGuestApps(ctx, spec.id)
        setPhase(ctx, spec.id, r, 'running', `${p.type} on ${p.node} succeeded`, `action.${p.type}`)
      } else if (spec.vm && (p.type === 'reboot-vm' || p.type === 'reset-vm')) {
        // The vm's guest boots again: its silence meanwhile is no hang (its detector re-arms with
        // the first heartbeat, or waits out its boot allowance), as after the vm's own reset.
        const vm = ctx.state.resources[spec.vm]
        const vmSpec = ctx.resourceSpecs.find((s) => s.id === spec.vm)
        if (vm) {
          vm.guest = null
          if (vmSpec?.bootAllowanceMs !== undefined) vm.bootWaitFrom = ctx.now
          ctx.touch(spec.vm)
        }
        forgetGuestApps(ctx, spec.vm)
        // The reset stood in for a stop that failed: the app is placed in the new guest anew.
        if (p.afterStop === 'place') r.node = null
      }
      return
    }
    const message = error?.message ?? 'failed'
    const decision = ctx.record({
      kind: 'refuse',
      resource: spec.id,
      node: p.node,
      summary: `${p.type} on ${p.node} failed (${error?.kind ?? 'transient'}): ${message}`,
      rule: `action.${p.type}-failed`,
      correlationId: r.correlationId,
    })
    if (p.type === 'stop' && spec.kind === 'guest-app') {
      stopFailedInGuest(ctx, spec, r, p.node, message, decision)
      return
    }
    if (p.type === 'stop') {
      // It may still run there and cannot be stopped: only a fence makes the node safe.
      const n = ctx.node(p.node)
      n.fence.forced ??= `stop of ${spec.id} failed: ${message}`
      setPhase(
        ctx,
        spec.id,
        r,
        'waiting',
        `cannot stop it on ${p.node}: fencing ${p.node}`,
        'safety.stop-failed',
      )
      ctx.alert(
        decision,
        'critical',
        `resource:${spec.id}`,
        `stop of ${spec.id} on ${p.node} failed; fencing ${p.node}`,
      )
      return
    }
    if (error?.kind === 'config') {
      block(ctx, spec, r, `${p.type} failed with a configuration error: ${message}`, 'action.config-error')
      return
    }
    if (targetIsSelf && p.type !== 'start' && p.node === r.node) {
      // A restart or reset that failed did not cure the failure it answered, and the observation
      // that reported it may never change (an application that died during its restart stays
      // "failed"): handle that failure again, which counts it and takes the ladder's next step.
      r.handledFailure = null
      // A local error says this node cannot run it (its program dies during startup, its domain
      // is not defined here): restarting here again cannot cure that, so the ladder goes straight
      // to its relocation, as Pacemaker moves a resource whose start failed on a node. A guest
      // application's node is its vm, whose disk moves with it: its ladder is left as it is.
      const relocate = policy.ladder.indexOf('relocate')
      if (error?.kind === 'local' && spec.kind !== 'guest-app' && relocate > r.step) {
        ctx.record({
          kind: 'resource-phase',
          resource: spec.id,
          node: p.node,
          summary: `a local error: ${p.node} cannot run it, so the ladder skips to its relocation`,
          rule: 'ladder.local-error',
          correlationId: r.correlationId,
        })
        r.step = relocate
      }
      return
    }
    r.failures.push({ at: ctx.now, step: r.step, node: countedNode(ctx, spec, p.node) })
    if (p.type === 'start' && targetIsSelf) {
      // A failed or timed-out start leaves the resource in an unknown state there: stop it (the
      // force operation) before anything starts elsewhere; if that stop fails, the node is fenced.
      r.avoid = p.node
      issue(ctx, spec, r, { type: 'stop', node: p.node, decision }, 'place')
      setPhase(
        ctx,
        spec.id,
        r,
        'recovering',
        `start on ${p.node} failed: stopping it there, then trying another node`,
        'action.start-failed',
      )
      // Starts that fail wherever they are tried would otherwise go from node to node for ever,
      // twice a second, in silence: past the ladder's budget of failures the resource is blocked,
      // with an alert, once stopped where it last failed (Pacemaker bans a node on a failed start).
      const recent = r.failures.filter((f) => ctx.now - f.at < policy.windowMs).length
      if (recent > policy.maxRestarts * policy.ladder.length)
        block(
          ctx,
          spec,
          r,
          `${recent} failed starts in the window, the last on ${p.node}: ${message}`,
          'ladder.exhausted',
        )
      return
    }
    if (
      r.failures.filter((f) => ctx.now - f.at < policy.windowMs).length >
      policy.maxRestarts * policy.ladder.length
    ) {
      block(ctx, spec, r, `${r.failures.length} failed actions in the window`, 'ladder.exhausted')
    }
    return
  }
}

export function applyResourceState(
  ctx: StepContext,
  node: string,
  resource: string,
  state: ObservedState,
  reason?: string,
): void {
  const r = ctx.state.resources[resource]
  if (!r) return
  const n = ctx.state.nodes[node]
  if (n?.askedFor?.[resource] !== undefined) {
    // The answer a cut-off migration waited for, even if nothing changed.
    delete n.askedFor[resource]
    ctx.touch(resource)
  }
  const prev = r.observed[node]
  if (prev && prev.state === state) {
    // Unchanged: keep the time it entered this state; a reason first told now is kept with it.
    if (reason && !prev.reason) prev.reason = reason
    return
  }
  r.observed[node] = reason ? { state, at: ctx.now, reason } : { state, at: ctx.now }
  ctx.touch(resource)
}

/**
 * A vm that changed hosts (a live migration, or a move outside Vigil) is judged for a hung guest
 * from the switchover on, with the history of its beats kept: its guest was paused while its memory
 * was copied over (briefly in a live migration, throughout one without --live), and the target's
 * first count is only a baseline. A guest that stays silent after it is hung, and is said so.
 */
export function rebaseGuestSilence(ctx: StepContext, r: ResourceState): void {
  if (r.guest && (r.guest.lastAt === null || r.guest.lastAt < ctx.now))
    r.guest = { ...r.guest, lastAt: ctx.now }
}
