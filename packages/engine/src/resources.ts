import type { StepContext } from './context.js'
import { phiParams } from './context.js'
import { emptyPhi, phi, recordArrival } from './phi.js'
import { addLoad, bestNode, candidatesFor } from './placement.js'
import { policyOf, type ResourceSpec } from './spec.js'
import type {
  Candidate,
  NodeState,
  ObservedState,
  PendingAction,
  ResourceActionType,
  ResourcePhase,
  ResourceState,
} from './types.js'

/**
 * How long a vm seen running on a second node waits for its home to report it stopped before it
 * counts as a second copy: a live migration done outside Vigil ends with the source stopped, which
 * its agent reports at once (libvirt's lifecycle event) or at its next monitor.
 */
const OUTSIDE_MIGRATION_SETTLE_MS = 2000

/** The observed reason of a copy Vigil itself stopped (not a failure: nothing to count or repair). */
const STOPPED_BY_VIGIL = 'stopped by Vigil'

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

/** Asks the world for an action on behalf of a resource, and waits for it (one at a time). */
function issue(
  ctx: StepContext,
  spec: ResourceSpec,
  r: ResourceState,
  a: { type: PendingAction['type']; node: string; decision: string; resource?: string; to?: string },
  afterStop: PendingAction['afterStop'] = null,
): void {
  const resource = a.resource ?? spec.id
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

/** A node not heard since the engine (or the hub) started, still within the startup grace. */
function inStartupGrace(ctx: StepContext, id: string): boolean {
  const n = ctx.node(id)
  return (
    !n.heard && n.condition === 'unknown' && ctx.now - n.conditionSince < ctx.spec.detection.startupGraceMs
  )
}

function setPhase(
  ctx: StepContext,
  id: string,
  r: ResourceState,
  phase: ResourcePhase,
  why: string,
  rule: string,
): void {
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

/**
 * A guest's heartbeat reaches the hub through its host's agent. While that host is not healthy
 * (unheard, suspected, partitioned from the hub), the guest's silence says nothing about the guest;
 * once it is healthy again, the silence counts from then (found by the chaos run: the hub cut from
 * the vm's host for 3-4 s, or a burst of loss stalling its connection, reset a healthy guest).
 */
function guestHung(ctx: StepContext, r: ResourceState, spec: ResourceSpec): boolean {
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

/**
 * A resource that is settled and that nothing touched this step needs no visit: its decisions only
 * change with an input about it, a node-level change (which revisits everything), or its own timers
 * (pending actions, relocations, moves, decaying failures, maintenance expiry, guest hang detection),
 * and a resource with any of those is not steady. This makes a steady step O(changes), not O(resources).
 */
function steady(r: ResourceState): boolean {
  return (
    (r.phase === 'running' || r.phase === 'unmanaged' || r.phase === 'blocked') &&
    r.pending === null &&
    r.relocating === null &&
    r.move === null &&
    (r.failbackDue ?? null) === null &&
    r.failures.length === 0 &&
    r.maintenance === null &&
    r.guest === null &&
    (r.bootWaitFrom ?? null) === null &&
    !hasCopyElsewhere(r)
  )
}

/** Reported running on `node` and on no other node. */
function runningOnlyOn(r: ResourceState, node: string): boolean {
  if (r.observed[node]?.state !== 'running') return false
  for (const other in r.observed) if (other !== node && r.observed[other]?.state === 'running') return false
  return true
}

/** A copy reported anywhere but its home is a standing condition: it keeps the resource visited. */
function hasCopyElsewhere(r: ResourceState): boolean {
  for (const node in r.observed) {
    if (node !== r.node && r.observed[node]?.state !== 'stopped') return true
  }
  return false
}

export function manageResources(ctx: StepContext): void {
  const states = ctx.resourceStates()
  for (let i = 0; i < states.length; i++) {
    const spec = ctx.resourceSpecs[i] as ResourceSpec
    const r = states[i] as ResourceState
    if (!ctx.allDirty && !ctx.touched.has(spec.id) && steady(r) && !affectedByNodes(ctx, spec, r)) continue
    manageOne(ctx, spec)
  }
}

/**
 * A settled resource is revisited after a node-level change only if that node can matter to it:
 * it runs there, it prefers that node (failback), or (a guest application) its vm is unsettled,
 * since a dead host sends no reports from inside the guest.
 */
function affectedByNodes(ctx: StepContext, spec: ResourceSpec, r: ResourceState): boolean {
  if (spec.kind === 'guest-app' && spec.vm) {
    const vm = ctx.state.resources[spec.vm]
    if (vm && !steady(vm)) return true
  }
  if (ctx.dirtyNodes.size === 0) return false
  if (r.node !== null && ctx.dirtyNodes.has(r.node)) return true
  for (const node in spec.preferred) if (ctx.dirtyNodes.has(node)) return true
  return false
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

/** The answer to a suspend or a resume: the vm sleeps or runs; a refusal drops the wish, said. */
function suspensionOutcome(
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
function suspension(
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

/** Where a failure counts: its node, or for a guest application the host its vm runs on. */
function countedNode(ctx: StepContext, spec: ResourceSpec, node: string): string {
  if (spec.kind !== 'guest-app' || !spec.vm) return node
  return ctx.state.resources[spec.vm]?.node ?? node
}

function handleFailure(
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
    if (spec.kind === 'vm' && observed === 'hung') {
      r.guest = null // re-armed by the first heartbeat after the reset
      pend('reset-vm', spec.id, node)
    } else if (spec.kind === 'vm' && observed !== 'running') pend('start', spec.id, node)
    else pend('restart', spec.id, node)
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

function block(ctx: StepContext, spec: ResourceSpec, r: ResourceState, why: string, rule: string): void {
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

function relocateVm(ctx: StepContext, vmId: string, decision: string): void {
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

function relocateForMove(ctx: StepContext, spec: ResourceSpec, r: ResourceState): void {
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
function failback(ctx: StepContext, spec: ResourceSpec, r: ResourceState): void {
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
function evacuate(ctx: StepContext, spec: ResourceSpec, r: ResourceState): void {
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
function progressRelocation(ctx: StepContext, spec: ResourceSpec, r: ResourceState): void {
  const rel = r.relocating
  if (!rel || !r.node || r.pending) return
  if (stopDependentsFirst(ctx, spec.id, rel.decision)) {
    setPhase(
      ctx,
      spec.id,
      r,
      'stopping',
      'waiting for what depends on it to stop first',
      'order.stop-dependents-first',
    )
    return
  }
  issue(ctx, spec, r, { type: 'stop', node: r.node, decision: rel.decision }, 'place')
  r.relocating = null
  setPhase(ctx, spec.id, r, 'stopping', rel.why, rel.rule)
}

/** True while something that depends on `id` still runs (and asks it to stop). */
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
  if (stopDependentsFirst(ctx, spec.id, decision)) {
    setPhase(
      ctx,
      spec.id,
      r,
      'stopping',
      'waiting for what depends on it to stop first',
      'order.stop-dependents-first',
    )
    return
  }
  issue(ctx, spec, r, { type: 'stop', node, decision })
}

/**
 * What depends on `id` and is placed and managed: what must stop before it does. A vm stops what it
 * runs with it, so what depends on an application inside it (from elsewhere) stops first too.
 */
function runningDependents(ctx: StepContext, id: string): ResourceSpec[] {
  const stopping = new Set([id])
  for (const app of ctx.resourceSpecs) if (app.kind === 'guest-app' && app.vm === id) stopping.add(app.id)
  return ctx.resourceSpecs.filter((dep) => {
    if (dep.kind === 'guest-app' && dep.vm === id) return false
    if (!dep.dependsOn.some((d) => stopping.has(d))) return false
    // An application in a vm that does not run does not run either: nothing to wait for.
    if (dep.kind === 'guest-app' && dep.vm) {
      const vm = ctx.state.resources[dep.vm]
      if (!vm?.node || vm.observed[vm.node]?.state !== 'running') return false
    }
    const ds = ctx.state.resources[dep.id] as ResourceState
    return ds.node !== null && ds.phase !== 'stopped' && ds.phase !== 'unmanaged'
  })
}

function stopDependentsFirst(
  ctx: StepContext,
  id: string,
  decision: string,
  what = 'which is moving',
): boolean {
  const dependents = runningDependents(ctx, id)
  for (const dep of dependents) {
    const ds = ctx.state.resources[dep.id] as ResourceState
    const direct = dep.dependsOn.includes(id)
    const inside = dep.dependsOn.find((d) => ctx.resourceSpecs.some((a) => a.id === d && a.vm === id))
    const on = direct ? `${id},` : `${inside}, inside ${id},`
    if (!ds.pending && !ds.relocating)
      ds.relocating = {
        why: `stopping first: it depends on ${on} ${what}`,
        rule: 'order.stop-dependents-first',
        decision,
      }
  }
  return dependents.length > 0
}

/** A guest application lives inside its vm: its "node" is the vm, reached through the guest agent. */
function manageGuestApp(ctx: StepContext, spec: ResourceSpec, r: ResourceState): void {
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
    else if (stopDependentsFirst(ctx, spec.id, rel.decision))
      setPhase(
        ctx,
        spec.id,
        r,
        'stopping',
        'waiting for what depends on it to stop first',
        'order.stop-dependents-first',
      )
    else {
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

function place(ctx: StepContext, spec: ResourceSpec, r: ResourceState): void {
  const frozen = ctx.nodeSpecs.filter((n) => ctx.node(n.id).condition === 'frozen').map((n) => n.id)
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
  const suspects = ctx.everyNodeInventoried()
    ? Object.keys(r.observed).sort()
    : ctx.nodeSpecs.map((n) => n.id)
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
    if (ctx.nodeSpecs.some((n) => inStartupGrace(ctx, n.id))) {
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
  const waitFor = ctx.nodeSpecs.find(
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
  for (let i = 0; i < states.length; i++) {
    const r = states[i] as ResourceState
    const p = r.pending
    if (!p || !matches(p)) continue
    const spec = ctx.resourceSpecs[i] as ResourceSpec
    ctx.touched.add(spec.id)
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
      if (target) target.askedFor = { ...(target.askedFor ?? {}), [spec.id]: ctx.now }
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
        if (p.afterStop === 'place') {
          r.node = null
          r.phase = 'recovering'
        }
      } else if (targetIsSelf) {
        r.observed[p.node] = { state: 'running', at: ctx.now, reason: `${p.type} succeeded` }
        r.avoid = null
        // Started (not restarted): placed anew, its ladder starts over on this node, and so do
        // the ladders of the applications inside a vm (their system is its host).
        if (p.type === 'start') {
          r.step = 0
          for (const app of ctx.resourceSpecs)
            if (app.kind === 'guest-app' && app.vm === spec.id) {
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
          ctx.touched.add(spec.vm)
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

/**
 * A vm (re)booted: what its guest agent said about the applications inside is from before, and an
 * application is running again only once the new guest says so (it may still be booting).
 */
/**
 * A guest application that could not be stopped in its vm (its guest hung, its agent gone): the
 * guest's fence is a reset of its vm, which stops everything in it, as Pacemaker fences a guest
 * node by restarting its container. Its host is never fenced for it. Without a vm that can act,
 * it waits for the vm's own recovery.
 */
function stopFailedInGuest(
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
function forgetGuestApps(ctx: StepContext, vmId: string): void {
  for (const app of ctx.resourceSpecs) {
    if (app.kind !== 'guest-app' || app.vm !== vmId) continue
    const r = ctx.state.resources[app.id]
    if (!r) continue
    const p = r.pending
    if (p?.type === 'stop' && p.node === vmId) {
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
    ctx.touched.add(app.id)
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
    ctx.touched.add(resource)
  }
  const prev = r.observed[node]
  if (prev && prev.state === state) {
    // Unchanged: keep the time it entered this state; a reason first told now is kept with it.
    if (reason && !prev.reason) prev.reason = reason
    return
  }
  r.observed[node] = reason ? { state, at: ctx.now, reason } : { state, at: ctx.now }
  ctx.touched.add(resource)
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
  ctx.touched.add(input.resource)
}

export function applyGuestHeartbeat(ctx: StepContext, resource: string): void {
  const r = ctx.state.resources[resource]
  if (!r) return
  r.bootWaitFrom = null
  r.guest = recordArrival(
    r.guest ?? emptyPhi(),
    ctx.now,
    phiParams(ctx.spec.detection.guest),
    ctx.spec.detection.guest.threshold,
  )
}
