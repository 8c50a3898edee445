import {
  type Action,
  actionResultInput,
  type ClusterSpec,
  clusterSpecSchema,
  commandFor,
  type DecisionRecord,
  type EngineState,
  type Input,
  initialState,
  type NodeCondition,
  type NodeState,
  resourceHealthScore,
  step,
  type WhatIf,
  whatIfPlan,
} from '@vigil/engine'
import type { Clock, Logger } from '@vigil/kit'
import type { CommandResult } from '@vigil/protocol'
import type { CommandDispatcher, LateResult } from './commands.js'
import { EngineMetrics } from './engine-metrics.js'
import type { Intent } from './group.js'
import { jsonInSlices } from './json-slices.js'
import type { HubMetrics } from './metrics.js'
import type { NodeJudgement } from './nodes.js'
import type { Planner } from './planner.js'
import type { EventRow, HubStore, NewEvent } from './store.js'
import { type DecisionTracer, finish } from './tracing.js'

export interface EngineLoopDeps {
  /** The cluster spec from engine.clusterFile, or null to observe the nodes seen (no actions). */
  spec: ClusterSpec | null
  /** Computes the what-if plan off the event loop; absent: computed inline (tests, tiny clusters). */
  planner?: Planner
  /**
   * Observe mode's nodes, by id. Return the same array while they are unchanged (NodeTable does):
   * the loop then tells "no change" by identity, without comparing thousands of ids every tick.
   */
  knownNodes: () => readonly string[]
  store: HubStore
  commands: CommandDispatcher
  metrics: HubMetrics
  clock: Clock
  log: Logger
  /** The epoch commands and action ids are issued under (a hub group's changes at each takeover). */
  epoch: () => number
  /**
   * In a hub group: the guarded write of the state and of the intents of the actions about to
   * leave, which succeeds only while this hub leads. Without it (a hub alone) the local write-ahead
   * is the only record and the loop is always active.
   */
  group?: {
    /** `stateJson`: the engine state as JSON text (the text just saved locally). */
    commit(stateJson: string, intents: Intent[]): Promise<boolean>
  }
  onRecord: (record: DecisionRecord) => void
  onEvent: (event: EventRow) => void
  /** A node's condition changed (after its `node.condition` event): what the hub shows of it did. */
  onNodeCondition?: (node: string) => void
  /** One trace per incident; its id goes into each decision record. */
  tracer: DecisionTracer
  /** Carries out one fence level; outcomes come back as `fence-result` inputs. */
  fence: (action: Extract<Action, { type: 'fence' }>) => void
  /**
   * Asks for a step as soon as the event loop is free, before the next tick: for the inputs whose
   * answer is waited on (a fence outcome or power read-back, an action's result, an operator's
   * request), which a tick would otherwise delay by half an interval on average.
   */
  stepSoon?: () => void
  /**
   * Above this many nodes plus resources the periodic save is written in slices between steps
   * (SAVE_SLICE_MS each, the event loop free in between), not in one go. Default
   * SLICED_SAVE_ABOVE; a test sets it low to exercise the sliced save on a small cluster.
   */
  slicedSaveAbove?: number
}

/** Inputs that step the engine at once rather than at the next tick (see `stepSoon`). */
const ANSWERED_AT_ONCE: ReadonlySet<Input['type']> = new Set([
  'fence-result',
  'power-state',
  'action-result',
  'operator',
])

/** A resource in the API and on the status page. */
export interface ResourceView {
  id: string
  phase: string
  phaseSince: number
  node: string | null
  health: number
  failures: number
  maintenance: boolean
  /** An operator stopped it (`vigil resource stop`): kept stopped until started. */
  stoppedByOperator: boolean
  pending: { type: string; node: string } | null
  /** Why it is in its phase (the rule and words of the decision that put it there); null if unknown. */
  reason: { rule: string; why: string } | null
  /** What each node's agent last reported about it. */
  observed: Record<string, string>
  correlationId: string | null
}

const PERSIST_EVERY_MS = 2000
/**
 * The periodic save of a large state is built in slices of about this long. At 10,000 nodes the
 * state is about 8 MB of JSON: in one go that held ingest for 60-100 ms every 2 s on a loaded
 * machine, the largest part of the heartbeat latency's tail (issue #21).
 */
const SAVE_SLICE_MS = 4
/** Below this many nodes plus resources a save takes a few ms: written in one go. */
const SLICED_SAVE_ABOVE = 2000

