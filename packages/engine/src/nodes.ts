import type { FenceOutcome } from '@vigil/protocol/vocabulary'
import type { StepContext } from './context.js'
import type { NodeSpec } from './spec.js'
import type { FenceState, NodeCondition, NodeState } from './types.js'

const SCORES: Record<NodeCondition, number> = {
  unknown: 50,
  healthy: 100,
  suspect: 70,
  partitioned: 50,
  frozen: 50,
  'agent-stopped': 50,
  isolated: 20,
  dead: 0,
}

/** A healthy node with degraded links (a bond lost a slave). */
const DEGRADED_SCORE = 80
/** Conditions in which the hub cannot hear a node (and commands sent to it may be lost). */
const SILENT: ReadonlySet<NodeCondition> = new Set([
  'suspect',
  'partitioned',
  'isolated',
  'frozen',
  'agent-stopped',
])
/**
 * A heartbeat this long after the agent said it was stopping is no straggler of the stop: that run
 * of the agent goes on (its stop hung or was cancelled), and its silence counts again.
 */
const STOP_STRAGGLER_MS = 2000

/**
 * A node's agent said it was stopping. Its host stays up (an agent restarted or upgraded): its
 * silence is held, not judged (Pacemaker never fences a node that left cleanly; VCS's `hastop -local
 * -force` leaves its applications running, unwatched). Going down with its host's shutdown, it is
 * judged as usual: fenced, found off, then failed over.
 */
export function agentStopped(ctx: StepContext, id: string, hostShutdown: boolean): void {
  const n = ctx.state.nodes[id]
  if (!n) return
  n.agentStopped = hostShutdown ? null : { at: ctx.now, newRun: false }
  if (hostShutdown)
    ctx.record({
      kind: 'node-condition',
      node: id,
      summary: `its agent stopped with its host's shutdown: its silence is judged as usual (fenced, found off, then failed over)`,
      rule: 'agent.host-shutdown',
      evidence: ctx.evidence(id),
      correlationId: n.incident ?? null,
    })
}

/** Whether a node's silence is held because its agent said it was stopping (and not for too long). */
function heldAfterAgentStop(ctx: StepContext, n: NodeState, hubAlive: boolean): boolean {
  const stopped = n.agentStopped ?? null
  if (stopped === null) return false
  if (hubAlive && n.hub.lastAt !== null && n.hub.lastAt > stopped.at + STOP_STRAGGLER_MS) {
    n.agentStopped = null
    return false
  }
  const hold = ctx.spec.detection.agentStoppedHoldMs
  return hold === null || ctx.now - stopped.at < hold
}

/** Silent now, and gone silent within the freeze window: counts towards a freeze of its domain. */
function silentTogether(ctx: StepContext, next: NodeCondition, n: NodeState): boolean {
  return (
    (next === 'suspect' || next === 'dead' || next === 'isolated') &&
    n.power.state !== 'off' &&
    n.fence.phase !== 'confirmed' &&
    n.silentSince !== null &&
    n.silentSince >= ctx.now - ctx.spec.governor.freezeWindowMs
  )
}

