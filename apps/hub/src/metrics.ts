import { type Observation, REJECT_REASONS } from '@vigil/protocol'
import { Counter, collectDefaultMetrics, Gauge, Histogram, type Metric, Registry } from 'prom-client'
import type { GroupView } from './group.js'
import type { PartView } from './health.js'
import { type NodeView, vmSightings } from './nodes.js'

/** Hub-side reasons on top of the protocol's decode reasons. Closed set: a metric label. */
export const HUB_REJECT_REASONS = [...REJECT_REASONS, 'stale_incarnation'] as const
export type HubRejectReason = (typeof HUB_REJECT_REASONS)[number]

/** One series of a SeriesGauge: its label values, in the order of the family's label names, and its value. */
export type Series = readonly [labelValues: readonly string[], value: number]

/** Series written between two turns of the event loop while a HubRegistry renders a family. */
const SERIES_PER_TURN = 20_000

/**
 * A gauge family computed whole at scrape time (`series`, which must not give the same label
 * values twice: a Gauge would keep the last, Prometheus refuses a scrape with a duplicate) and
 * written straight as text. A prom-client Gauge keeps each series in a map keyed by its labels,
 * then formats them one by one, in one go: about 4.7 µs a series, and vigil_check_state alone has
 * 300,000 at 10,000 nodes of 5 checks (1.4 s of the event loop per scrape, which the loop watchdog
 * takes for a frozen hub). In a HubRegistry this writes the same text several times faster, and
 * lets the event loop turn every SERIES_PER_TURN series; in any other registry (or as JSON) it is
 * rendered from `get()` as any gauge.
 */
export class SeriesGauge<L extends string> extends Gauge<L> {
  private readonly familyName: string
  private readonly familyHelp: string
  private readonly familyLabels: readonly L[]
  private readonly series: () => Iterable<Series>

  constructor(config: {
    name: string
    help: string
    labelNames: readonly L[]
    registers: Registry[]
    /**
     * Every series now. A render may let the event loop turn between two of them: read what may
     * change meanwhile (engine state, updated in place) once per group of series that must agree.
     */
    series: () => Iterable<Series>
  }) {
    super({
      name: config.name,
      help: config.help,
      labelNames: config.labelNames,
      registers: config.registers,
    })
    this.familyName = config.name
    this.familyHelp = config.help
    this.familyLabels = config.labelNames
    this.series = config.series
  }

  /** The family in the Prometheus text format, as prom-client writes a gauge (no trailing newline). */
  text(): string {
    const lines = this.lines()
    let next = lines.next()
    while (!next.done) next = lines.next()
    return next.value.join('\n')
  }

  /** `text()`, letting the event loop turn every SERIES_PER_TURN series. */
  async textInTurns(): Promise<string> {
    const lines = this.lines()
    let next = lines.next()
    while (!next.done) {
      await nextTurn()
      next = lines.next()
    }
    return next.value.join('\n')
  }

  /** Builds the lines, pausing (yielding) every SERIES_PER_TURN series; returns them all. */
  private *lines(): Generator<void, string[], void> {
    const name = this.familyName
    const lines = [`# HELP ${name} ${escapeText(this.familyHelp)}`, `# TYPE ${name} gauge`]
    const last = this.familyLabels.length - 1
    // `name{a="..",b="..",` up to the last label, kept while the series that follow share those
    // values (a state set's series differ in their last label only): most lines are then one
    // concatenation, and a scrape makes far less garbage.
    const heads = this.familyLabels.map((l, i) => `${i === 0 ? '{' : ','}${l}="`)
    let before: readonly string[] | null = null
    let prefix = ''
    let count = 0
    for (const [values, value] of this.series()) {
      if (last < 0) lines.push(`${name} ${valueText(value)}`)
      else {
        let same = before !== null
        for (let i = 0; same && i < last; i++) same = values[i] === (before as readonly string[])[i]
        if (!same) {
          prefix = name
          for (let i = 0; i < last; i++) prefix += `${heads[i]}${escapeLabelValue(values[i] ?? '')}"`
        }
        before = values
        lines.push(`${prefix}${heads[last]}${escapeLabelValue(values[last] ?? '')}"} ${valueText(value)}`)
      }
      if (++count % SERIES_PER_TURN === 0) yield
    }
    return lines
  }