/**
 * What a standby keeps of the inputs it hears, to hand to the engine at a takeover: the newest of
 * each kind of observation per subject (a heartbeat per node, a resource's state per node, ...), and
 * the action results of the leader's commands, which the state it resumes may still wait for.
 */
class StandbyInputs {
  private readonly latest = new Map<string, { input: Input; at: number }>()
  private results: Input[] = []

  keep(i: Input, at: number): void {
    switch (i.type) {
      case 'action-result':
        this.results.push(i)
        if (this.results.length > 1000) this.results = this.results.slice(-1000)
        return
      case 'operator':
      case 'fence-result':
      case 'hub-restarted':
      case 'hub-takeover':
      case 'hub-paused':
        return // an operator's request goes to the leader; fences are the leader's
      default:
        this.latest.set(standbyKey(i), { input: i, at })
    }
  }

  /**
   * What the engine needs at a takeover: for each node, how long ago this standby last heard its
   * heartbeat (the engine judges it on that silence, not on a fresh grace), then the newest of
   * every other observation, and the results the leader's commands got. A disk or guest heartbeat
   * is replayed only if heard within `heardWithinMs` (it re-arms its detector as heard now).
   */
  take(now: number, heardWithinMs: number, reason?: string): Input[] {
    const heardAgoMs: Record<string, number> = {}
    const out: Input[] = []
    for (const { input, at } of this.latest.values()) {
      if (input.type === 'heartbeat') heardAgoMs[input.node] = Math.max(0, now - at)
      else if (input.type === 'agent-restarted') {
        // Only a restart the old leader may not have seen: older ones it handled while it led.
        if (now - at <= AGENT_RESTART_REPLAY_MS) out.push(input)
      } else if (input.type === 'guest-sample') {
        // Replayed as old as it now is: the new leader judges the guest on what the monitor saw.
        out.push({ ...input, ageMs: input.ageMs + Math.max(0, now - at) })
      } else if (input.type !== 'disk-heartbeat' && input.type !== 'guest-heartbeat') out.push(input)
      else if (now - at <= heardWithinMs) out.push(input)
    }
    out.unshift({ type: 'hub-takeover', heardAgoMs, ...(reason ? { reason } : {}) })
    out.push(...this.results)
    this.latest.clear()
    this.results = []
    return out
  }
}

function standbyKey(i: Input): string {
  switch (i.type) {
    case 'resource-state':
      return `${i.type}/${i.node}/${i.resource}`
    case 'guest-heartbeat':
      return `${i.type}/${i.resource}`
    case 'guest-sample':
      return `${i.type}/${i.node}/${i.resource}`
    case 'power-state':
      return `${i.type}/${i.node}/${i.device}`
    default:
      return 'node' in i ? `${i.type}/${i.node}` : i.type
  }
}

/**
 * An agent restart a standby heard this recently is replayed at a takeover: the leader commits its
 * state at least every 2 s and is replaced within its lease, so an older one it saw and handled.
 */
const AGENT_RESTART_REPLAY_MS = 10_000

/** A disk or guest heartbeat a standby heard this recently is replayed to the engine at a takeover. */
const TAKEOVER_HEARD_WITHIN_MS = 1000
/**
 * The what-if plan is recomputed on demand once older than this, or once older than the minimum
 * after a decision that may have moved resources (it costs ~2 s at 1,000 hosts: never per step).
 */
const PLAN_MAX_AGE_MS = 10_000
const PLAN_MIN_AGE_MS = 1000

/**
 * Observe mode rebuilds its spec when the nodes seen change, then the engine revisits everything.
 * While nodes keep joining (10,000 agents connecting: a change every tick), a rebuild waits until
 * this many times the last one's cost has passed since it, so rebuilding takes at most about a
 * tenth of the loop: ~50 ms each at 10,000 nodes, so a newly seen node is judged within ~0.5 s; a
 * small cluster's (well under 1 ms) still happen at the next tick. Never longer than the cap.
 */
const OBSERVED_SPEC_COST_FACTOR = 10
const OBSERVED_SPEC_MAX_WAIT_MS = 1000

/**
 * Runs the engine live: inputs from ingest are queued, a step runs every tick on a clock that is
 * monotonic within a process and anchored to wall time (so persisted state stays meaningful across
 * restarts), records are stored and broadcast, actions become commands. The state is saved every
 * 2 s and at close, and resumed at start with a `hub-restarted` input.
 */