/** Classifies every node from its channels; freezes instead when too many go silent at once. */
export function evaluateNodes(ctx: StepContext): void {
  const { detection, governor } = ctx.spec
  const states = ctx.nodeStates()
  const tentative: NodeCondition[] = new Array(states.length)
  let recentlySilent = 0
  for (let i = 0; i < states.length; i++) {
    const spec = ctx.nodeSpecs[i] as NodeSpec
    const n = states[i] as NodeState
    const hubAlive = ctx.hubAliveAt(i, n)
    const powerOff = ctx.provenOff(spec.id, n)
    const held = heldAfterAgentStop(ctx, n, hubAlive)
    // Heard by the hub and not proven off (nearly every node at every step): its peers and its
    // disk change nothing, and are not asked.
    const peers = !hubAlive && ctx.peersHearing(spec.id).length > 0
    if ((hubAlive || peers) && !powerOff) n.silentSince = null
    else n.silentSince ??= ctx.now
    let next: NodeCondition
    if (powerOff) next = 'dead'
    else if (hubAlive) next = n.heard ? 'healthy' : 'unknown'
    else if (held) next = 'agent-stopped'
    else if (
      !n.heard &&
      n.condition === 'unknown' &&
      ctx.now - n.conditionSince < detection.startupGraceMs &&
      !silenceWitnessed(ctx, spec.id, n)
    )
      next = 'unknown'
    else if (peers) next = 'partitioned'
    else if (ctx.now - (n.silentSince ?? ctx.now) < detection.confirmMs) next = 'suspect'
    else next = ctx.diskAlive(spec.id, n) === true ? 'isolated' : 'dead'
    tentative[i] = next
    if (n.heard && silentTogether(ctx, next, n)) recentlySilent++
  }

  // Hub-side partition guard: many nodes of one failure domain going silent together is far more
  // likely the hub's (or a switch's) problem than many simultaneous host deaths. Freeze them.
  // (Two at least, so with fewer no domain is looked at: a dead host waiting for repair would
  // otherwise cost a pass over every domain at every step.)
  for (const [domain, members] of recentlySilent >= 2 ? ctx.failureDomains() : []) {
    const known = members.filter((i) => (states[i] as NodeState).heard)
    const silentAt = known.filter((i) =>
      silentTogether(ctx, tentative[i] as NodeCondition, states[i] as NodeState),
    )
    if (silentAt.length >= 2 && silentAt.length / Math.max(1, known.length) > governor.freezeShare) {
      const silent = silentAt.map((i) => (ctx.nodeSpecs[i] as NodeSpec).id)
      const wasFrozen = silentAt.some((i) => (states[i] as NodeState).condition === 'frozen')
      for (const i of silentAt) tentative[i] = 'frozen'
      if (!wasFrozen) {
        const id = ctx.record({
          kind: 'freeze',
          summary: `${silent.length} of ${known.length} nodes in failure domain "${domain}" went silent together (${silent.join(', ')}): freezing, no fencing or failover until they are heard again`,
          rule: 'governor.freeze-share',
        })
        ctx.alert(
          id,
          'critical',
          `domain:${domain}`,
          `hub-side partition suspected: ${silent.join(', ')} silent together`,
        )
      }
    }
  }

  for (let i = 0; i < states.length; i++) {
    const spec = ctx.nodeSpecs[i] as NodeSpec
    const n = states[i] as NodeState
    const next = tentative[i] ?? n.condition
    if (next !== n.condition) {
      const from = n.condition
      n.condition = next
      n.conditionSince = ctx.now
      if (next === 'healthy') ctx.nodeBecameAvailable = true
      // Unknown too: after a hub restart, what it had sent may have been answered while it was down.
      if (next === 'healthy' && (SILENT.has(from) || from === 'unknown')) ctx.heardAgain.push(spec.id)
      if (!(from === 'unknown' && next === 'healthy')) {
        const id = ctx.record({
          kind: 'node-condition',
          node: spec.id,
          summary:
            next === 'agent-stopped' || from === 'agent-stopped'
              ? agentStopSummary(ctx, spec.id, from, next)
              : next === 'isolated'
                ? `${from} -> ${next}: its disk heartbeat advances; fenced if still unheard ${ctx.spec.detection.isolationGraceMs / 1000} s after going silent`
                : from === 'unknown' && !n.heard && (n.graceWitness ?? null) !== null
                  ? `${from} -> ${next}: not heard since the hub started, its disk heartbeat still while the others' advance and no peer hearing it for ${ctx.spec.detection.restartWitnessMs / 1000} s: the startup grace is not waited out`
                  : `${from} -> ${next}`,
          rule: `classify.${next}`,
          classification: next,
          evidence: ctx.evidence(spec.id),
          correlationId: n.incident ?? null,
        })
        n.incident = next === 'healthy' ? null : (n.incident ?? id)
        if (next === 'agent-stopped')
          ctx.alert(
            id,
            'warning',
            `node:${spec.id}`,
            `${spec.id}'s agent stopped: its resources run unwatched and are not recovered there until it is back`,
          )
      }
    }
    updateHealth(n, ctx.spec.detection.failuresBeforeCritical, ctx.spec.detection.successesBeforePassing)
    checkPowerReading(ctx, spec.id, n)
  }
}

