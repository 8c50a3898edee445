import { actionOutcome, agentRestarted, applyResourceState, heardAgain } from './action-outcomes.js'
import { phiParams, StepContext } from './context.js'
import { applyGuestHeartbeat, applyGuestSample } from './guests.js'
import { agentStopped, applyFenceResult, evaluateNodes, fenceNodes, idleFence, resetFence } from './nodes.js'
import { emptyPhi, recordArrival } from './phi.js'
import { mayRunOn } from './place.js'
import { manageResources } from './resources.js'
import type { ClusterSpec } from './spec.js'
import type {
  DeclaredTimeouts,
  EngineEnv,
  EngineState,
  Input,
  NodeState,
  ObservedState,
  OperatorOp,
  ResourceActionType,
  ResourceState,
  StepResult,
} from './types.js'

function freshNode(now: number): NodeState {
  // The hub detector is seeded as if heard at start: a node never heard becomes suspect, then
  // dead, within the normal detection time, instead of staying "unknown" forever.
  return {
    hub: { lastAt: now, intervals: [] },
    heard: false,
    disk: emptyPhi(),
    inventory: null,
    connectivity: null,
    hears: null,
    power: { state: 'unknown', at: now, device: null },
    condition: 'unknown',
    conditionSince: now,
    silentSince: null,
    health: { score: 50, critical: false, bad: 0, good: 0 },
    fence: idleFence(),
    maintenance: null,
    evacuating: false,
    degraded: null,
    incident: null,
  }
}

function freshResource(now: number): ResourceState {
  return {
    node: null,
    phase: 'stopped',
    phaseSince: now,
    observed: {},
    failures: [],
    step: 0,
    handledFailure: null,
    pending: null,
    avoid: null,
    move: null,
    relocating: null,
    maintenance: null,
    guest: null,
    correlationId: null,
    // The optional fields too, so that every resource's state has one shape: the step visits
    // every resource's state (manageResources), and varied shapes made that loop megamorphic.
    failbackDue: null,
    bootWaitFrom: null,
    guestSample: null,
    awaitingNodes: false,
    stoppedByOperator: false,
    wantSuspended: null,
  }
}

export function initialState(spec: ClusterSpec, now: number): EngineState {
  const state: EngineState = {
    schema: 1,
    nodes: {},
    resources: {},
    governor: { fences: [], restarts: [] },
    maintenance: null,
  }
  reconcile(spec, state, now)
  return state
}

const reconciled = new WeakMap<EngineState, ClusterSpec>()

/**
 * What resources depend on at node level, per node (in `nodeSpecs` order): a change revisits that
 * node's resources. Kept as the values themselves, not a string per node: asked twice per step.
 */
interface NodeSignatures {
  condition: NodeState['condition'][]
  fence: NodeState['fence']['phase'][]
  flags: Uint8Array
}

/** Two signature buffers per state, reused step after step (before and after). */
const signatureBuffers = new WeakMap<EngineState, [NodeSignatures, NodeSignatures]>()

function emptySignatures(length: number): NodeSignatures {
  return { condition: new Array(length), fence: new Array(length), flags: new Uint8Array(length) }
}

function nodeSignatures(ctx: StepContext, which: 0 | 1): NodeSignatures {
  const states = ctx.nodeStates()
  let buffers = signatureBuffers.get(ctx.state)
  if (!buffers || buffers[0].flags.length !== states.length) {
    buffers = [emptySignatures(states.length), emptySignatures(states.length)]
    signatureBuffers.set(ctx.state, buffers)
  }
  const sig = buffers[which]
  for (let i = 0; i < states.length; i++) {
    const n = states[i] as NodeState
    sig.condition[i] = n.condition
    sig.fence[i] = n.fence.phase
    sig.flags[i] = (n.maintenance ? 1 : 0) | (n.evacuating ? 2 : 0) | (n.degraded ? 4 : 0)
  }
  return sig
}