export class EngineLoop {
  private state: EngineState
  private inbox: Input[] = []
  private spec: ClusterSpec
  /** Observe mode: the nodes the spec was built from (the array, and its ids joined). */
  private observedList: readonly string[] = []
  private observedNodes = ''
  /** Observe mode: the last list of nodes seen that differs from `observedList`, not yet built. */
  private observedPending: readonly string[] | null = null
  /** Observe mode: when the spec was last rebuilt (monotonic ms) and what that cost (with its step). */
  private observedBuiltAt = Number.NEGATIVE_INFINITY
  private observedCostMs = 0
  private seq = 0
  private lastPersist = 0
  /** The plan computed on the event loop, when no planner thread is given. */
  private inlinePlan: { at: number; plan: WhatIf[] } | null = null
  /** A decision since the plan was made may have moved resources or lost a node. */
  private planStale = false
  private readonly startWall: number
  private readonly startMono: number
  private readonly metrics: EngineMetrics
  /** When the oldest queued input arrived (monotonic ms), null while the inbox is empty. */
  private inboxSince: number | null = null
  /** Where each resource was last placed, to tell a failover from a first start. */
  private readonly lastHome = new Map<string, string>()
  /** Whether this hub acts: always alone; in a hub group only while it leads. */
  private active: boolean
  /** A guarded write to the group is in flight: steps wait for it (their effects are ordered). */
  private committing = false
  /**
   * The periodic save being built in slices: steps wait for it, so the state it writes is the one
   * a step left (never half of one step and half of the next). Cancelled when a write in one go
   * supersedes it or the state is replaced (a recovery, a takeover).
   */
  private saving: { cancelled: boolean } | null = null
  private readonly standby = new StandbyInputs()
  /**
   * The nodes the engine judges: the spec's, or with no cluster file those seen and not shut down
   * (a placeholder spec judges none). Its state keeps a node that left (a reload, a clean shutdown)
   * as it was: that is no judgement of now, so it is not shown.
   */
  private judged = new Set<string>()
  /** Each judged node's condition after the last step, to tell its changes. */
  private conditions = new Map<string, NodeCondition>()

  constructor(private readonly deps: EngineLoopDeps) {
    this.startWall = deps.clock.wallMs()
    this.startMono = deps.clock.monoMs()
    this.active = deps.group === undefined
    this.spec = deps.spec ? this.judging(deps.spec) : this.observedSpec(deps.knownNodes())
    const saved = deps.store.loadEngineState() as EngineState | null
    if (saved && saved.schema === 1) {
      this.state = saved
      this.inbox.push({ type: 'hub-restarted' })
    } else {
      this.state = initialState(this.spec, this.now())
    }
    this.metrics = new EngineMetrics(deps.metrics.registry, {
      state: () => this.state,
      spec: () => this.spec,
      now: () => this.now(),
      whatIf: () => this.whatIf(),
      nodes: () => this.judgedNodes(),
    })
    this.seedHomes()
    this.seedConditions()
  }

  /** Engine time: wall-anchored, never going backwards within this process. */
  now(): number {
    return Math.round(this.startWall + (this.deps.clock.monoMs() - this.startMono))
  }

  /**
   * "If this node died now": where its resources would go, and what could not be placed. Answered
   * at once with the newest plan computed on the planner's thread (empty before the first); a plan
   * older than the limits below is asked for again, never waited on.
   */
  whatIf(): WhatIf[] {
    const planner = this.deps.planner
    const plan = planner ? planner.latest() : this.inlinePlan
    const age = plan ? this.now() - plan.at : Number.POSITIVE_INFINITY
    const stale = !plan || age > PLAN_MAX_AGE_MS || (this.planStale && age > PLAN_MIN_AGE_MS)
    if (stale && planner && !planner.busy) {
      this.planStale = false
      planner.refresh(this.spec, this.state, this.now())
    } else if (stale && !planner) {
      // No thread (a test's loop): computed here, as a small cluster can afford.
      this.planStale = false
      const env = { now: () => this.now(), newId: (kind: string) => `${kind}-plan` }
      this.inlinePlan = { at: this.now(), plan: whatIfPlan(this.spec, this.state, env) }
      return this.inlinePlan.plan
    }
    return plan?.plan ?? []
  }

