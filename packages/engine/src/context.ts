import { type PhiParams, phi, phiBelow } from './phi.js'
import type { ClusterSpec, DetectorSpec, NodeSpec, ResourceSpec } from './spec.js'
import type {
  Action,
  ChannelEvidence,
  DecisionRecord,
  EngineEnv,
  EngineState,
  NodeState,
  ResourceState,
} from './types.js'
import { forgetPending, type VisitMap, visitMap } from './visits.js'

type NewRecord = Omit<DecisionRecord, 'id' | 'at' | 'policyVersion' | 'correlationId'> & {
  correlationId?: string | null
}
type NewAction = Action extends infer A ? (A extends Action ? Omit<A, 'id'> : never) : never

/** A detector's spec is its phi parameters (no copy: asked for every node at every step). */
export function phiParams(d: DetectorSpec): PhiParams {
  return d
}

/** Nodes by id and resources by priority then id: the deterministic order, sorted once per spec. */
const sortedSpecs = new WeakMap<ClusterSpec, { nodes: NodeSpec[]; resources: ResourceSpec[] }>()

/**
 * Each state's resource entries in `resourceSpecs` order, for the loops that visit every resource
 * every step: a string-keyed lookup in a 10,000-entry object costs more than the visit. Valid while
 * the state's entries are the same objects (the engine only ever adds entries, in `reconcile`, and
 * then the spec differs).
 */
const resourceRefs = new WeakMap<EngineState, { spec: ClusterSpec; refs: ResourceState[] }>()
/** The same for nodes, in `nodeSpecs` order. */
const nodeRefs = new WeakMap<EngineState, { spec: ClusterSpec; refs: NodeState[] }>()
/** Node positions (in `nodeSpecs`) per failure domain (static per spec). */
const failureDomains = new WeakMap<ClusterSpec, Map<string, number[]>>()
/** Who declared anti-affinity with whom, reversed (static per spec). */
const reverseAntiAffinity = new WeakMap<ClusterSpec, Map<string, string[]>>()
/** Each node's position in `nodeSpecs` (static per spec). */
const nodePositions = new WeakMap<ClusterSpec, Map<string, number>>()

/**
 * A step's scratch arrays, per state and reused step after step (one step at a time runs on a
 * state): allocating them at every step was garbage of its own at 50,000 resources.
 */
const scratch = new WeakMap<EngineState, { visits: Uint8Array; phi: Float64Array }>()

function stepBuffers(
  state: EngineState,
  resources: number,
  nodes: number,
): { visits: Uint8Array; phi: Float64Array } {
  let buffers = scratch.get(state)
  if (!buffers || buffers.visits.length !== resources || buffers.phi.length !== nodes) {
    buffers = { visits: new Uint8Array(resources), phi: new Float64Array(nodes) }
    scratch.set(state, buffers)
  }
  return buffers
}

/** Asked of every node at every step: one empty answer, not one per question. */
const NO_PEERS: readonly string[] = Object.freeze([])

/** One step's working set: a private copy of the state, the time, and what the step produced. */
export class StepContext {
  readonly actions: Action[] = []
  readonly records: DecisionRecord[] = []
  readonly now: number
  readonly nodeSpecs: NodeSpec[]
  readonly resourceSpecs: ResourceSpec[]

  /** Resources that declared anti-affinity with `id` (static per spec). */
  antiAffinityFrom(id: string): string[] {
    let reverse = reverseAntiAffinity.get(this.spec)
    if (!reverse) {
      reverse = new Map()
      for (const r of this.spec.resources) {
        for (const other of r.antiAffinity) reverse.set(other, [...(reverse.get(other) ?? []), r.id])
      }
      reverseAntiAffinity.set(this.spec, reverse)
    }
    return reverse.get(id) ?? []
  }

  constructor(
    readonly spec: ClusterSpec,
    readonly state: EngineState,
    readonly env: EngineEnv,
  ) {
    this.now = env.now()
    let sorted = sortedSpecs.get(spec)
    if (!sorted) {
      sorted = {
        nodes: [...spec.nodes].sort((a, b) => a.id.localeCompare(b.id)),
        resources: [...spec.resources].sort((a, b) => b.priority - a.priority || a.id.localeCompare(b.id)),
      }
      sortedSpecs.set(spec, sorted)
    }
    this.nodeSpecs = sorted.nodes
    this.resourceSpecs = sorted.resources
    this.visitMap = visitMap(spec, sorted.resources)
    this.visits = stepBuffers(state, sorted.resources.length, this.nodeSpecs.length).visits.fill(0)
  }