function markChangedNodes(ctx: StepContext, before: NodeSignatures, after: NodeSignatures): void {
  for (let i = 0; i < after.flags.length; i++)
    if (
      before.condition[i] !== after.condition[i] ||
      before.fence[i] !== after.fence[i] ||
      before.flags[i] !== after.flags[i]
    )
      ctx.dirtyNodes.add((ctx.nodeSpecs[i] as { id: string }).id)
}

/**
 * Adds state for nodes and resources new in the spec (a config reload); keeps the rest. Returns
 * true when the spec is new to this state (so every resource is revisited).
 */
function reconcile(spec: ClusterSpec, state: EngineState, now: number): boolean {
  if (reconciled.get(state) === spec) return false
  reconciled.set(state, spec)
  for (const n of spec.nodes) state.nodes[n.id] ??= freshNode(now)
  for (const r of spec.resources) state.resources[r.id] ??= freshResource(now)
  return true
}

/**
 * The engine: a deterministic function of the cluster spec, the previous state, the inputs since
 * the last step and the env (time, ids): no I/O, no clock, no randomness of its own. Call it
 * whenever inputs arrive and periodically (every 100 ms in the hub) so that silence is noticed.
 *
 * Ownership: `step` takes the state it is given and returns it updated (copying 3 MB of state for
 * 1,000 hosts on every step would cost more than the step itself). Keep a structuredClone if the
 * previous state is still needed.
 */
export function step(
  spec: ClusterSpec,
  previous: EngineState,
  inputs: readonly Input[],
  env: EngineEnv,
): StepResult {
  const ctx = new StepContext(spec, previous, env)
  if (reconcile(spec, ctx.state, ctx.now)) ctx.allDirty = true
  for (const input of inputs) apply(ctx, input)
  expireMaintenance(ctx)
  ctx.detectorsSettled()
  const before = nodeSignatures(ctx, 0)
  evaluateNodes(ctx)
  for (const node of ctx.heardAgain) heardAgain(ctx, node)
  fenceNodes(ctx)
  markChangedNodes(ctx, before, nodeSignatures(ctx, 1))
  ctx.nodeFactsChanged()
  manageResources(ctx)
  finishEvacuations(ctx)
  return { state: ctx.state, actions: ctx.actions, records: ctx.records }
}

