import { REJECT_REASONS } from '@vigil/protocol'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import { NODE_STATES, type NodeState } from './liveness.js'

/** Hub-side reasons on top of the protocol's decode reasons. Closed set: a metric label. */
export const HUB_REJECT_REASONS = [...REJECT_REASONS, 'stale_incarnation'] as const
export type HubRejectReason = (typeof HUB_REJECT_REASONS)[number]

/**
 * Every hub metric, registered once. Names follow Prometheus conventions: `vigil_` prefix, base
 * units (seconds, bytes), `_total` for counters; no unbounded ids in labels (node names are
 * bounded by the cluster's size; command ids never appear).
 */
export class HubMetrics {
  readonly registry = new Registry()

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
  readonly nodeStateChanges = new Counter({
    name: 'vigil_node_state_changes_total',
    help: 'Node liveness transitions, by the state entered.',
    labelNames: ['state'] as const,
    registers: [this.registry],
  })
  readonly commandsSent = new Counter({
    name: 'vigil_commands_total',
    help: 'Commands sent to agents, by action and outcome.',
    labelNames: ['action', 'status'] as const,
    registers: [this.registry],
  })
  readonly commandRoundTrip = new Histogram({
    name: 'vigil_command_round_trip_seconds',
    help: 'From publishing a command to receiving its result.',
    labelNames: ['action'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
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
    nodeStates: () => Map<NodeState, number>
    brokerClients: () => number | null
    epoch: number
  }) {
    collectDefaultMetrics({ register: this.registry, prefix: 'vigil_hub_' })
    for (const reason of HUB_REJECT_REASONS) this.messagesRejected.inc({ reason }, 0)
    new Gauge({
      name: 'vigil_nodes',
      help: 'Nodes known to the hub, by liveness state.',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        const counts = sources.nodeStates()
        for (const state of NODE_STATES) this.set({ state }, counts.get(state) ?? 0)
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
    new Gauge({
      name: 'vigil_hub_epoch',
      help: "This hub process's epoch; increases at every start and is carried by every command.",
      registers: [this.registry],
    }).set(sources.epoch)
  }
}