  /** The resources this step visits, by position in `resourceSpecs` (visits.ts). */
  readonly visits: Uint8Array
  readonly visitMap: VisitMap

  /**
   * The resource may have stopped being steady (an action issued, a phase set, an input about
   * it): it is a candidate for this step's visits, with its guest applications. Every change to a
   * resource's state made outside its own visit must mark it (visits.ts).
   */
  mark(id: string): void {
    forgetPending(this)
    const i = this.visitMap.position.get(id)
    if (i === undefined) return
    this.visits[i] = 1
    for (const g of this.visitMap.guestApps.get(i) ?? []) this.visits[g] = 1
  }

  /** The guest applications of a vm (none for any other resource), in `resourceSpecs` order. */
  guestAppsOf(vm: string): ResourceSpec[] {
    const i = this.visitMap.position.get(vm)
    const apps = i === undefined ? undefined : this.visitMap.guestApps.get(i)
    return apps ? apps.map((g) => this.resourceSpecs[g] as ResourceSpec) : []
  }

  /** An input changed the resource: it is visited this step even if steady. */
  touch(id: string): void {
    this.touched.add(id)
    this.mark(id)
  }

  /** The state of each of `nodeSpecs`, in the same order. */
  nodeStates(): NodeState[] {
    const cached = nodeRefs.get(this.state)
    if (cached?.spec === this.spec) return cached.refs
    const refs = this.nodeSpecs.map((n) => this.node(n.id))
    nodeRefs.set(this.state, { spec: this.spec, refs })
    return refs
  }

  /** Node positions (in `nodeSpecs`) per failure domain. */
  failureDomains(): Map<string, number[]> {
    let domains = failureDomains.get(this.spec)
    if (!domains) {
      domains = new Map()
      this.nodeSpecs.forEach((n, i) => {
        const members = domains?.get(n.failureDomain)
        if (members) members.push(i)
        else domains?.set(n.failureDomain, [i])
      })
      failureDomains.set(this.spec, domains)
    }
    return domains
  }

  /** A node's position in `nodeSpecs`, or undefined for a node the spec does not list. */
  nodePosition(id: string): number | undefined {
    let positions = nodePositions.get(this.spec)
    if (!positions) {
      positions = new Map(this.nodeSpecs.map((n, i) => [n.id, i]))
      nodePositions.set(this.spec, positions)
    }
    return positions.get(id)
  }

  /** The state of each of `resourceSpecs`, in the same order. */
  resourceStates(): ResourceState[] {
    const cached = resourceRefs.get(this.state)
    if (cached?.spec === this.spec) return cached.refs
    const refs = this.resourceSpecs.map((r) => {
      const s = this.state.resources[r.id]
      if (!s) throw new Error(`engine: no state for resource ${r.id}`)
      return s
    })
    resourceRefs.set(this.state, { spec: this.spec, refs })
    return refs
  }

  record(r: NewRecord): string {
    const id = this.env.newId('decision')
    const { correlationId, ...rest } = r
    this.records.push({
      id,
      at: this.now,
      policyVersion: this.spec.policyVersion,
      correlationId: correlationId ?? id,
      ...rest,
    })
    return id
  }

  act(a: NewAction): string {
    const id = this.env.newId('action')
    this.actions.push({ ...a, id } as Action)
    return id
  }

  /**
   * An action already issued, sent again under its own id: the agent answers a repeat of an action
   * id from its record (the outcome of the first copy), never running it twice.
   */
  actAgain(a: Action): void {
    this.actions.push(a)
  }

  alert(decision: string, severity: 'warning' | 'critical', subject: string, message: string): void {
    this.act({ type: 'alert', decision, severity, subject, message })
  }

  node(id: string): NodeState {
    const n = this.state.nodes[id]
    if (!n) throw new Error(`engine: no state for node ${id}`)
    return n
  }

  nodeSpec(id: string): NodeSpec | undefined {
    return this.spec.nodes.find((n) => n.id === id)
  }