  /**
   * The what-if plan as of now, for a person asking (`vigil plan`, the API): a stale one is computed
   * again on the planner's thread and awaited (the event loop goes on meanwhile).
   */
  async freshWhatIf(): Promise<WhatIf[]> {
    this.whatIf()
    await this.deps.planner?.settled()
    return this.whatIf()
  }

  input(i: Input): void {
    if (!this.active) {
      this.standby.keep(i, this.deps.clock.monoMs())
      return
    }
    if (this.inbox.length === 0) this.inboxSince = this.deps.clock.monoMs()
    this.inbox.push(i)
    // A periodic power reading is news for the next tick, not an answer waited on.
    if (ANSWERED_AT_ONCE.has(i.type) && !(i.type === 'power-state' && i.polled)) this.deps.stepSoon?.()
  }

  /** The cluster's own maintenance (every resource left alone), with when it re-arms; null: off. */
  clusterMaintenance(): { until: number | null } | null {
    const m = this.state.maintenance
    return m ? { until: m.until } : null
  }

  /**
   * What the engine says of a node now: null for a node it does not judge, and for every node while
   * this hub does not act (a standby, or a database that cannot be written): its state is then not
   * stepped, and what it held is no judgement of now.
   */
  condition(node: string): NodeJudgement | null {
    const n = this.active && this.judged.has(node) ? this.state.nodes[node] : undefined
    return n
      ? {
          condition: n.condition,
          since: n.conditionSince,
          health: n.health.score,
          fence: n.fence.phase,
          maintenance: n.maintenance ? { until: n.maintenance.until } : null,
          evacuating: n.evacuating,
        }
      : null
  }

  /** The nodes the engine judges now with their state, by id (none while this hub does not act). */
  private judgedNodes(): [string, NodeState][] {
    if (!this.active) return []
    const out: [string, NodeState][] = []
    for (const id of this.judged) {
      const n = this.state.nodes[id]
      if (n) out.push([id, n])
    }
    return out
  }

  /**
   * Fences that were running when the state was saved (a hub killed mid-fence): the hub resumes
   * each, reading the power state first, so that none is forgotten and none is sent twice.
   */
  inFlightFences(): Extract<Action, { type: 'fence' }>[] {
    const out: Extract<Action, { type: 'fence' }>[] = []
    for (const [node, n] of Object.entries(this.state.nodes)) {
      const f = n.fence
      const level = this.spec.nodes.find((s) => s.id === node)?.fencing[f.level]
      if (f.phase !== 'running' || !f.actionId || !level) continue
      out.push({
        type: 'fence',
        id: f.actionId,
        decision: f.correlationId ?? f.actionId,
        node,
        level: f.level,
        devices: f.awaiting.length > 0 ? [...f.awaiting] : level.devices,
        timeoutMs: level.timeoutMs,
      })
    }
    return out
  }

  /** Whether the engine knows this node or resource (an operator's request must name one). */
  knows(kind: 'node' | 'resource', id: string): boolean {
    return kind === 'node' ? id in this.state.nodes : id in this.state.resources
  }

  /**
   * Why an operator's suspend (or resume) of this resource cannot be done now, or null: only a vm,
   * only one running (or, for a resume, one suspended or paused) on a node that can act.
   */
  suspendRefusal(resource: string, on: boolean): string | null {
    const spec = this.spec.resources.find((r) => r.id === resource)
    if (spec?.kind !== 'vm') return `${resource} is not a vm: only a vm can be suspended`
    const r = this.state.resources[resource]
    const observed = r?.node ? r.observed[r.node]?.state : undefined
    if (on && observed !== 'running')
      return `${resource} is ${r?.phase ?? 'unknown'}: only a running vm can be suspended`
    if (!on && observed !== 'suspended' && observed !== 'paused' && r?.wantSuspended !== true)
      return `${resource} is ${r?.phase ?? 'unknown'}, not suspended: nothing to resume`
    return null
  }

  liveMigratable(resource: string): boolean {
    const spec = this.spec.resources.find((r) => r.id === resource)
    return spec?.kind === 'vm' && spec.liveMigrate
  }

  /** How many of the resources `resourceViews` shows are running, of how many (no views built). */
  resourceTally(): { running: number; total: number } {
    let running = 0
    let total = 0
    for (const spec of this.spec.resources) {
      const r = this.state.resources[spec.id]
      if (!r) continue
      total++
      if (r.phase === 'running') running++
    }
    return { running, total }
  }

