import {
  type ClusterSpec,
  type EngineState,
  type NodeCondition,
  type NodeState,
  phi,
  phiParams,
  RESOURCE_ACTIONS,
  type ResourcePhase,
  resourceHealthScore,
  type WhatIf,
} from '@vigil/engine'
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { SeriesGauge } from './metrics.js'

/** Every value of these closed sets is exported (0 included), so a query never finds "no data". */
const NODE_CONDITIONS = [
  'unknown',
  'healthy',
  'suspect',
  'partitioned',
  'isolated',
  'dead',
  'frozen',
  'agent-stopped',
] as const satisfies readonly NodeCondition[]
const RESOURCE_PHASES = [
  'stopped',
  'starting',
  'running',
  'recovering',
  'stopping',
  'migrating',
  'waiting',
  'blocked',
  'unmanaged',
  'suspended',
] as const satisfies readonly ResourcePhase[]

/** Phases a resource may stay in for good; any other is a wait that must end, or be said. */
const SETTLED: ReadonlySet<ResourcePhase> = new Set(['running', 'stopped', 'unmanaged', 'suspended'])

/** The governor's rules (decision records with these rules are the governor holding back). */
const GOVERNOR_RULES = ['governor.max-fences', 'governor.max-restarts', 'governor.freeze-share']

/**
 * phi grows without bound while a channel is silent (+Inf when never heard); exported values are
 * capped so that graphs stay readable. Every threshold in use is far below the cap.
 */
export const PHI_CAP = 50

export interface EngineView {
  state: () => EngineState
  spec: () => ClusterSpec
  now: () => number
  whatIf: () => WhatIf[]
  /**
   * The nodes the engine judges now, with their state (default: every node in the state). Per-node
   * series are exported for these only: a node it no longer judges (it left the cluster file, its
   * agent shut down in observe mode, this hub stands by) is not shown as it last was.
   */
  nodes?: () => [string, NodeState][]
}

/**
 * The engine's metrics. Gauges are computed at scrape time from the engine state (nothing to keep
 * in sync); counters and histograms are fed by the loop. Labels are node and resource names
 * (bounded by the cluster file) and closed sets (kind, rule, phase, condition, channel).
 */
export class EngineMetrics {
  readonly stepDuration: Histogram
  readonly inputDelay: Histogram
  readonly decisions: Counter<'kind' | 'rule'>
  readonly actions: Counter<'type'>
  readonly failovers: Counter<'resource'>
  readonly governorHolds: Counter<'rule'>
  readonly conditionChanges: Counter<'condition'>