function agentStopSummary(ctx: StepContext, id: string, from: NodeCondition, next: NodeCondition): string {
  const hold = ctx.spec.detection.agentStoppedHoldMs
  if (next === 'agent-stopped')
    return `${from} -> ${next}: its agent said it was stopping, its host staying up: its resources run unwatched where they were, and its silence is not taken for a death ${hold === null ? 'until a new run of its agent is heard or its power reads off' : `for ${hold / 1000} s`}`
  if (next === 'dead' && ctx.provenOff(id)) return `${from} -> ${next}: its power reads off`
  if (next === 'healthy') return `${from} -> ${next}: its agent is back`
  return hold === null
    ? `${from} -> ${next}: its agent's run that said it was stopping beat on, then fell silent`
    : `${from} -> ${next}: its agent stopped more than ${hold / 1000} s ago and no new run of it has been heard`
}

/**
 * A node not heard since the hub (re)started keeps the startup grace (its agent may be slow to
 * reconnect) unless its silence is witnessed, for `restartWitnessMs`, on the channels that do not
 * wait for its agent to reconnect: its disk heartbeat stays still while another node's, heard since
 * the grace began, advances (so the disk is read and reported), and no fresh peer report hears it.
 * A slow agent keeps beating on the disk and talking to its peers: it keeps its grace.
 */
function silenceWitnessed(ctx: StepContext, id: string, n: NodeState): boolean {
  const witnessed =
    n.disk.lastAt !== null &&
    ctx.diskAlive(id) === false &&
    ctx.peersHearing(id).length === 0 &&
    ctx.nodeSpecs.some((o) => {
      if (o.id === id) return false
      const other = ctx.node(o.id)
      return other.heard && other.disk.lastAt !== null && other.disk.lastAt > n.conditionSince
    })
  if (!witnessed) {
    n.graceWitness = null
    return false
  }
  n.graceWitness ??= ctx.now
  return ctx.now - n.graceWitness >= ctx.spec.detection.restartWitnessMs
}

/**
 * A periodic power reading of off taken while the node was beating, and followed by a heartbeat:
 * the device, or the plug the cluster file maps to this node, is wrong. (Off before the node beats
 * is a node powering on; off and silence after is a power loss.) Said once per device (until it
 * reads on); that device's reading would be no proof in a fence either: its run's read-back is
 * checked against heartbeats the same way.
 */
function checkPowerReading(ctx: StepContext, id: string, n: NodeState): void {
  const p = n.power
  if (!p.polled) return
  if (p.state === 'on') {
    n.powerMismatch = null
    return
  }
  if (p.state !== 'off' || !p.beating || n.hub.lastAt === null || n.hub.lastAt <= p.at) return
  if (n.powerMismatch === p.device) return
  n.powerMismatch = p.device
  const decision = ctx.record({
    kind: 'refuse',
    node: id,
    summary: `${p.device} reads ${id} powered off, but its heartbeats keep coming: the device or its plug mapping is wrong; not taken as a death`,
    rule: 'power.mismatch',
    evidence: ctx.evidence(id),
  })
  ctx.alert(
    decision,
    'critical',
    `node:${id}`,
    `${p.device} reads ${id} off while ${id} is heard: check the device and the plug mapping before it is needed to fence ${id}`,
  )
}

/** Consul-style hysteresis: N bad evaluations before critical, M good ones before passing again. */
function updateHealth(n: NodeState, failuresBeforeCritical: number, successesBeforePassing: number): void {
  const good = n.condition === 'healthy'
  n.health.good = good ? n.health.good + 1 : 0
  n.health.bad = good ? 0 : n.health.bad + 1
  if (!n.health.critical && n.health.bad >= failuresBeforeCritical) n.health.critical = true
  if (n.health.critical && n.health.good >= successesBeforePassing) n.health.critical = false
  const score = n.degraded && n.condition === 'healthy' ? DEGRADED_SCORE : SCORES[n.condition]
  n.health.score = n.health.critical ? Math.min(score, 40) : score
}