  /** Every resource as the engine sees it: phase, where it runs, failures counted, what is pending. */
  resourceViews(): ResourceView[] {
    // Only what the cluster file lists now: a resource a reload removed keeps its state (it comes
    // back as it was if listed again) but is no longer shown or acted on.
    const listed = new Set(this.spec.resources.map((r) => r.id))
    return Object.entries(this.state.resources)
      .filter(([id]) => listed.has(id))
      .map(([id, r]) => ({
        id,
        phase: r.phase,
        phaseSince: r.phaseSince,
        node: r.node,
        health: resourceHealthScore(r),
        failures: r.failures.length,
        maintenance: r.maintenance !== null,
        stoppedByOperator: r.stoppedByOperator ?? false,
        pending: r.pending ? { type: r.pending.type, node: r.pending.node } : null,
        reason: r.reason ?? null,
        observed: Object.fromEntries(Object.entries(r.observed).map(([node, o]) => [node, o.state])),
        correlationId: r.correlationId,
      }))
      .sort((a, b) => (a.id < b.id ? -1 : 1))
  }

  /**
   * The peer mesh's reachability matrix as the engine last heard it: for each node, the peers it

   * reported hearing (null: no report, e.g. no mesh or not heard from) and how old that report is.

   */

  peerMatrix(): { node: string; hears: string[] | null; ageMs: number | null }[] {
    const now = this.now()

    return Object.entries(this.state.nodes)

      .map(([node, n]) => ({ node, hears: n.hears?.peers ?? null, ageMs: n.hears ? now - n.hears.at : null }))

      .sort((a, b) => (a.node < b.node ? -1 : 1))
  }

  /** Whether this engine acts (a hub alone, or the leader of its group). */
  get acting(): boolean {
    return this.active
  }

  /**
   * This hub now leads its group: it resumes the state the previous leader committed (or, for the
   * group's first leader, the one this hub saved alone), as a restarted hub resumes its own, and
   * hands the engine what it heard as a standby, so nodes it heard alive stay alive, and results
   * the old leader's commands got are not lost. Alone, the same resumes a hub that stopped acting
   * for a while (its database could not be written): `reason` says so in the decision record.
   */
  takeOver(committed: EngineState | null, why: string, reason?: string): void {
    this.cancelSlicedSave()
    const saved = committed ?? (this.deps.store.loadEngineState() as EngineState | null)
    this.state = saved && saved.schema === 1 ? saved : initialState(this.spec, this.now())
    this.seedHomes()
    this.inlinePlan = null
    this.deps.planner?.reset()
    this.inbox = this.standby.take(this.deps.clock.monoMs(), TAKEOVER_HEARD_WITHIN_MS, reason)
    this.inboxSince = this.deps.clock.monoMs()
    this.active = true
    // The conditions it resumes are the previous leader's conclusions, already told in its log.
    this.seedConditions()
    this.deps.log.warn({ why, resumed: saved !== null }, 'taking over: resuming the group state')
    this.deps.stepSoon?.()
  }

  /** This hub no longer leads: it stops acting at once and goes back to listening. */
  standDown(): void {
    this.cancelSlicedSave()
    this.active = false
    this.inbox = []
    this.inboxSince = null
  }

  /**
   * A new cluster spec (a reloaded cluster file): the next step reconciles the state with it (new
   * nodes and resources get fresh state; what left the file is no longer acted on).
   */
  setSpec(spec: ClusterSpec): void {
    this.spec = this.judging(spec)
    this.deps.stepSoon?.()
  }