  constructor(registry: Registry, view: EngineView) {
    const registers = [registry]
    const nodes = view.nodes ?? (() => Object.entries(view.state().nodes))
    this.stepDuration = new Histogram({
      name: 'vigil_engine_step_duration_seconds',
      help: 'Wall time of one engine step.',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1],
      registers,
    })
    this.inputDelay = new Histogram({
      name: 'vigil_engine_input_delay_seconds',
      help: 'From an input reaching the hub (heartbeat, observation, fence outcome) to the engine step that decided on it.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    })
    this.decisions = new Counter({
      name: 'vigil_decisions_total',
      help: 'Decision records, by kind and by the rule that chose.',
      labelNames: ['kind', 'rule'],
      registers,
    })
    this.actions = new Counter({
      name: 'vigil_engine_actions_total',
      help: 'Actions the engine asked for, by type (start, stop, restart, reset-vm, reboot-vm, migrate, suspend, resume, fence, alert).',
      labelNames: ['type'],
      registers,
    })
    for (const type of [...RESOURCE_ACTIONS, 'fence', 'alert']) this.actions.inc({ type }, 0)
    this.failovers = new Counter({
      name: 'vigil_failovers_total',
      help: 'Resources placed on another node than the one they last ran on (relocation, failover).',
      labelNames: ['resource'],
      registers,
    })
    for (const r of view.spec().resources) this.failovers.inc({ resource: r.id }, 0)

    this.governorHolds = new Counter({
      name: 'vigil_governor_holds_total',
      help: 'Times the blast-radius governor held back a fence or restart, or froze the cluster, by rule.',
      labelNames: ['rule'],
      registers,
    })
    for (const rule of GOVERNOR_RULES) this.governorHolds.inc({ rule }, 0)
    this.conditionChanges = new Counter({
      name: 'vigil_node_condition_changes_total',
      help: "Changes of a node's engine classification, by the condition entered (each is a node.condition event).",
      labelNames: ['condition'],
      registers,
    })
    for (const condition of NODE_CONDITIONS) this.conditionChanges.inc({ condition }, 0)

    new Gauge({
      name: 'vigil_node_health_score',
      help: 'Engine health score per node, 0-100, with hysteresis (failures-before-critical, successes-before-passing).',
      labelNames: ['node'],
      registers,
      collect() {
        this.reset()
        for (const [node, n] of nodes()) this.set({ node }, n.health.score)
      },
    })
    // Eight series per node: written as text (80,000 at 10,000 nodes).
    new SeriesGauge({
      name: 'vigil_node_condition',
      help: "The engine's classification of each node it judges now, a node's state everywhere: 1 for its current condition, 0 for the others.",
      labelNames: ['node', 'condition'],
      registers,
      *series() {
        for (const [node, n] of nodes()) {
          // Read once: a render may let a step change it between this node's series.
          const current = n.condition
          for (const condition of NODE_CONDITIONS) yield [[node, condition], current === condition ? 1 : 0]
        }
      },
    })
    new Gauge({
      name: 'vigil_nodes_by_condition',
      help: 'Nodes the engine judges now, per classification.',
      labelNames: ['condition'],
      registers,
      collect() {
        const counts = new Map<string, number>(NODE_CONDITIONS.map((c) => [c, 0]))
        for (const [, n] of nodes()) counts.set(n.condition, (counts.get(n.condition) ?? 0) + 1)
        for (const [condition, n] of counts) this.set({ condition }, n)
      },
    })
    new Gauge({
      name: 'vigil_heartbeat_phi',
      help: `Suspicion level (phi accrual) per node and heartbeat channel (hub, disk); capped at ${PHI_CAP}.`,
      labelNames: ['node', 'channel'],
      registers,
      collect() {
        this.reset()
        const now = view.now()
        const { detection } = view.spec()
        for (const [node, n] of nodes()) {
          if (n.heard) this.set({ node, channel: 'hub' }, capped(phi(n.hub, now, phiParams(detection.hub))))
          if (n.disk.lastAt !== null)
            this.set({ node, channel: 'disk' }, capped(phi(n.disk, now, phiParams(detection.disk))))
        }
      },
    })
    new Gauge({
      name: 'vigil_guest_heartbeat_phi',
      help: `Suspicion level (phi accrual) of each vm's in-guest heartbeat; capped at ${PHI_CAP}.`,
      labelNames: ['resource'],
      registers,
      collect() {
        this.reset()
        const now = view.now()
        const params = phiParams(view.spec().detection.guest)
        for (const [resource, r] of Object.entries(view.state().resources))
          if (r.guest && r.guest.lastAt !== null) this.set({ resource }, capped(phi(r.guest, now, params)))
      },
    })
    new Gauge({
      name: 'vigil_node_maintenance',
      help: '1 while a node is in maintenance (or being evacuated into it).',
      labelNames: ['node'],
      registers,
      collect() {
        this.reset()
        for (const [node, n] of nodes()) this.set({ node }, n.maintenance || n.evacuating ? 1 : 0)
      },
    })
    new Gauge({
      name: 'vigil_cluster_maintenance',
      help: '1 while the whole cluster is in maintenance (observe, never act).',
      registers,
      collect() {
        this.set(view.state().maintenance ? 1 : 0)
      },
    })
    new Gauge({
      name: 'vigil_resource_health_score',
      help: 'Engine health score per resource, 0-100: its phase (running 100, recovering 50, blocked 0), less 20 per failure still counted while it runs again.',
      labelNames: ['resource'],
      registers,
      collect() {
        this.reset()
        for (const [resource, r] of Object.entries(view.state().resources))
          this.set({ resource }, resourceHealthScore(r))
      },
    })
    new Gauge({
      name: 'vigil_resources',
      help: 'Resources per phase (running, recovering, blocked, ...).',
      labelNames: ['phase'],
      registers,
      collect() {
        const counts = new Map<string, number>(RESOURCE_PHASES.map((p) => [p, 0]))
        for (const r of Object.values(view.state().resources))
          counts.set(r.phase, (counts.get(r.phase) ?? 0) + 1)
        for (const [phase, n] of counts) this.set({ phase }, n)
      },
    })
    new Gauge({
      name: 'vigil_resource_phase',
      help: 'The phase of each resource and the node it is placed on: 1 for its current phase, 0 for the others.',
      labelNames: ['resource', 'phase', 'node'],
      registers,
      collect() {
        this.reset()
        for (const [resource, r] of Object.entries(view.state().resources))
          for (const phase of RESOURCE_PHASES)
            this.set({ resource, phase, node: r.node ?? '' }, r.phase === phase ? 1 : 0)
      },
    })
    new Gauge({
      name: 'vigil_resource_waiting_seconds',
      help: 'How long each resource not settled (any phase but running, stopped and unmanaged) has been in its phase, with the rule that put it there or that it now waits on (wait.fence-held, order.depends-on, placement.none, ...).',
      labelNames: ['resource', 'phase', 'rule'],
      registers,
      collect() {
        this.reset()
        const now = view.now()
        for (const [resource, r] of Object.entries(view.state().resources)) {
          if (SETTLED.has(r.phase)) continue
          const rule = r.reason?.rule ?? 'unknown'
          this.set({ resource, phase: r.phase, rule }, Math.max(0, now - r.phaseSince) / 1000)
        }
      },
    })
    new Gauge({
      name: 'vigil_resource_failures',
      help: 'Failures of each resource still counted by its restart ladder (they decay after the failure timeout).',
      labelNames: ['resource'],
      registers,
      collect() {
        this.reset()
        for (const [resource, r] of Object.entries(view.state().resources))
          this.set({ resource }, r.failures.length)
      },
    })
    new Gauge({
      name: 'vigil_resource_maintenance',
      help: '1 while a resource is in maintenance or unmanaged (observed, never acted on).',
      labelNames: ['resource'],
      registers,
      collect() {
        this.reset()
        for (const [resource, r] of Object.entries(view.state().resources))
          this.set({ resource }, r.maintenance || r.phase === 'unmanaged' ? 1 : 0)
      },
    })
    new Gauge({
      name: 'vigil_governor_window_actions',
      help: "Fences and restarts counted in the blast-radius governor's current window.",
      labelNames: ['action'],
      registers,
      collect() {
        const g = view.state().governor
        this.set({ action: 'fence' }, g.fences.length)
        this.set({ action: 'restart' }, g.restarts.length)
      },
    })
    new Gauge({
      name: 'vigil_plan_unplaceable_resources',
      help: 'Resources that could not be placed if this node died now (what-if plan, refreshed at most every 10 s).',
      labelNames: ['node'],
      registers,
      collect() {
        this.reset()
        for (const p of view.whatIf()) this.set({ node: p.node }, p.unplaceable.length)
      },
    })
  }
}

function capped(value: number): number {
  return Number.isFinite(value) ? Math.min(value, PHI_CAP) : PHI_CAP
}