function apply(ctx: StepContext, input: Input): void {
  switch (input.type) {
    case 'heartbeat': {
      const n = ctx.state.nodes[input.node]
      if (!n) return
      const params = phiParams(ctx.spec.detection.hub)
      // The interval its agent declares seeds the detector, and seeds it again when it changes: a
      // window seeded for 250 ms never learns an agent beating once a second (each beat would come
      // after what looks like a pause, and is left out of the window), which is then suspected,
      // and fenced, between any two beats.
      const declared = input.intervalMs
      const reseed = declared !== undefined && declared !== (n.hubIntervalMs ?? params.firstIntervalMs)
      if (declared !== undefined) n.hubIntervalMs = declared
      n.hub =
        n.heard && !reseed
          ? recordArrival(n.hub, ctx.now, params, ctx.spec.detection.hub.threshold)
          : recordArrival({ lastAt: null, intervals: [] }, ctx.now, {
              ...params,
              firstIntervalMs: n.hubIntervalMs ?? params.firstIntervalMs,
            })
      n.heard = true
      if (n.agentStopped?.newRun) n.agentStopped = null
      return
    }
    case 'disk-heartbeat': {
      const n = ctx.state.nodes[input.node]
      if (n)
        n.disk = recordArrival(
          n.disk,
          ctx.now,
          phiParams(ctx.spec.detection.disk),
          ctx.spec.detection.disk.threshold,
        )
      return
    }
    case 'peer-view': {
      const n = ctx.state.nodes[input.node]
      if (n) n.hears = { at: ctx.now, peers: [...input.hears].sort() }
      return
    }
    case 'guest-heartbeat':
      applyGuestHeartbeat(ctx, input.resource)
      return
    case 'guest-sample':
      applyGuestSample(ctx, input)
      return
    case 'resource-state':
      if (ctx.state.nodes[input.node] || ctx.spec.resources.some((r) => r.id === input.node)) {
        applyResourceState(ctx, input.node, input.resource, input.state, input.reason)
      }
      return
    case 'action-timeouts':
      declareTimeouts(ctx, input)
      return
    case 'inventory': {
      const n = ctx.state.nodes[input.node]
      if (!n) {
        if (ctx.spec.resources.some((r) => r.id === input.node && r.kind === 'vm')) guestInventory(ctx, input)
        return
      }
      // Every second from every node, and nearly always the same list: the order of these updates
      // does not matter, and the list is kept again only when it changed.
      const previous = n.inventory
      let count = 0
      let same = previous !== null
      for (const id in input.resources) {
        count++
        applyResourceState(ctx, input.node, id, input.resources[id] as ObservedState, input.reasons?.[id])
        if (same && !sortedIncludes(previous as string[], id)) same = false
      }
      for (const id of previous ?? [])
        if (!(id in input.resources)) applyResourceState(ctx, input.node, id, 'stopped')
      // A complete inventory answers for what it was asked about, listed or not.
      if (n.askedFor)
        for (const id in n.askedFor)
          if (!(id in input.resources)) applyResourceState(ctx, input.node, id, 'stopped')
      if (!same || count !== previous?.length) n.inventory = Object.keys(input.resources).sort()
      return
    }
    case 'link-state': {
      const n = ctx.state.nodes[input.node]
      if (!n) return
      if (input.degraded && !n.degraded) {
        n.degraded = { since: ctx.now, detail: input.detail }
        ctx.record({
          kind: 'node-condition',
          node: input.node,
          summary: `links degraded: ${input.detail} (still healthy; placed on last)`,
          rule: 'classify.nic-degraded',
          evidence: ctx.evidence(input.node),
        })
      } else if (!input.degraded && n.degraded) {
        n.degraded = null
        ctx.record({
          kind: 'node-condition',
          node: input.node,
          summary: `links restored: ${input.detail}`,
          rule: 'classify.nic-restored',
        })
      }
      return
    }
    case 'connectivity': {
      const n = ctx.state.nodes[input.node]
      if (!n) return
      // A change of what the node reaches may make another node the better home of what runs there.
      const changed = n.connectivity !== null && n.connectivity.reachable !== input.reachable
      if (changed) {
        ctx.dirtyNodes.add(input.node)
        ctx.nodeBecameAvailable = true
      }
      const since = changed || !n.connectivity ? ctx.now : (n.connectivity.since ?? n.connectivity.at)
      n.connectivity = { reachable: input.reachable, total: input.total, at: ctx.now, since }
      return
    }
    case 'power-state': {
      const n = ctx.state.nodes[input.node]
      if (!n) return
      n.power = { state: input.state, at: ctx.now, device: input.device }
      if (input.polled) {
        n.power.polled = true
        n.power.beating = n.heard && ctx.hubAlive(input.node)
      }
      return
    }
    case 'action-result':
      actionOutcome(ctx, input.actionId, input.ok, input.error, undefined, input.node)
      return
    case 'fence-result':
      applyFenceResult(ctx, input.node, input.actionId, input.device, input.outcome)
      return
    case 'operator':
      operator(ctx, input.op)
      ctx.allDirty = true
      ctx.nodeBecameAvailable = true // maintenance off, or a move: placements may change
      return
    case 'agent-stopped':
      agentStopped(ctx, input.node, input.hostShutdown)
      return
    case 'agent-restarted': {
      // Its heartbeat, not this first word of the new run, ends a hold: the node is not judged
      // by a silence in between.
      const stopped = ctx.state.nodes[input.node]?.agentStopped
      if (stopped) stopped.newRun = true
      agentRestarted(ctx, input.node)
      return
    }
    case 'hub-restarted':
      hubRestarted(ctx)
      ctx.allDirty = true
      return
    case 'hub-takeover':
      hubTookOver(ctx, input.heardAgoMs, input.reason)
      ctx.allDirty = true
      return
    case 'hub-paused':
      hubPaused(ctx, input.forMs)
      ctx.allDirty = true
      return
  }
}

