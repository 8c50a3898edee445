/**
 * What lives inside a vm: its guest's heartbeat and monitor answers (and when the guest counts as
 * hung), and the guest applications it runs, managed through the guest agent with the vm as their
 * node.
 */

import type { StepContext } from './context.js'
import { phiParams } from './context.js'
import { waitForDependents } from './dependents.js'
import { handleFailure } from './failures.js'
import { emptyPhi, phi, recordArrival } from './phi.js'
import { issue, setPhase } from './resource-actions.js'
import type { ResourceSpec } from './spec.js'
import type { ResourceState } from './types.js'

/**
 * A guest's heartbeat reaches the hub through its host's agent. While that host is not healthy
 * (unheard, suspected, partitioned from the hub), the guest's silence says nothing about the guest;
 * once it is healthy again, the silence counts from then (found by the chaos run: the hub cut from
 * the vm's host for 3-4 s, or a burst of loss stalling its connection, reset a healthy guest).
 */
export function guestHung(ctx: StepContext, r: ResourceState, spec: ResourceSpec): boolean {
  if (r.node === null) return false
  const host = ctx.state.nodes[r.node]
  if (host?.condition !== 'healthy') return false
  // What the guest's monitor could see: its silence is counted up to shortly after the monitor's
  // latest answer, never on (a monitor that stopped answering is not a guest that stopped beating).
  const answeredAt = monitorAnsweredAt(r, r.node, host.conditionSince)
  if (answeredAt !== null) sayStaleMonitor(ctx, spec, r, r.node, answeredAt)
  const judgedAt =
    answeredAt === null ? ctx.now : Math.min(ctx.now, answeredAt + ctx.spec.detection.monitorLagMs)
  if (!r.guest) {
    // Never heard since it booted: hung once its boot allowance is over (counted from when the
    // host was last heard healthy too, so a host's or the hub's own silence does not count).
    const from = r.bootWaitFrom ?? null
    if (from === null || spec.bootAllowanceMs === undefined) return false
    return judgedAt - Math.max(from, host.conditionSince) >= spec.bootAllowanceMs
  }
  const guest =
    r.guest.lastAt !== null && r.guest.lastAt < host.conditionSince
      ? { ...r.guest, lastAt: host.conditionSince }
      : r.guest
  return phi(guest, judgedAt, phiParams(ctx.spec.detection.guest)) >= ctx.spec.detection.guest.threshold
}

/**
 * When the vm's monitor on `node` last answered, as far as the engine can hold it to: its latest
 * answer, or the moment the vm was last seen start running there or its host became healthy again
 * (a monitor has nothing to say of a vm that was not running, nor is heard through a silent host).
 * Null: no answer carried an age.
 */
function monitorAnsweredAt(r: ResourceState, node: string, hostSince: number): number | null {
  const sample = r.guestSample
  if (!sample || sample.node !== node) return null
  return Math.max(sample.at, hostSince, r.observed[node]?.at ?? Number.NEGATIVE_INFINITY)
}

/** A vm monitor on `node` that stopped answering is said once (recorded, alerted) while it lasts. */
function sayStaleMonitor(
  ctx: StepContext,
  spec: ResourceSpec,
  r: ResourceState,
  node: string,
  answeredAt: number,
): void {
  const sample = r.guestSample
  if (!sample || sample.staleSaid) return
  const silentMs = ctx.now - answeredAt
  if (silentMs < ctx.spec.detection.monitorStaleMs) return
  sample.staleSaid = true
  const decision = ctx.record({
    kind: 'refuse',
    resource: spec.id,
    node,
    summary: `its monitor on ${node} has not answered for ${(silentMs / 1000).toFixed(1)} s: its guest is not judged on a stale answer (monitor stale, not a hung guest)`,
    rule: 'monitor.stale',
  })
  ctx.alert(
    decision,
    'warning',
    `resource:${spec.id}`,
    `the agent on ${node} has not had an answer from ${spec.id}'s monitor for ${(silentMs / 1000).toFixed(1)} s (a hung hypervisor daemon or storage?): its guest is not judged meanwhile`,
  )
}

/** A guest application lives inside its vm: its "node" is the vm, reached through the guest agent. */
export function manageGuestApp(ctx: StepContext, spec: ResourceSpec, r: ResourceState): void {
  const vmId = spec.vm as string
  const vm = ctx.state.resources[vmId]
  if (vm?.phase !== 'running') {
    // Its vm down, it is down: a stop asked of it (a dependency moving) is done.
    r.relocating = null
    setPhase(ctx, spec.id, r, 'waiting', `its vm ${vmId} is ${vm?.phase ?? 'unknown'}`, 'wait.vm')
    return
  }
  // Not placed yet, or stopped by Vigil (a dependency moved): a copy stopped there is to be started,
  // not a failure to count. Placed in its vm once its guest has said something of it.
  const placing = r.node === null
  const o = r.observed[vmId]
  if (!o) return
  r.node = vmId
  // A dependency of it is moving: it stops first, in its vm (what depends on it before it), like
  // any resource; it then waits in its vm for its dependencies to run again. Never stopping it
  // there would keep the dependency's relocation waiting for ever.
  const rel = r.relocating
  if (rel) {
    if (o.state !== 'running') r.relocating = null
    else if (!waitForDependents(ctx, spec, r, rel.decision)) {
      issue(ctx, spec, r, { type: 'stop', node: vmId, decision: rel.decision }, 'place')
      r.relocating = null
      setPhase(ctx, spec.id, r, 'stopping', rel.why, rel.rule)
    }
    return
  }
  if (placing && o.state === 'stopped') {
    startInVmOnceDependenciesRun(ctx, spec, r, vmId)
    return
  }
  if (o.state === 'running') {
    setPhase(ctx, spec.id, r, 'running', `running in ${vmId}`, 'observed.running')
    return
  }
  const key = `${o.state}@${o.at}`
  if (r.handledFailure !== key)
    handleFailure(ctx, spec, r, `${o.state} in ${vmId}${o.reason ? ` (${o.reason})` : ''}`, key, o.state)
}