/**
 * Fencing: a dead or isolated node (or one a resource could not be stopped on) is powered off
 * through its levels in order, and counts as fenced only when every device of a level read it back
 * off and no heartbeat arrived afterwards. Nothing of the node's is started elsewhere before that.
 */
export function fenceNodes(ctx: StepContext): void {
  const states = ctx.nodeStates()
  for (let i = 0; i < states.length; i++) {
    const spec = ctx.nodeSpecs[i] as NodeSpec
    const n = states[i] as NodeState
    const f = n.fence
    const graceOver =
      n.condition === 'isolated' &&
      ctx.now - (n.silentSince ?? ctx.now) >= ctx.spec.detection.isolationGraceMs
    const needs = (n.condition === 'dead' || graceOver || f.forced !== null) && !ctx.inMaintenance(spec.id)

    if (n.condition === 'healthy' && f.forced === null && f.phase !== 'running' && f.phase !== 'verifying') {
      if (f.phase === 'confirmed') {
        ctx.record({
          kind: 'fence',
          node: spec.id,
          summary: 'back after being fenced: rejoins as healthy',
          rule: 'fence.rejoin',
          correlationId: f.correlationId,
        })
      }
      if (f.phase !== 'idle') resetFence(n)
      continue
    }
    if (f.phase === 'verifying') {
      verify(ctx, spec.id)
      continue
    }
    if (f.phase === 'running' && f.retryAt != null) {
      if (ctx.now >= f.retryAt) startLevel(ctx, spec.id, f.level, null, (f.attempt ?? 0) + 1)
      continue
    }
    if (f.phase === 'running') {
      // The device's answer may be lost (a hub restart): its power status read back off counts.
      if (ctx.provenOff(spec.id) && f.startedAt !== null && n.power.at >= f.startedAt) {
        f.phase = 'confirmed'
        f.actionId = null
        f.reason = `power read back off by ${n.power.device ?? 'a fence device'}`
        ctx.record({
          kind: 'fence-result',
          node: spec.id,
          summary: `fence confirmed: ${f.reason}`,
          rule: 'fence.status-read-back',
          correlationId: f.correlationId,
        })
        continue
      }
      const level = spec.fencing[f.level]
      if (level && f.startedAt !== null && ctx.now - f.startedAt >= level.timeoutMs) {
        retryOrFail(ctx, spec.id, `no result within ${level.timeoutMs} ms`, true)
      }
      continue
    }
    if (!needs || f.phase === 'confirmed' || f.phase === 'failed') {
      if (!needs && (f.phase === 'delayed' || f.phase === 'held')) resetFence(n)
      continue
    }
    // Proven off already (a device's periodic status read says off, and the hub hears nothing).
    if (ctx.provenOff(spec.id)) {
      f.phase = 'confirmed'
      f.reason = n.power.polled
        ? `${n.power.device ?? 'a fence device'} reads it powered off and every channel is silent`
        : `power read back off by ${n.power.device ?? 'a fence device'}`
      if (f.correlationId === null) {
        const id = ctx.record({
          kind: 'fence-result',
          node: spec.id,
          summary: `fenced: ${f.reason}`,
          rule: 'fence.proven-off',
          evidence: ctx.evidence(spec.id),
          correlationId: n.incident ?? null,
        })
        f.correlationId = n.incident ?? id
      }
      continue
    }
    if (spec.fencing.length === 0) {
      f.phase = 'failed'
      f.reason = 'no fence devices configured'
      const id = ctx.record({
        kind: 'refuse',
        node: spec.id,
        summary: `cannot be fenced (no fence devices): its resources will not be started elsewhere until an operator acknowledges it is off`,
        rule: 'fence.no-devices',
        evidence: ctx.evidence(spec.id),
      })
      f.correlationId = id
      ctx.alert(id, 'critical', `node:${spec.id}`, `${spec.id} is ${n.condition} and cannot be fenced`)
      continue
    }
    const sinceNeeded = ctx.now - n.conditionSince
    if (spec.fenceDelayMs > 0 && f.forced === null && sinceNeeded < spec.fenceDelayMs) {
      if (f.phase !== 'delayed') {
        f.phase = 'delayed'
        ctx.record({
          kind: 'fence',
          node: spec.id,
          summary: `fence delayed ${spec.fenceDelayMs} ms (fenceDelayMs)`,
          rule: 'fence.delay',
        })
      }
      continue
    }
    const g = ctx.state.governor
    g.fences = g.fences.filter((t) => ctx.now - t < ctx.spec.governor.windowMs)
    // The governor guards against the engine's own storms; an operator's fence is a person's
    // decision (stonith_admin is not throttled either), and the way out of a held one.
    const byOperator = f.forced?.endsWith('(operator)') === true
    if (g.fences.length >= ctx.spec.governor.maxFences && !byOperator) {
      if (f.phase !== 'held') {
        f.phase = 'held'
        const id = ctx.record({
          kind: 'refuse',
          node: spec.id,
          summary: `fence held: ${g.fences.length} fences in the last ${ctx.spec.governor.windowMs / 1000} s reached the governor's limit (${ctx.spec.governor.maxFences})`,
          rule: 'governor.max-fences',
          evidence: ctx.evidence(spec.id),
        })
        ctx.alert(
          id,
          'critical',
          `node:${spec.id}`,
          `fence of ${spec.id} held by the governor (fence storm?)`,
        )
      }
      continue
    }
    g.fences.push(ctx.now)
    const decision = ctx.record({
      kind: 'fence',
      node: spec.id,
      summary: `fencing: ${f.forced ?? `node is ${n.condition}`}`,
      rule: f.forced
        ? f.forced.endsWith('(operator)')
          ? 'fence.operator'
          : f.forced.startsWith('final action of ')
            ? 'fence.final-action'
            : 'fence.stop-failed'
        : `fence.${n.condition}`,
      classification: n.condition,
      evidence: ctx.evidence(spec.id),
      correlationId: n.incident ?? null,
    })
    f.correlationId = n.incident ?? decision
    startLevel(ctx, spec.id, 0, decision)
  }
}