/** Whether a sorted list of ids holds `id` (a binary search: no set built per question). */
function sortedIncludes(sorted: readonly string[], id: string): boolean {
  let lo = 0
  let hi = sorted.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const at = sorted[mid] as string
    if (at === id) return true
    if (at < id) lo = mid + 1
    else hi = mid - 1
  }
  return false
}

/** Every action the engine takes on a resource (the hub's metrics list them, fence and alert aside). */
export const RESOURCE_ACTIONS: readonly ResourceActionType[] = [
  'start',
  'stop',
  'restart',
  'reset-vm',
  'reboot-vm',
  'migrate',
  'suspend',
  'resume',
]

/**
 * What a node's agent declares replaces what it declared before (its resources or drivers may have
 * changed with a restart); only resources of the cluster and known actions are kept. A guest's
 * agent declares under its vm's id. A pending action keeps the deadline it was issued with.
 */
function declareTimeouts(ctx: StepContext, input: Extract<Input, { type: 'action-timeouts' }>): void {
  const known = ctx.state.nodes[input.node] !== undefined || ctx.state.resources[input.node] !== undefined
  if (!known) return
  const declared: Record<string, DeclaredTimeouts> = {}
  for (const resource of Object.keys(input.resources).sort()) {
    if (!ctx.state.resources[resource]) continue
    const timeouts: DeclaredTimeouts = {}
    for (const action of RESOURCE_ACTIONS) {
      const ms = input.resources[resource]?.[action]
      if (typeof ms === 'number' && Number.isFinite(ms) && ms >= 0) timeouts[action] = ms
    }
    declared[resource] = timeouts
  }
  ctx.state.actionTimeouts ??= {}
  ctx.state.actionTimeouts[input.node] = declared
}

/**
 * A guest agent's complete list (its node is its vm's id): what it lists is as reported; a guest
 * application of that vm it reported before and no longer lists is stopped, as on a host.
 */
function guestInventory(ctx: StepContext, input: Extract<Input, { type: 'inventory' }>): void {
  const listed = Object.keys(input.resources).sort()
  for (const id of listed)
    applyResourceState(ctx, input.node, id, input.resources[id] as ObservedState, input.reasons?.[id])
  for (const spec of ctx.spec.resources) {
    if (spec.kind !== 'guest-app' || spec.vm !== input.node || spec.id in input.resources) continue
    const seen = ctx.state.resources[spec.id]?.observed[input.node]
    if (seen && seen.state !== 'stopped') applyResourceState(ctx, input.node, spec.id, 'stopped')
  }
}

/**
 * The hub was down: it heard nothing meanwhile, which says nothing about the nodes. The detectors
 * of nodes it believed alive are re-armed as if heard now (keeping their learned intervals), so they
 * get a fresh grace period instead of all looking dead at once.
 */
function hubRestarted(ctx: StepContext): void {
  rearmDetectors(ctx, null)
  ctx.record({
    kind: 'operator',
    summary: 'hub restarted: state resumed, failure detectors re-armed',
    rule: 'hub.restarted',
  })
}

/**
 * The hub itself stood still (frozen, or its event loop blocked): every node went unheard for that
 * long at once, which is the hub's silence, not theirs. As after a restart, the detectors re-arm;
 * a node that really died meanwhile is found after the grace, from the channels that resume.
 */
function hubPaused(ctx: StepContext, forMs: number): void {
  rearmDetectors(ctx, null)
  ctx.record({
    kind: 'operator',
    summary: `hub stood still for ${(forMs / 1000).toFixed(1)} s (frozen or blocked): failure detectors re-armed, the silence was its own`,
    rule: 'hub.paused',
  })
}