  /** One step with everything queued since the last one. */
  tick(): void {
    if (!this.active || this.committing || this.saving) return
    let rebuildMs: number | null = null
    if (!this.deps.spec) {
      const nodes = this.observedChange()
      if (nodes) {
        const t0 = this.deps.clock.monoMs()
        this.spec = this.observedSpec(nodes)
        rebuildMs = this.deps.clock.monoMs() - t0
      }
      if (this.judged.size === 0) return // nothing to observe (yet, or any more)
    }
    const inputs = this.inbox
    this.inbox = []
    const started = this.deps.clock.monoMs()
    if (this.inboxSince !== null) this.metrics.inputDelay.observe((started - this.inboxSince) / 1000)
    this.inboxSince = null
    const result = step(this.spec, this.state, inputs, {
      now: () => this.now(),
      newId: (kind) => `${kind === 'action' ? 'a' : 'd'}-${this.deps.epoch()}-${++this.seq}`,
    })
    this.state = result.state
    const stepMs = this.deps.clock.monoMs() - started
    this.metrics.stepDuration.observe(stepMs / 1000)
    // The step after a rebuild revisits every node: part of what the rebuild costs.
    if (rebuildMs !== null) this.observedCostMs = rebuildMs + stepMs
    this.noteConditions(result.records)
    if (result.records.length > 0) {
      for (const r of result.records) {
        const traceId = this.deps.tracer.record(r)
        if (traceId) r.traceId = traceId
      }
      this.deps.store.appendDecisions(result.records)
      this.planStale = true
      for (const r of result.records) {
        this.metrics.decisions.inc({ kind: r.kind, rule: r.rule })
        if (r.rule.startsWith('governor.')) this.metrics.governorHolds.inc({ rule: r.rule })
        if (r.resource && r.node && (r.kind === 'place' || r.kind === 'resource-phase')) {
          const before = this.lastHome.get(r.resource)
          if (r.kind === 'place' && before !== undefined && before !== r.node)
            this.metrics.failovers.inc({ resource: r.resource })
          this.lastHome.set(r.resource, r.node)
        }
        this.deps.log.info(
          {
            decision: r.id,
            node: r.node,
            resource: r.resource,
            rule: r.rule,
            correlation: r.correlationId,
            trace: r.traceId,
          },
          r.summary,
        )
        this.deps.onRecord(r)
      }
    }
    // Write-ahead: the state that knows about these actions is on disk before any of them leaves,
    // so a hub killed right after sending resumes them instead of deciding (and sending) again.
    const acts = result.actions.some((a) => a.type !== 'alert')
    const written = acts ? this.persist() : null
    this.deps.tracer.sweep(this.now())
    if (this.deps.group) {
      // In a group the write-ahead is etcd's, guarded by the leadership: nothing leaves unless it
      // is recorded there while this hub still leads, so the next leader knows all it may do.
      const periodic = this.now() - this.lastPersist >= PERSIST_EVERY_MS
      if (!acts && !periodic) {
        for (const a of result.actions) this.carryOut(a)
        return
      }
      this.committing = true
      const intents = result.actions.filter((a) => a.type !== 'alert').map(intentOf)
      const group = this.deps.group
      // The text saved here is the text committed: a large state is made once, in slices.
      ;(written !== null ? Promise.resolve(written) : this.persistPeriodic())
        .then((json) => (json === null ? false : group.commit(json, intents)))
        .then((ok) => {
          this.committing = false
          if (!ok || !this.active) {
            if (intents.length > 0)
              this.deps.log.warn(
                { actions: intents.map((i) => `${i.type} ${i.resource ?? ''}@${i.node}`) },
                'not carried out: this hub no longer leads',
              )
            return
          }
          for (const a of result.actions) this.carryOut(a)
          if (this.inbox.length > 0) this.deps.stepSoon?.()
        })
        .catch((err: unknown) => {
          this.committing = false
          this.deps.log.error({ err }, 'group commit failed')
        })
      return
    }
    for (const a of result.actions) this.carryOut(a)
    if (this.now() - this.lastPersist >= PERSIST_EVERY_MS)
      this.persistPeriodic().catch((err: unknown) => {
        // A database that cannot be written was reported once, when it failed.
        if (this.deps.store.failing === null) this.deps.log.error({ err }, 'saving the engine state failed')
      })
  }

  /**
   * After a step threw, the state may be half-updated (`step` updates it in place): drop it and
   * resume from the last persisted state, as a restarted hub would.
   */
  recover(): void {
    this.cancelSlicedSave()
    const saved = this.deps.store.loadEngineState() as EngineState | null
    this.state = saved && saved.schema === 1 ? saved : initialState(this.spec, this.now())
    this.inbox = [{ type: 'hub-restarted' }]
    this.inlinePlan = null
    this.deps.planner?.reset()
    this.seedHomes()
    this.seedConditions()
  }

  /** Where resources run per the (resumed) state: the baseline for counting failovers. */
  private seedHomes(): void {
    this.lastHome.clear()
    for (const [id, r] of Object.entries(this.state.resources)) if (r.node) this.lastHome.set(id, r.node)
  }