/** Starts a fence level: `decision` chose it, or (null) a later level records its own decision. */
function startLevel(
  ctx: StepContext,
  nodeId: string,
  level: number,
  decision: string | null,
  attempt = 0,
): void {
  const spec = ctx.nodeSpec(nodeId)
  const lv = spec?.fencing[level]
  if (!spec || !lv) return
  const f = ctx.node(nodeId).fence
  f.phase = 'running'
  f.level = level
  f.startedAt = ctx.now
  f.awaiting = [...lv.devices]
  f.offAt = null
  f.attempt = attempt
  f.retryAt = null
  const by =
    decision ??
    ctx.record({
      kind: 'fence',
      node: nodeId,
      summary:
        attempt > 0
          ? `retrying fence level ${level + 1}: ${lv.devices.join(' + ')} (attempt ${attempt + 1} of ${lv.retries + 1})`
          : `trying fence level ${level + 1}: ${lv.devices.join(' + ')}`,
      rule: attempt > 0 ? 'fence.retry' : 'fence.next-level',
      correlationId: f.correlationId,
    })
  f.actionId = ctx.act({
    type: 'fence',
    decision: by,
    node: nodeId,
    level,
    devices: lv.devices,
    timeoutMs: lv.timeoutMs,
  })
}

/**
 * The current level's attempt failed. A device that did not answer, or answered the node still on,
 * may be busy or slow (a BMC rebooting, a PDU's management card under load): the level is tried
 * again after a backoff, up to its `retries`. Anything else (credentials refused) goes to the next
 * level at once.
 */