/**
 * A standby of the hub group took over: it resumed the state the leader committed and, having
 * listened all along, knows how long ago it last heard each node. Those nodes are judged on that
 * silence at once (a host that died with the leader is not given a startup grace); a node it
 * never heard waits for its agent with the grace, as after a restart.
 */
function hubTookOver(ctx: StepContext, heardAgoMs: Record<string, number>, reason?: string): void {
  rearmDetectors(ctx, heardAgoMs)
  const nodes = Object.keys(ctx.state.nodes)
  const unheard = nodes.filter((id) => heardAgoMs[id] === undefined)
  ctx.record({
    kind: 'operator',
    summary: `${reason ?? 'hub group takeover'}: state resumed; nodes judged on what this hub heard ${reason ? 'while it did not act' : 'as a standby'}${unheard.length > 0 ? `, except ${unheard.join(', ')} (never heard: startup grace)` : ''}`,
    rule: 'hub.takeover',
  })
}

/** A node heard this long after its fence started was alive then, not a late heartbeat. */
const REJOIN_MARGIN_MS = 1000

function rearmDetectors(ctx: StepContext, heardAgoMs: Record<string, number> | null): void {
  for (const [id, n] of Object.entries(ctx.state.nodes)) {
    const heardAt = heardAgoMs?.[id] === undefined ? null : ctx.now - (heardAgoMs[id] as number)
    // Fenced in the state resumed (done, or still in flight there), but heard by the standby after
    // its fence: it was powered on and rejoined after the last commit (one every 2 s), or was
    // never silent to the standby. Its fence is over: resumed, a fence in flight would read the
    // power on and switch a healthy node off (found by the chaos run). From here on it is judged
    // on what the standby heard, so a crash after its return is fenced like any other. The margin
    // leaves out a heartbeat sent before the node died that reached the standby late.
    const f = n.fence
    const fencedAt =
      f.phase === 'confirmed'
        ? (f.offAt ?? f.startedAt)
        : f.phase === 'running' || f.phase === 'verifying'
          ? f.startedAt === null
            ? null
            : f.startedAt + REJOIN_MARGIN_MS
          : null
    if (fencedAt !== null && heardAt !== null && Number.isFinite(heardAt) && heardAt > fencedAt) {
      ctx.record({
        kind: 'fence',
        node: id,
        summary: `heard by this hub ${((ctx.now - heardAt) / 1000).toFixed(1)} s ago, after its fence ${f.phase === 'confirmed' ? 'was confirmed' : 'began'}: it is back (its fence is over), judged on what this hub heard from now`,
        rule: 'fence.rejoin',
        correlationId: n.fence.correlationId,
      })
      resetFence(n)
      n.condition = 'healthy'
      n.conditionSince = heardAt
    }
    // Nodes with no fence decided get a fresh grace period; dead ones (a fence decided, running or
    // done) stay as they were. Suspect and isolated nodes are re-armed too: the persisted state can
    // be up to 2 s old (it is saved periodically and before actions, and a reclassification is not
    // an action), so the node may have been heard again meanwhile; the silence the hub did not
    // witness must not fence it (test/scenarios/hub-restart-stale-state-no-false-fence).
    const silentUnfenced =
      (n.condition === 'suspect' || n.condition === 'isolated') && n.fence.phase === 'idle'
    if (
      n.condition !== 'healthy' &&
      n.condition !== 'unknown' &&
      n.condition !== 'partitioned' &&
      n.condition !== 'frozen' &&
      !silentUnfenced
    )
      continue
    const ago = heardAgoMs?.[id]
    if (ago !== undefined && Number.isFinite(ago) && ago >= 0) {
      // Witnessed: the silence the standby heard is the node's own, and counts from when it began.
      n.hub = { ...n.hub, lastAt: ctx.now - ago }
      n.heard = true
    } else {
      n.hub = { ...n.hub, lastAt: ctx.now }
      // Agents reconnect to a restarted hub with backoff (up to 10 s by default): until one is heard
      // again it is `unknown` with the startup grace, never suspected for the hub's own absence.
      if (n.condition === 'healthy' || n.condition === 'unknown' || silentUnfenced) {
        n.heard = false
        n.condition = 'unknown'
        n.conditionSince = ctx.now
      }
    }
    if (n.disk.lastAt !== null) n.disk = { ...n.disk, lastAt: ctx.now }
    n.hears = null
    n.silentSince = null
    n.graceWitness = null
  }
  for (const r of Object.values(ctx.state.resources)) {
    if (r.guest) r.guest = { ...r.guest, lastAt: ctx.now }
    if (r.bootWaitFrom != null) r.bootWaitFrom = ctx.now // the hub's silence is not the guest's
  }
}