  /**
   * Saves the state now, in one go (a write-ahead, a close): supersedes a save in slices. Returns
   * the JSON text written.
   */
  persist(): string {
    this.cancelSlicedSave()
    const json = JSON.stringify(this.state)
    this.deps.store.saveEngineStateText(json)
    this.lastPersist = this.now()
    return json
  }

  /** Whether a save in slices is under way (steps wait for it). */
  get savingInSlices(): boolean {
    return this.saving !== null
  }

  /**
   * The periodic save: in one go for a small state; for a large one, in slices with the event
   * loop free in between and no step until it is written. Not a write-ahead (those are `persist`):
   * a hub killed meanwhile resumes the previous save, as it would between two periodic saves.
   * Resolves with the JSON text written, or null when the save was dropped (`cancelSlicedSave`).
   */
  private persistPeriodic(): Promise<string | null> {
    const size = Object.keys(this.state.nodes).length + Object.keys(this.state.resources).length
    if (size <= (this.deps.slicedSaveAbove ?? SLICED_SAVE_ABOVE)) {
      // Never a throw out of here (a database that cannot be written): a group's commit chain
      // would be left waiting for ever.
      try {
        return Promise.resolve(this.persist())
      } catch (err) {
        return Promise.reject(err)
      }
    }
    const job = { cancelled: false }
    this.saving = job
    this.lastPersist = this.now()
    const started = this.deps.clock.monoMs()
    return jsonInSlices(this.state as unknown as Record<string, unknown>, SAVE_SLICE_MS, {
      monoMs: () => this.deps.clock.monoMs(),
      yieldNow: () => new Promise((resolve) => setImmediate(resolve)),
    })
      .then(({ text, slices }) => {
        if (job.cancelled) return null
        this.deps.store.saveEngineStateText(text)
        this.deps.log.debug(
          { slices, ms: this.deps.clock.monoMs() - started, bytes: text.length },
          'engine state saved in slices',
        )
        return text
      })
      .finally(() => {
        if (this.saving !== job) return
        this.saving = null
        if (this.inbox.length > 0) this.deps.stepSoon?.()
      })
  }

  private cancelSlicedSave(): void {
    if (this.saving) this.saving.cancelled = true
    this.saving = null
  }

  private carryOut(a: Action): void {
    this.metrics.actions.inc({ type: a.type })
    const { log } = this.deps
    switch (a.type) {
      case 'alert': {
        log.warn({ decision: a.decision, subject: a.subject, severity: a.severity }, a.message)
        const event = this.deps.store.appendEvent({
          at: this.deps.clock.wallMs(),
          node: a.subject.startsWith('node:') ? a.subject.slice(5) : null,
          source: 'hub',
          kind: 'engine.alert',
          severity: a.severity,
          message: a.message,
          attrs: { decision: a.decision, subject: a.subject },
        })
        this.deps.onEvent(event)
        return
      }
      case 'fence':
        this.deps.fence(a)
        return
      default: {
        const { target, action, args } = commandFor(a)
        const span = this.deps.tracer.startWork(a.decision, `command ${a.type}`, {
          'vigil.node': a.node,
          'vigil.resource': a.resource,
          'vigil.action.id': a.id,
        })
        this.deps.commands.send(target, action, args).then(
          (outcome) => {
            finish(span, true, {
              'vigil.command.id': outcome.command.id,
              'vigil.command.status': outcome.result.status,
            })
            this.input(actionResultInput(a.id, outcome.result))
          },
          (err: { code?: string; message?: string; cause?: CommandResult }) => {
            finish(span, false, { 'vigil.command.error': err.code ?? 'error' }, err.message)
            // A timeout is left to the engine's own action deadline (the driver's, plus a margin):
            // the result may still come, and is then passed on as a late result. A refusal or a
            // failure is reported with the agent's recovery scope.
            if (err.code === 'command_refused' && err.cause) this.input(actionResultInput(a.id, err.cause))
          },
        )
      }
    }
  }

  /** A result the dispatcher had stopped waiting for: the engine decides if it still matters. */
  lateResult({ command, result }: LateResult): void {
    const actionId = command.args.action
    if (typeof actionId === 'string') this.input(actionResultInput(actionId, result))
  }

  /**
   * The result of a command another hub of the group sent (the leader before a takeover), by the
   * action id its agent echoed: it counts only for an action pending on the node that answered.
   */
  foreignResult(actionId: string, result: CommandResult): void {
    this.input(actionResultInput(actionId, result))
  }