  /** Resources an input changed this step (`touch`): they are revisited even when steady. */
  readonly touched = new Set<string>()
  /** Something cluster-wide changed (operator, spec, hub restart, cluster maintenance): revisit all. */
  allDirty = false
  /** Nodes whose condition, fence, maintenance, evacuation or links changed this step. */
  readonly dirtyNodes = new Set<string>()
  /** A node became able to take resources this step (healthy again): only then can failback apply. */
  nodeBecameAvailable = false
  /** Nodes heard again this step after the hub could not hear them (see action-outcomes.ts `heardAgain`). */
  readonly heardAgain: string[] = []

  /** Node load for placement, computed once per step and updated as resources are placed. */
  load: Map<string, { memoryMb: number; vcpus: number; count: number }> | null = null

  private clean: boolean | null = null
  private perStep: {
    frozen?: string[]
    grace?: boolean
    uninventoried?: number[]
    askedAbout?: number[]
  } = {}

  /**
   * The nodes are evaluated: node-level facts asked per placement are worked out afresh, then once
   * per step instead of over every node per resource. Called again when one of them changes while
   * resources are visited (a node asked about a resource).
   */
  nodeFactsChanged(): void {
    this.perStep = {}
    this.clean = null
  }

  frozenNodes(): string[] {
    this.perStep.frozen ??= this.nodeSpecs
      .filter((_, i) => this.nodeStates()[i]?.condition === 'frozen')
      .map((n) => n.id)
    return this.perStep.frozen
  }

  /** Whether any node is unheard since start and within the startup grace. */
  anyInStartupGrace(): boolean {
    this.perStep.grace ??= this.nodeStates().some(
      (n) =>
        !n.heard &&
        n.condition === 'unknown' &&
        this.now - n.conditionSince < this.spec.detection.startupGraceMs,
    )
    return this.perStep.grace
  }

  /** Positions of the nodes that have not sent a complete inventory. */
  uninventoriedNodes(): number[] {
    this.perStep.uninventoried ??= this.nodeStates().flatMap((n, i) => (n.inventory === null ? [i] : []))
    return this.perStep.uninventoried
  }

  /** Positions of the nodes waiting to be told whether something runs there (a cut-off migration). */
  nodesAskedAbout(): number[] {
    this.perStep.askedAbout ??= this.nodeStates().flatMap((n, i) =>
      n.askedFor && Object.keys(n.askedFor).length > 0 ? [i] : [],
    )
    return this.perStep.askedAbout
  }

  /**
   * Every node is healthy, unfenced, and has sent a complete inventory: a resource can then only be
   * where some inventory listed it, so safety checks need not visit every node.
   */
  everyNodeInventoried(): boolean {
    this.clean ??= this.nodeSpecs.every((n) => {
      const s = this.node(n.id)
      return s.condition === 'healthy' && s.inventory !== null && s.fence.phase === 'idle'
    })
    return this.clean
  }

  /** Each node's hub phi once the detectors settled, by position (NaN: not asked yet). */
  private phiCache: Float64Array | null = null
  private hearers: Map<string, string[]> | null = null

  /**
   * Called once every input of the step is applied: from here on the detectors do not change within
   * the step, so phi and "who hears whom" are computed once per node instead of once per question.
   */
  detectorsSettled(): void {
    this.phiCache = stepBuffers(this.state, this.resourceSpecs.length, this.nodeSpecs.length).phi.fill(
      Number.NaN,
    )
    this.hearers = new Map()
    const ttl = this.spec.detection.peerReportTtlMs
    const states = this.nodeStates()
    for (let i = 0; i < states.length; i++) {
      const reporter = (this.nodeSpecs[i] as NodeSpec).id
      const report = (states[i] as NodeState).hears
      if (report === null || this.now - report.at > ttl || !this.hubAliveAt(i, states[i] as NodeState))
        continue
      for (const peer of report.peers) {
        if (peer === reporter) continue
        const hearers = this.hearers.get(peer)
        if (hearers) hearers.push(reporter)
        else this.hearers.set(peer, [reporter])
      }
    }
  }

  hubPhi(id: string): number {
    const i = this.phiCache ? this.nodePosition(id) : undefined
    if (i === undefined) return phi(this.node(id).hub, this.now, this.spec.detection.hub)
    return this.hubPhiAt(i, this.node(id))
  }