/**
 * A guest application not running in its (running) vm and not failed there: started once its
 * dependencies run, as `place` starts any resource.
 */
function startInVmOnceDependenciesRun(
  ctx: StepContext,
  spec: ResourceSpec,
  r: ResourceState,
  vmId: string,
): void {
  const dep = spec.dependsOn.find((d) => ctx.state.resources[d]?.phase !== 'running')
  if (dep !== undefined) {
    r.node = null // still to be placed in its vm
    setPhase(ctx, spec.id, r, 'waiting', `waiting for ${dep} to run first`, 'order.depends-on')
    return
  }
  const decision = ctx.record({
    kind: 'start',
    resource: spec.id,
    node: vmId,
    summary: `starting in ${vmId}: what it depends on runs again`,
    rule: 'order.depends-on-ready',
  })
  issue(ctx, spec, r, { type: 'start', node: vmId, decision })
  setPhase(ctx, spec.id, r, 'starting', `starting in ${vmId}`, 'order.depends-on-ready')
}

/**
 * A guest application that could not be stopped in its vm (its guest hung, its agent gone): the
 * guest's fence is a reset of its vm, which stops everything in it, as Pacemaker fences a guest
 * node by restarting its container. Its host is never fenced for it. Without a vm that can act,
 * it waits for the vm's own recovery.
 */
export function stopFailedInGuest(
  ctx: StepContext,
  spec: ResourceSpec,
  r: ResourceState,
  vmId: string,
  message: string,
  decision: string,
): void {
  const vm = ctx.state.resources[vmId]
  const vmNode = vm?.node ?? null
  if (vm?.pending || vmNode === null || ctx.node(vmNode).condition !== 'healthy') {
    setPhase(
      ctx,
      spec.id,
      r,
      'waiting',
      `cannot stop it in ${vmId} (${message}): waiting for its vm's own recovery`,
      'safety.stop-failed-in-guest',
    )
    return
  }
  const reset = ctx.record({
    kind: 'recover-vm',
    resource: spec.id,
    node: vmNode,
    summary: `cannot stop it in ${vmId} (${message}): resetting ${vmId}, which stops all it runs`,
    rule: 'safety.stop-failed-in-guest',
    correlationId: decision,
  })
  issue(ctx, spec, r, { type: 'reset-vm', node: vmNode, decision: reset, resource: vmId }, 'place')
  setPhase(
    ctx,
    spec.id,
    r,
    'stopping',
    `cannot stop it in ${vmId} (${message}): resetting ${vmId}`,
    'safety.stop-failed-in-guest',
  )
}

/**
 * A vm (re)started: what its old guest reported is forgotten, and a stop of an application waiting
 * in it is settled, since the restart stopped everything the guest ran.
 */
export function forgetGuestApps(ctx: StepContext, vmId: string): void {
  for (const app of ctx.guestAppsOf(vmId)) {
    const r = ctx.state.resources[app.id]
    if (!r) continue
    const p = r.pending
    if (p?.type === 'stop' && p.node === vmId) {
      ctx.mark(app.id)
      r.pending = null
      ctx.record({
        kind: 'resource-phase',
        resource: app.id,
        node: vmId,
        summary: `stop in ${vmId} settled: ${vmId} was restarted, which stopped it`,
        rule: 'action.stop-settled-by-vm',
      })
      if (p.afterStop === 'place') {
        r.node = null
        r.phase = 'recovering'
        r.phaseSince = ctx.now
        r.reason = { rule: 'action.stop-settled-by-vm', why: `${vmId} was restarted` }
      }
    }
    if (r.observed[vmId] === undefined) continue
    delete r.observed[vmId]
    ctx.touch(app.id)
  }
}

/** A vm monitor's answer with its age: an older answer than the one known changes nothing. */
export function applyGuestSample(
  ctx: StepContext,
  input: { node: string; resource: string; ageMs: number },
): void {
  const r = ctx.state.resources[input.resource]
  if (!r) return
  const at = ctx.now - input.ageMs
  const prev = r.guestSample
  if (prev && prev.node === input.node && at <= prev.at) return
  if (prev?.staleSaid && prev.node === input.node)
    ctx.record({
      kind: 'resource-phase',
      resource: input.resource,
      node: input.node,
      summary: `its monitor on ${input.node} answers again, after ${((at - prev.at) / 1000).toFixed(1)} s`,
      rule: 'monitor.answering',
    })
  r.guestSample = { node: input.node, at, staleSaid: false }
  ctx.touch(input.resource)
}

export function applyGuestHeartbeat(ctx: StepContext, resource: string): void {
  const r = ctx.state.resources[resource]
  if (!r) return
  ctx.mark(resource) // a guest beating is watched for a hang: never steady
  r.bootWaitFrom = null
  r.guest = recordArrival(
    r.guest ?? emptyPhi(),
    ctx.now,
    phiParams(ctx.spec.detection.guest),
    ctx.spec.detection.guest.threshold,
  )
}