  /**
   * Observe mode: the nodes to rebuild the spec from now, or null to keep it (unchanged, or
   * changed too soon after the last rebuild: see OBSERVED_SPEC_COST_FACTOR; asked again each tick).
   */
  private observedChange(): readonly string[] | null {
    const nodes = this.deps.knownNodes()
    if (nodes !== this.observedList && nodes !== this.observedPending) {
      // A new array: compared by its ids once (a caller that builds one on every call, as tests do).
      this.observedPending = nodes.join(',') === this.observedNodes ? null : nodes
      if (this.observedPending === null) this.observedList = nodes
    }
    if (this.observedPending === null) return null
    const wait = Math.min(OBSERVED_SPEC_MAX_WAIT_MS, OBSERVED_SPEC_COST_FACTOR * this.observedCostMs)
    return this.deps.clock.monoMs() - this.observedBuiltAt >= wait ? this.observedPending : null
  }

  private observedSpec(nodes: readonly string[]): ClusterSpec {
    this.observedList = nodes
    this.observedPending = null
    this.observedNodes = nodes.join(',')
    this.observedBuiltAt = this.deps.clock.monoMs()
    this.judge(nodes)
    // With no cluster file the engine classifies what it sees; with no fence devices and no
    // resources it can only observe and alert, never act.
    // (While no node is known the spec is never stepped; the placeholder only satisfies the schema.)
    return clusterSpecSchema.parse({
      nodes: (nodes.length > 0 ? nodes : ['unseen']).map((id) => ({ id })),
      resources: [],
    })
  }

  /** `spec`, whose nodes are now the ones judged. */
  private judging(spec: ClusterSpec): ClusterSpec {
    this.judge(spec.nodes.map((n) => n.id))
    return spec
  }

  /** These nodes are the ones judged from now on. */
  private judge(ids: readonly string[]): void {
    this.judged = new Set(ids)
    // A node no longer judged leaves no condition behind: judged again, it counts from unknown.
    for (const id of this.conditions.keys()) if (!this.judged.has(id)) this.conditions.delete(id)
  }

  /** What the last step left each judged node as, without an event: a resumed or taken-over state. */
  private seedConditions(): void {
    this.conditions = new Map(this.judgedNodes().map(([id, n]) => [id, n.condition]))
  }

  /**
   * Each judged node whose condition the step changed (a node newly judged counts from unknown):
   * a `node.condition` event, the operator's log of what the engine concluded (its decision record
   * says why; an unknown node heard has none), and a fresh view on the live feed.
   */
  private noteConditions(records: DecisionRecord[]): void {
    // The first record that classified each node so, by node and condition: a step that re-arms
    // every detector (a pause, a takeover) changes every node at once, and a search of all
    // records per node was quadratic.
    const recordOf = new Map<string, DecisionRecord>()
    for (const r of records)
      if (r.kind === 'node-condition' && r.node) {
        const key = `${r.node}\0${r.classification}`
        if (!recordOf.has(key)) recordOf.set(key, r)
      }
    const changed: string[] = []
    const events: NewEvent[] = []
    for (const id of this.judged) {
      const n = this.state.nodes[id]
      if (!n) continue
      const from = this.conditions.get(id) ?? 'unknown'
      const to = n.condition
      if (from === to) continue
      this.conditions.set(id, to)
      const record = recordOf.get(`${id}\0${to}`)
      this.metrics.conditionChanges.inc({ condition: to })
      changed.push(id)
      events.push({
        at: this.deps.clock.wallMs(),
        node: id,
        source: 'hub',
        kind: 'node.condition',
        severity: to === 'dead' ? 'critical' : to === 'healthy' || to === 'unknown' ? 'info' : 'warning',
        message: record?.summary ?? `${from} -> ${to}`,
        attrs: { from, to, ...(record ? { decision: record.id, rule: record.rule } : {}) },
      })
    }
    // In one transaction: 10,000 nodes changing at once cost 230 ms written one by one.
    const rows = this.deps.store.appendEvents(events)
    for (const [i, event] of rows.entries()) {
      this.deps.onEvent(event)
      this.deps.onNodeCondition?.(changed[i] as string)
    }
  }
}

function intentOf(a: Exclude<Action, { type: 'alert' }>): Intent {
  return {
    id: a.id,
    type: a.type,
    node: a.node,
    ...('resource' in a ? { resource: a.resource } : {}),
    decision: a.decision,
  }
}