  override async get() {
    const out = await super.get()
    const values: { labels: Partial<Record<L, string>>; value: number }[] = []
    for (const [labelValues, value] of this.series()) {
      const labels: Partial<Record<L, string>> = {}
      for (const [i, l] of this.familyLabels.entries()) labels[l] = labelValues[i] ?? ''
      values.push({ labels, value })
    }
    return { ...out, values }
  }
}

/**
 * The hub's registry. A SeriesGauge is written by itself, every other metric by prom-client; a
 * scrape (`metrics()`) renders one family at a time and lets the event loop turn between families
 * and within a SeriesGauge, so that no scrape holds ingest for long (at 10,000 nodes a scrape in
 * one go held it 2 s); families that ask for the same data during one scrape share it
 * (`oncePerScrape`). It hooks the method prom-client 15's Registry renders a metric with, also in
 * `getSingleMetricAsString()` (metrics.test.ts checks the hook is taken). The hub sets no default
 * labels and serves the Prometheus text format, which SeriesGauge.text() assumes.
 */
export class HubRegistry extends Registry {
  /** The scrape under way, while `metrics()` renders. */
  private scrape: object | null = null

  getMetricsAsString(metric: Metric): Promise<string> {
    if (metric instanceof SeriesGauge) return Promise.resolve(metric.text())
    return promClientMetricText.call(this, metric)
  }

  override async metrics(): Promise<string> {
    if (this.contentType !== Registry.PROMETHEUS_CONTENT_TYPE) return super.metrics()
    const scrape = {}
    this.scrape = scrape
    try {
      const families: string[] = []
      // The registered metrics themselves (prom-client types them as plain objects).
      for (const metric of this.getMetricsAsArray() as unknown as Metric[]) {
        families.push(
          metric instanceof SeriesGauge
            ? await metric.textInTurns()
            : await promClientMetricText.call(this, metric),
        )
        await nextTurn()
      }
      return `${families.join('\n\n')}\n`
    } finally {
      if (this.scrape === scrape) this.scrape = null
    }
  }

  /**
   * `compute` at most once per scrape: the value computed during the scrape under way, or a fresh
   * one when none is (a scrape of one family, a test).
   */
  oncePerScrape<T>(compute: () => T): () => T {
    // Kept no longer than the scrape that computed it.
    const computed = new WeakMap<object, { value: T }>()
    return () => {
      const scrape = this.scrape
      if (scrape === null) return compute()
      let entry = computed.get(scrape)
      if (!entry) {
        entry = { value: compute() }
        computed.set(scrape, entry)
      }
      return entry.value
    }
  }
}

const promClientMetricText = (
  Registry.prototype as unknown as { getMetricsAsString(this: Registry, metric: Metric): Promise<string> }
).getMetricsAsString

/** Lets the event loop turn (I/O, timers) before going on. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** As prom-client escapes HELP text. */
function escapeText(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
}