function retryOrFail(ctx: StepContext, nodeId: string, why: string, transient: boolean): void {
  const lv = ctx.nodeSpec(nodeId)?.fencing[ctx.node(nodeId).fence.level]
  const f = ctx.node(nodeId).fence
  const attempt = f.attempt ?? 0
  if (!lv || !transient || attempt >= lv.retries) {
    levelFailed(ctx, nodeId, why)
    return
  }
  const waitMs = lv.retryBackoffMs * 2 ** attempt
  f.actionId = null // a late answer of this attempt is ignored
  f.awaiting = []
  f.retryAt = ctx.now + waitMs
  ctx.record({
    kind: 'fence-result',
    node: nodeId,
    summary: `fence level ${f.level + 1} attempt ${attempt + 1} failed: ${why}; retrying in ${waitMs / 1000} s`,
    rule: 'fence.attempt-failed',
    correlationId: f.correlationId,
  })
}

function levelFailed(ctx: StepContext, nodeId: string, why: string): void {
  const spec = ctx.nodeSpec(nodeId)
  const f = ctx.node(nodeId).fence
  if (!spec) return
  ctx.record({
    kind: 'fence-result',
    node: nodeId,
    summary: `fence level ${f.level + 1} failed: ${why}`,
    rule: 'fence.level-failed',
    correlationId: f.correlationId,
  })
  if (f.level + 1 < spec.fencing.length) {
    startLevel(ctx, nodeId, f.level + 1, null)
    return
  }
  f.phase = 'failed'
  f.actionId = null
  f.reason = why
  const id = ctx.record({
    kind: 'refuse',
    node: nodeId,
    summary: `fence failed at every level: its resources will not be started elsewhere`,
    rule: 'fence.all-levels-failed',
    evidence: ctx.evidence(nodeId),
    correlationId: f.correlationId,
  })
  ctx.alert(
    id,
    'critical',
    `node:${nodeId}`,
    `fencing ${nodeId} failed at every level; no failover until it is fenced or acknowledged off`,
  )
}

/** A device's answer for the current fence action. */
export function applyFenceResult(
  ctx: StepContext,
  nodeId: string,
  actionId: string,
  device: string,
  outcome: FenceOutcome,
): void {
  const n = ctx.state.nodes[nodeId]
  if (!n || n.fence.actionId !== actionId || n.fence.phase !== 'running') return // late answer for an older attempt
  const f = n.fence
  if (outcome !== 'off') {
    retryOrFail(ctx, nodeId, `${device}: ${outcome}`, outcome !== 'auth-failed')
    return
  }
  f.awaiting = f.awaiting.filter((d) => d !== device)
  if (f.awaiting.length > 0) return
  f.phase = 'verifying'
  f.offAt = ctx.now
  verify(ctx, nodeId)
}

/** Off by every device; confirmed unless the node is heard after that (a lying or wrong device). */
function verify(ctx: StepContext, nodeId: string): void {
  const n = ctx.node(nodeId)
  const f = n.fence
  if (f.offAt === null) return
  if (n.hub.lastAt !== null && n.hub.lastAt > f.offAt && n.heard) {
    levelFailed(ctx, nodeId, 'device reported off, but the node is still sending heartbeats')
    return
  }
  if (ctx.hubAlive(nodeId) && ctx.now - f.offAt < ctx.spec.detection.fenceVerifyMs) return
  f.phase = 'confirmed'
  f.actionId = null
  f.forced = null
  n.power = {
    state: 'off',
    at: ctx.now,
    device: ctx.nodeSpec(nodeId)?.fencing[f.level]?.devices.join('+') ?? null,
  }
  f.reason = `off, read back by ${n.power.device}`
  ctx.record({
    kind: 'fence-result',
    node: nodeId,
    summary: `fence confirmed: ${f.reason}, no heartbeat since`,
    rule: 'fence.confirmed',
    correlationId: f.correlationId,
  })
}

/** A fence state with nothing in progress. */
export function idleFence(): FenceState {
  return {
    phase: 'idle',
    level: 0,
    actionId: null,
    startedAt: null,
    awaiting: [],
    offAt: null,
    reason: null,
    correlationId: null,
    forced: null,
    attempt: 0,
    retryAt: null,
  }
}

export function resetFence(n: NodeState): void {
  n.fence = idleFence()
  if (n.power.state === 'off') n.power = { state: 'unknown', at: n.power.at, device: null }
}