function operator(ctx: StepContext, op: OperatorOp): void {
  switch (op.op) {
    case 'move': {
      const r = ctx.state.resources[op.resource]
      if (!r || !ctx.state.nodes[op.node]) return
      r.move = { node: op.node, until: ctx.now + op.forMs }
      ctx.record({
        kind: 'operator',
        resource: op.resource,
        node: op.node,
        summary: `operator: ${op.live ? 'live migration' : 'move'} to ${op.node} for ${Math.round(op.forMs / 1000)} s`,
        rule: 'operator.move',
      })
      return
    }
    case 'maintenance': {
      const m = op.on ? { until: op.forMs === undefined ? null : ctx.now + op.forMs } : null
      const what = op.scope === 'cluster' ? 'cluster' : `${op.scope} ${op.id}`
      if (op.scope === 'cluster') ctx.state.maintenance = m
      else if (op.scope === 'node' && op.id && ctx.state.nodes[op.id])
        (ctx.state.nodes[op.id] as NodeState).maintenance = m
      else if (op.scope === 'resource' && op.id && ctx.state.resources[op.id])
        (ctx.state.resources[op.id] as ResourceState).maintenance = m
      else return
      const until = op.forMs === undefined ? '' : ` for ${Math.round(op.forMs / 1000)} s (re-arms by itself)`
      ctx.record({
        kind: 'operator',
        node: op.scope === 'node' ? op.id : undefined,
        resource: op.scope === 'resource' ? op.id : undefined,
        summary: `operator: maintenance ${op.on ? 'on' : 'off'} for ${what}${op.on ? until : ''}`,
        rule: 'operator.maintenance',
      })
      return
    }
    case 'cleanup': {
      const r = ctx.state.resources[op.resource]
      if (!r) return
      r.failures = []
      r.step = 0
      r.avoid = null
      r.handledFailure = null // the current failure, if any, is acted on afresh
      if (r.phase === 'blocked') {
        r.phase = r.node && r.observed[r.node]?.state === 'running' ? 'running' : 'recovering'
        // Placed afresh when it surely does not run where it was (reported stopped, absent from a
        // complete inventory, or its node fenced); else recovered there.
        const spec = ctx.resourceSpecs.find((s) => s.id === op.resource)
        if (r.phase === 'recovering' && r.node && spec && mayRunOn(ctx, spec, r.node) === null) r.node = null
      }
      ctx.record({
        kind: 'operator',
        resource: op.resource,
        summary: 'operator: cleanup (fail counts cleared, unblocked)',
        rule: 'operator.cleanup',
      })
      return
    }
    case 'target': {
      const r = ctx.state.resources[op.resource]
      if (!r) return
      const stopped = op.role === 'stopped'
      if ((r.stoppedByOperator ?? false) === stopped) return
      r.stoppedByOperator = stopped
      if (!stopped && r.phase === 'stopped') r.node = null
      ctx.record({
        kind: 'operator',
        resource: op.resource,
        summary: stopped
          ? 'operator: stop (kept stopped, what depends on it first, until started again)'
          : 'operator: start (placed as usual)',
        rule: stopped ? 'operator.stop' : 'operator.start',
      })
      return
    }
    case 'suspend': {
      const r = ctx.state.resources[op.resource]
      if (!r || ctx.resourceSpecs.find((s) => s.id === op.resource)?.kind !== 'vm') return
      r.wantSuspended = op.on
      ctx.record({
        kind: 'operator',
        resource: op.resource,
        summary: op.on
          ? 'operator: suspend (paused in memory on its node, intended, never recovered, until resumed)'
          : 'operator: resume',
        rule: op.on ? 'operator.suspend' : 'operator.resume',
      })
      return
    }
    case 'reload':
      ctx.allDirty = true
      ctx.record({
        kind: 'operator',
        summary: `operator: cluster file reloaded: ${op.changes.length === 0 ? 'nothing changed' : op.changes.join('; ')}`,
        rule: 'operator.reload',
      })
      return
    case 'evacuate': {
      const n = ctx.state.nodes[op.node]
      if (!n || n.evacuating) return
      n.evacuating = true
      ctx.record({
        kind: 'operator',
        node: op.node,
        summary:
          'operator: evacuate for maintenance (live-migrating what may be migrated, relocating the rest)',
        rule: 'operator.evacuate',
      })
      return
    }
    case 'fence': {
      const n = ctx.state.nodes[op.node]
      if (!n || n.fence.phase === 'running' || n.fence.phase === 'verifying') return
      n.fence.forced = `asked by ${op.by} (operator)`
      ctx.record({
        kind: 'operator',
        node: op.node,
        summary: `operator: ${op.by} asks to fence it`,
        rule: 'operator.fence',
      })
      return
    }
    case 'ack-fence': {
      const n = ctx.state.nodes[op.node]
      if (!n || n.condition === 'healthy') return
      n.fence.phase = 'confirmed'
      n.fence.actionId = null
      n.fence.reason = `acknowledged off by ${op.by}`
      n.power = { state: 'off', at: ctx.now, device: `operator ${op.by}` }
      ctx.record({
        kind: 'fence-result',
        node: op.node,
        summary: `fence confirmed: ${op.by} acknowledged the node is off (meatware)`,
        rule: 'fence.operator-ack',
        correlationId: n.fence.correlationId,
      })
      return
    }
  }
}