const NEEDS_ESCAPE = /[\\\n"]/

/** As prom-client escapes a label value; most need nothing, and are tested for that first. */
function escapeLabelValue(value: string): string {
  return NEEDS_ESCAPE.test(value) ? escapeText(value).replace(/"/g, '\\"') : value
}

/** As prom-client writes a value. */
function valueText(value: number): string {
  if (Number.isNaN(value)) return 'Nan'
  if (!Number.isFinite(value)) return value < 0 ? '-Inf' : '+Inf'
  return `${value}`
}

/**
 * Every hub metric, registered once. Names follow Prometheus conventions: `vigil_` prefix, base
 * units (seconds, bytes), `_total` for counters; no unbounded ids in labels (node names are
 * bounded by the cluster's size; command ids never appear).
 */
export class HubMetrics {
  readonly registry: HubRegistry = new HubRegistry()

  readonly heartbeatsReceived = new Counter({
    name: 'vigil_heartbeats_received_total',
    help: 'Heartbeats accepted from agents.',
    registers: [this.registry],
  })
  readonly heartbeatsMissed = new Counter({
    name: 'vigil_heartbeats_missed_total',
    help: "Heartbeats never received, counted from gaps in agents' sequence numbers.",
    registers: [this.registry],
  })
  readonly messagesReceived = new Counter({
    name: 'vigil_messages_received_total',
    help: 'Messages accepted from agents, by channel.',
    labelNames: ['channel'] as const,
    registers: [this.registry],
  })
  readonly messagesRejected = new Counter({
    name: 'vigil_messages_rejected_total',
    help: 'Messages rejected before anything was stored, by reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  })
  readonly ingestDuration = new Histogram({
    name: 'vigil_ingest_duration_seconds',
    help: 'Time the hub spends decoding and applying one message.',
    buckets: [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01],
    registers: [this.registry],
  })
  readonly heartbeatDelay = new Histogram({
    name: 'vigil_heartbeat_delay_seconds',
    help: 'From an agent sending a heartbeat (its wall clock) to the hub state reflecting it; includes clock skew.',
    buckets: [
      0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5,
      1, 2.5,
    ],
    registers: [this.registry],
  })
  readonly commandsSent = new Counter({
    name: 'vigil_commands_total',
    help: 'Commands sent to agents, by action and outcome.',
    labelNames: ['action', 'status'] as const,
    registers: [this.registry],
  })
  readonly commandLateResults = new Counter({
    name: 'vigil_command_late_results_total',
    help: 'Results that came after the hub stopped waiting (or from an earlier run of the hub), recorded and passed to the engine.',
    labelNames: ['action', 'status'] as const,
    registers: [this.registry],
  })
  readonly commandRoundTrip = new Histogram({
    name: 'vigil_command_round_trip_seconds',
    help: 'From publishing a command to receiving its result (a live migration takes minutes).',
    labelNames: ['action'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 1800],
    registers: [this.registry],
  })
  readonly liveClients = new Gauge({
    name: 'vigil_live_feed_clients',
    help: 'Connected live feed (WebSocket) clients.',
    registers: [this.registry],
  })
  readonly brokerConnected = new Gauge({
    name: 'vigil_broker_connected',
    help: '1 while the hub is connected to its MQTT broker.',
    registers: [this.registry],
  })

  constructor(sources: {
    /** Nodes with their latest facts and observations, re-exported as agent metrics. */
    nodes: () => NodeView[]
    brokerClients: () => number | null
    epoch: () => number
    /** The hub group as this hub sees it, or null for a hub alone. */
    group: () => GroupView | null
    /** The state of each part of the hub (store, broker, engine, group). */
    parts: () => PartView[]
  }) {
    collectDefaultMetrics({ register: this.registry, prefix: 'vigil_hub_' })
    const nodes = this.registry.oncePerScrape(sources.nodes)
    for (const reason of HUB_REJECT_REASONS) this.messagesRejected.inc({ reason }, 0)
    new Gauge({
      name: 'vigil_node_shutdown',
      help: "Every node the hub knows: 1 while its agent has announced a clean shutdown (and no new run of it was heard), 0 otherwise. Its state is the engine's (vigil_node_condition).",
      labelNames: ['node'] as const,
      registers: [this.registry],
      collect() {
        this.reset()
        for (const n of nodes()) this.set({ node: n.id }, n.shutdownAt === null ? 0 : 1)
      },
    })
    new Gauge({
      name: 'vigil_broker_clients',
      help: 'Clients connected to the MQTT broker (embedded: exact; mosquitto: from $SYS, refreshed by the broker).',
      registers: [this.registry],
      collect() {
        const n = sources.brokerClients()
        if (n !== null) this.set(n)
      },
    })
    registerAgentMetrics(this.registry, nodes)
    new Gauge({
      name: 'vigil_hub_epoch',
      help: "The epoch this hub's commands carry: alone, increases at every start; in a hub group, the leadership's etcd revision (0 on a hub that never led).",
      registers: [this.registry],
      collect() {
        this.set(sources.epoch())
      },
    })
    new Gauge({
      name: 'vigil_hub_leader',
      help: '1 while this hub acts (a hub alone, or the leader of its hub group), 0 on a standby.',
      registers: [this.registry],
      collect() {
        const g = sources.group()
        this.set(g === null || g.role === 'leader' ? 1 : 0)
      },
    })
    new Gauge({
      name: 'vigil_hub_lease_remaining_seconds',
      help: "Hub group: how long the leader's lease is certainly alive without another renewal (absent on a standby).",
      registers: [this.registry],
      collect() {
        this.reset()
        const ms = sources.group()?.leaseRemainingMs
        if (ms !== null && ms !== undefined) this.set(ms / 1000)
      },
    })
    new Gauge({
      name: 'vigil_hub_part_up',
      help: 'Each part the hub needs (store, broker, engine, group): 1 while up, 0 while starting or failed (/healthz and /readyz say why).',
      labelNames: ['part'] as const,
      registers: [this.registry],
      collect() {
        for (const p of sources.parts()) this.set({ part: p.part }, p.state === 'up' ? 1 : 0)
      },
    })
    new Gauge({
      name: 'vigil_hub_etcd_reachable',
      help: 'Hub group: 1 while the last etcd request of this hub was answered.',
      registers: [this.registry],
      collect() {
        this.reset()
        const g = sources.group()
        if (g) this.set(g.etcd.reachable ? 1 : 0)
      },
    })
  }

  readonly pauses = new Counter({
    name: 'vigil_hub_pauses_total',
    help: 'Times the hub stood still (its process frozen, or its event loop blocked) for longer than watchdog.pauseMs: its failure detectors were re-armed each time.',
    registers: [this.registry],
  })

  readonly takeovers = new Counter({
    name: 'vigil_hub_takeovers_total',
    help: 'Hub group: times this hub took over the leadership (resumed the group state and acted).',
    registers: [this.registry],
  })

  readonly prunedRows = new Counter({
    name: 'vigil_store_pruned_rows_total',
    help: 'Rows of history older than store.retention.maxAgeDays deleted from the database, by table (the audit log is never pruned).',
    labelNames: ['table'] as const,
    registers: [this.registry],
  })

  readonly storeSize = new Gauge({
    name: 'vigil_store_size_bytes',
    help: "The hub database's size on disk (pages in use and free), read after each prune.",
    registers: [this.registry],
  })
}

const CHECK_STATES = ['running', 'stopped', 'failed', 'paused', 'suspended', 'unknown'] as const

/**
 * What agents observe, re-exported by the hub at scrape time from the latest batch of each node.
 * Agents stay tiny (no HTTP server, no second scrape target to secure) and Prometheus needs one
 * target; cardinality is bounded by the checks the agents' config files declare.
 */
function registerAgentMetrics(registry: Registry, nodes: () => NodeView[]): void {
  const registers = [registry]
  new Gauge({
    name: 'vigil_agent_info',
    help: 'One per node whose agent said hello: its version (version skew shows as several values).',
    labelNames: ['node', 'version'] as const,
    registers,
    collect() {
      this.reset()
      for (const n of nodes()) if (n.agentVersion) this.set({ node: n.id, version: n.agentVersion }, 1)
    },
  })
  // One series per node, check and state, or per node, check and number: the largest families.
  new SeriesGauge({
    name: 'vigil_check_state',
    help: "Each agent check's latest monitor result: 1 for its current state, 0 for the others.",
    labelNames: ['node', 'driver', 'target', 'state'] as const,
    registers,
    *series() {
      for (const n of nodes())
        for (const o of distinctChecks(n.observations))
          for (const state of CHECK_STATES)
            yield [[n.id, o.driver, o.target, state], o.state === state ? 1 : 0]
    },
  })
  new SeriesGauge({
    name: 'vigil_check_value',
    help: "Numbers an agent check reports with its result (a disk probe's latency, a process's RSS, a NIC's errors), by name; units are in each driver's README.",
    labelNames: ['node', 'driver', 'target', 'metric'] as const,
    registers,
    *series() {
      for (const n of nodes())
        for (const o of distinctChecks(n.observations))
          for (const [metric, value] of Object.entries(o.metrics ?? {}))
            yield [[n.id, o.driver, o.target, metric], value]
    },
  })
  new Gauge({
    name: 'vigil_vm_info',
    help: 'Where each vm is and what runs it: 1 per vm and node whose agent reports it running, paused or failed there, with its hypervisor (kvm, qemu, xen, vsphere); copies stopped on other nodes are left out.',
    labelNames: ['resource', 'node', 'hypervisor'] as const,
    registers,
    collect() {
      this.reset()
      for (const s of vmSightings(nodes()))
        if (s.state === 'running' || s.state === 'paused' || s.state === 'suspended' || s.state === 'failed')
          this.set({ resource: s.resource, node: s.node, hypervisor: s.hypervisor }, 1)
    },
  })
  new Gauge({
    name: 'vigil_node_load1',
    help: "A node's one-minute load average, from its agent's facts.",
    labelNames: ['node'] as const,
    registers,
    collect() {
      this.reset()
      for (const n of nodes()) if (n.facts) this.set({ node: n.id }, n.facts.load[0])
    },
  })
  new Gauge({
    name: 'vigil_node_memory_available_bytes',
    help: "A node's available memory, from its agent's facts.",
    labelNames: ['node'] as const,
    registers,
    collect() {
      this.reset()
      for (const n of nodes()) if (n.facts) this.set({ node: n.id }, n.facts.memory.availableBytes)
    },
  })
}

/**
 * A node's observations with one per check (driver and target), the last where an agent listed
 * one twice (nothing in the protocol forbids it): each check's series are then written once.
 */
function distinctChecks(observations: readonly Observation[]): readonly Observation[] {
  if (observations.length < 2) return observations
  const last = new Map<string, number>()
  for (const [i, o] of observations.entries()) last.set(`${o.driver}\0${o.target}`, i)
  if (last.size === observations.length) return observations
  return observations.filter((o, i) => last.get(`${o.driver}\0${o.target}`) === i)
}

/** Process metrics from prom-client's defaults: listed once in the catalog, not one by one. */
export const DEFAULT_METRIC_PREFIXES = ['vigil_hub_process_', 'vigil_hub_nodejs_']

/**
 * docs/metrics.md, rendered from the registry of a running hub: the catalog cannot drift from the
 * code (a test compares the two; `VIGIL_UPDATE=1` rewrites the file).
 */
export function renderMetricsCatalog(registry: Registry): string {
  const metrics = registry
    .getMetricsAsArray()
    .filter((m) => !DEFAULT_METRIC_PREFIXES.some((p) => m.name.startsWith(p)))
    .sort((a, b) => a.name.localeCompare(b.name))
  const rows = metrics.map((m) => {
    const labels = (m as unknown as { labelNames?: string[] }).labelNames ?? []
    const help = m.help.replaceAll('|', '\\|')
    return `| \`${m.name}\` | ${m.type} | ${labels.map((l) => `\`${l}\``).join(', ')} | ${help} |`
  })
  return [
    '# Metrics',
    '',
    "<!-- Generated from the hub's registry by apps/hub/src/metrics-catalog.test.ts; run it with VIGIL_UPDATE=1 to rewrite. -->",
    '',
    'The hub serves every metric at `GET /metrics` (Prometheus text format); agents expose none of',
    'their own: the hub re-exports what they observe (`vigil_check_*`, `vigil_agent_info`,',
    '`vigil_vm_info`, `vigil_node_load1`, `vigil_node_memory_available_bytes`) from their latest',
    'batches. One scrape target to secure and to configure, and agents stay without an HTTP server.',
    '',
    'Conventions: `vigil_` prefix, base units (`_seconds`, `_bytes`), `_total` for counters. Labels',
    'are node, resource and device names (bounded by the cluster file), check targets (bounded by the',
    "agents' config files) and closed sets (state, condition, phase, kind, rule, result, channel,",
    'hypervisor). No label carries a command id, decision id or time. State-set gauges',
    '(`vigil_node_condition`, `vigil_check_state`) export every state with 0 or 1, so an alert can',
    'match `== 1`.',
    '',
    `Besides these, the hub exports prom-client's process metrics with the prefix \`vigil_hub_\``,
    '(`vigil_hub_process_cpu_seconds_total`, `vigil_hub_process_resident_memory_bytes`,',
    '`vigil_hub_nodejs_eventloop_lag_seconds`, ...).',
    '',
    '| Name | Type | Labels | Meaning |',
    '|---|---|---|---|',
    ...rows,
    '',
  ].join('\n')
}