  /** `hubPhi` of the node at position `i` in `nodeSpecs`, whose state is `n`. */
  hubPhiAt(i: number, n: NodeState): number {
    const cache = this.phiCache
    const cached = cache ? (cache[i] as number) : Number.NaN
    if (!Number.isNaN(cached)) return cached
    const value = phi(n.hub, this.now, this.spec.detection.hub)
    if (cache) cache[i] = value
    return value
  }

  hubAlive(id: string): boolean {
    return this.hubPhi(id) < this.spec.detection.hub.threshold
  }

  /** `hubAlive` of the node at position `i`, whose state is `n`. */
  hubAliveAt(i: number, n: NodeState): boolean {
    const d = this.spec.detection.hub
    const cached = this.phiCache ? (this.phiCache[i] as number) : Number.NaN
    if (!Number.isNaN(cached)) return cached < d.threshold
    return phiBelow(n.hub, this.now, d, d.threshold)
  }

  /**
   * Power read back off (by a fence device or a status read) and not heard since: dead whatever
   * the detector says, since heartbeats sent just before the power-off keep phi low for a while.
   */
  provenOff(id: string, n: NodeState = this.node(id)): boolean {
    if (n.power.state !== 'off') return false
    const unheardSince = n.hub.lastAt === null || n.hub.lastAt <= n.power.at || !n.heard
    // A periodic reading is one channel among the others: off counts only for a node heard before
    // that has gone silent to the hub, to its peers and on its disk (a wrong plug mapping must never
    // kill a node, nor one the hub has not heard yet: a fence with an off command covers that one).
    if (n.power.polled)
      return (
        n.heard &&
        unheardSince &&
        !this.hubAlive(id) &&
        this.peersHearing(id).length === 0 &&
        this.diskAlive(id, n) !== true
      )
    return unheardSince
  }

  /** The nodes (themselves heard by the hub) whose fresh peer report says they hear `id`. */
  peersHearing(id: string): readonly string[] {
    if (this.hearers) return this.hearers.get(id) ?? NO_PEERS
    const ttl = this.spec.detection.peerReportTtlMs
    return this.nodeSpecs
      .map((n) => n.id)
      .filter((other) => {
        if (other === id) return false
        const report = this.node(other).hears
        return (
          report !== null && this.now - report.at <= ttl && report.peers.includes(id) && this.hubAlive(other)
        )
      })
  }

  diskAlive(id: string, n: NodeState = this.node(id)): boolean | null {
    const d = n.disk
    if (d.lastAt === null) return null
    return phi(d, this.now, this.spec.detection.disk) < this.spec.detection.disk.threshold
  }

  /** What each independent channel says about a node, for decision records. */
  evidence(id: string): ChannelEvidence[] {
    const n = this.node(id)
    const hubPhi = this.hubPhi(id)
    const silentMs = n.hub.lastAt === null ? null : this.now - n.hub.lastAt
    const peers = this.peersHearing(id)
    const disk = this.diskAlive(id)
    const out: ChannelEvidence[] = [
      {
        channel: 'hub',
        alive: hubPhi < this.spec.detection.hub.threshold,
        says: !n.heard
          ? 'never heard since start'
          : `last heartbeat ${fmtMs(silentMs ?? 0)} ago (phi ${fmtPhi(hubPhi)})`,
      },
      {
        channel: 'peers',
        alive: peers.length > 0,
        says: peers.length > 0 ? `heard by ${peers.join(', ')}` : 'no peer hears it',
      },
    ]
    if (disk !== null)
      out.push({
        channel: 'disk',
        alive: disk,
        says: disk ? 'disk heartbeat advancing' : 'disk heartbeat stalled',
      })
    if (n.degraded) out.push({ channel: 'nic', alive: true, says: `degraded: ${n.degraded.detail}` })
    if (n.power.state !== 'unknown') {
      out.push({
        channel: 'power',
        alive: n.power.state === 'on',
        says: `power ${n.power.state} (read from ${n.power.device ?? '?'})`,
      })
    }
    return out
  }

  inMaintenance(nodeId: string | null): boolean {
    if (this.state.maintenance) return true
    return nodeId !== null && this.state.nodes[nodeId]?.maintenance != null
  }
}

export function fmtMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`
}

function fmtPhi(p: number): string {
  return Number.isFinite(p) ? p.toFixed(1) : 'inf'
}