function expireMaintenance(ctx: StepContext): void {
  const expired = (m: { until: number | null } | null) => m !== null && m.until !== null && m.until <= ctx.now
  if (expired(ctx.state.maintenance)) {
    ctx.allDirty = true
    ctx.state.maintenance = null
    ctx.record({
      kind: 'operator',
      summary: 'cluster maintenance expired: re-armed',
      rule: 'maintenance.expired',
    })
  }
  const states = ctx.nodeStates()
  for (let i = 0; i < states.length; i++) {
    const n = states[i] as NodeState
    if (!n.maintenance || !expired(n.maintenance)) continue
    const id = (ctx.nodeSpecs[i] as { id: string }).id
    ctx.dirtyNodes.add(id)
    n.maintenance = null
    ctx.record({
      kind: 'operator',
      node: id,
      summary: 'node maintenance expired: re-armed',
      rule: 'maintenance.expired',
    })
  }
  // A resource's own maintenance expires when it is visited: a resource in maintenance is never
  // steady, so it is visited every step (resources.ts).
}

/** An evacuating node enters maintenance once nothing of Vigil's runs or is pending on it. */
function finishEvacuations(ctx: StepContext): void {
  const states = ctx.nodeStates()
  for (let i = 0; i < states.length; i++) {
    const n = states[i] as NodeState
    if (!n.evacuating) continue
    const spec = ctx.nodeSpecs[i] as { id: string }
    const busy = Object.values(ctx.state.resources).some(
      (r) => r.node === spec.id || r.pending?.node === spec.id,
    )
    if (busy) continue
    n.evacuating = false
    n.maintenance = { until: null }
    ctx.record({
      kind: 'operator',
      node: spec.id,
      summary: 'evacuated: now in maintenance (switch it off to bring the node back)',
      rule: 'operator.evacuated',
    })
  }
}
