import type { Input } from '@vigil/engine'
import { type Clock, type Logger, RateLimitedLog } from '@vigil/kit'
import {
  type AGENT_CHANNELS,
  type AgentEvent,
  type ChannelPayload,
  type CommandResult,
  type DecodeError,
  decode,
  type Facts,
  type Heartbeat,
  type ObservationBatch,
  parseTopic,
  type Status,
} from '@vigil/protocol'
import type { HubMetrics, HubRejectReason } from './metrics.js'
import type { LiveNode, NodeTable, StateChange } from './nodes.js'
import { SeqWindow } from './seq-window.js'
import type { EventRow, HubStore, NewEvent } from './store.js'

type AgentChannel = (typeof AGENT_CHANNELS)[number]

export interface IngestSinks {
  onStateChange(change: StateChange): void
  onNodeUpdated(nodeId: string): void
  onEvent(event: EventRow): void
  onCommandResult(result: CommandResult): void
  /** What the engine hears: heartbeats and observations, as engine inputs. */
  onEngineInput(input: Input): void
  /** A heartbeat's delay from its agent's send to now (the status page's history keeps the worst). */
  onHeartbeatDelay?(node: string, delayMs: number): void
  /**
   * Checks an agent's announced isolation response against the hub's timings; returns what is
   * wrong, naming the agent's key (undefined: it fits, or there is nothing to check against).
   */
  isolationProblem?(
    node: string,
    isolation: NonNullable<Status['isolation']>,
  ): { key: string; message: string } | undefined
}

/**
 * Turns raw broker messages into node state. Everything is decoded and validated before anything
 * is stored; rejected input is counted by reason and logged at most once a second per reason.
 */
export class Ingest {
  private readonly rejectLog: RateLimitedLog
  /** The last shared-disk heartbeat counter seen per node (any reporter). */
  private readonly diskCounters = new Map<string, { incarnation: number; counter: number }>()
  /** Last guest heartbeat count per node and vm (see guestHeartbeats). */
  private readonly guestCounters = new Map<string, number>()
  /** The incarnation whose isolation timing was last checked, per node. */
  private readonly isolationChecked = new Map<string, number>()

  constructor(
    private readonly cluster: string,
    private readonly table: NodeTable,
    private readonly store: HubStore,
    private readonly metrics: HubMetrics,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly sinks: IngestSinks,
  ) {
    this.rejectLog = new RateLimitedLog(1000, () => clock.monoMs())
  }

  handle(topic: string, payload: Buffer): void {
    const started = this.clock.monoMs()
    const parsed = parseTopic(topic)
    if (!parsed || parsed.cluster !== this.cluster) {
      this.reject(
        { reason: 'unknown_topic', message: 'topic is not part of protocol v1 for this cluster' },
        topic,
      )
      return
    }
    if (parsed.channel === 'cmd') return // our own commands, echoed back by the broker
    const { node: nodeId, channel } = parsed
    const accept = <C extends AgentChannel>(c: C): ChannelPayload<C> | null => {
      const d = decode(c, payload, nodeId)
      if (d.ok) return d.value
      this.reject(d.error, topic)
      return null
    }
    switch (channel) {
      case 'hb': {
        const hb = accept('hb')
        if (!hb) return
        this.onHeartbeat(hb, topic)
        break
      }
      case 'status': {
        const status = accept('status')
        if (!status) return
        this.onStatus(status, topic)
        break
      }
      case 'facts': {
        const facts = accept('facts')
        if (!facts) return
        this.onFacts(facts)
        break
      }
      case 'obs': {
        const batch = accept('obs')
        if (!batch) return
        this.onObservations(batch)
        break
      }
      case 'event': {
        const event = accept('event')
        if (!event) return
        this.onAgentEvent(event, topic)
        break
      }
      case 'ack': {
        const result = accept('ack')
        if (!result) return
        this.sinks.onCommandResult(result)
        break
      }
    }
    this.metrics.messagesReceived.inc({ channel })
    this.metrics.ingestDuration.observe((this.clock.monoMs() - started) / 1000)
  }

  private onHeartbeat(hb: Heartbeat, topic: string): void {
    const nowMono = this.clock.monoMs()
    const nowWall = this.clock.wallMs()
    const { node } = this.table.ensure(hb.node, nowMono, nowWall)
    if (!this.acceptIncarnation(node, hb.incarnation, topic, nowWall)) return
    if (node.lastSeq !== null && hb.seq > node.lastSeq + 1)
      this.metrics.heartbeatsMissed.inc(hb.seq - node.lastSeq - 1)
    if (node.lastSeq === null || hb.seq > node.lastSeq) node.lastSeq = hb.seq
    node.lastHeardMono = nowMono
    node.row.lastHeartbeatAt = nowWall
    node.heartbeatDirty = true
    node.willReceived = false
    const change = this.table.transition(node, 'online', nowWall, 'heartbeat received')
    if (change) this.commitChange(node, change)
    this.sinks.onEngineInput({ type: 'heartbeat', node: hb.node })
    if (hb.hears) this.sinks.onEngineInput({ type: 'peer-view', node: hb.node, hears: hb.hears })
    // A node's disk heartbeat is alive while its counter goes up, whoever read it. The first
    // sighting only sets the baseline: an old slot proves nothing.
    for (const d of hb.disk ?? []) {
      const last = this.diskCounters.get(d.node)
      if (
        last &&
        (d.incarnation < last.incarnation ||
          (d.incarnation === last.incarnation && d.counter <= last.counter))
      )
        continue
      const first = last === undefined
      this.diskCounters.set(d.node, { incarnation: d.incarnation, counter: d.counter })
      if (!first) this.sinks.onEngineInput({ type: 'disk-heartbeat', node: d.node })
    }
    this.metrics.heartbeatsReceived.inc()
    const delayMs = Math.max(0, nowWall - hb.sentAt)
    this.metrics.heartbeatDelay.observe(delayMs / 1000)
    this.sinks.onHeartbeatDelay?.(hb.node, delayMs)
  }

  /**
   * A higher incarnation means the agent restarted: recorded, and sequence tracking restarts.
   * A lower one is a delayed message from a previous run and is rejected.
   */
  private acceptIncarnation(node: LiveNode, incarnation: number, topic: string, nowWall: number): boolean {
    const current = node.row.incarnation
    if (current !== null && incarnation < current) {
      this.reject(
        { reason: 'stale_incarnation', message: `incarnation ${incarnation} is older than ${current}` },
        topic,
      )
      return false
    }
    if (current !== incarnation) {
      node.row.incarnation = incarnation
      node.lastSeq = null
      node.events = new SeqWindow()
      this.store.saveNode(node.row)
      if (current !== null) {
        this.appendEvent({
          at: nowWall,
          node: node.row.id,
          source: 'hub',
          kind: 'node.restarted',
          severity: 'warning',
          message: `agent restarted: incarnation ${current} -> ${incarnation}`,
          attrs: { previousIncarnation: current, incarnation },
        })
        // Commands the old agent had not answered died with it: the engine sends them again.
        this.sinks.onEngineInput({ type: 'agent-restarted', node: node.row.id })
      }
    }
    return true
  }

  private onStatus(status: Status, topic: string): void {
    const nowWall = this.clock.wallMs()
    const { node } = this.table.ensure(status.node, this.clock.monoMs(), nowWall)
    // Retained messages from an earlier run arrive at hub start; they describe history, not now.
    if (node.row.incarnation !== null && status.incarnation < node.row.incarnation) return
    if (!this.acceptIncarnation(node, status.incarnation, topic, nowWall)) return
    node.row.role = status.role
    node.row.agentVersion = status.agentVersion
    node.row.capabilities = status.capabilities
    if (status.state === 'online' && status.isolation) this.checkIsolation(node, status.isolation, nowWall)
    // Each action's deadline is the one its driver declares: the engine waits that long (plus a
    // margin) for a result, instead of a cluster-wide guess that a long migration outlasts.
    if (status.state === 'online' && status.actionTimeouts)
      this.sinks.onEngineInput({
        type: 'action-timeouts',
        node: status.node,
        resources: status.actionTimeouts,
      })
    if (status.state === 'offline') {
      const change = this.table.transition(node, 'offline', nowWall, 'agent announced a clean shutdown')
      if (change) this.commitChange(node, change)
    } else if (status.state === 'gone') {
      node.willReceived = true
    }
    this.store.saveNode(node.row)
    this.sinks.onNodeUpdated(node.row.id)
  }

  private onFacts(facts: Facts): void {
    const nowWall = this.clock.wallMs()
    const { node } = this.table.ensure(facts.node, this.clock.monoMs(), nowWall)
    if (node.row.incarnation !== null && facts.incarnation < node.row.incarnation) return
    node.row.facts = facts
    this.store.saveNode(node.row)
    this.sinks.onNodeUpdated(node.row.id)
  }

  /**
   * What the nic and ping drivers saw, as the engine's node-level inputs: a node with a link down
   * or degraded (a bond lost a slave, a flapping NIC) is placed on last; connectivity (targets
   * reached, summed over its ping resources) scores it against the others, like pingd.
   */
  /**
   * What a node's agent says of the node's own footing becomes its link state: its NICs (a link
   * down, a bond short of a slave) and, on vSphere, its ESX host as vCenter sees it (not
   * responding, a datastore out of reach). Degraded is one channel, never a verdict: the node stays
   * healthy and is placed on last.
   */
  private linkAndConnectivity(batch: ObservationBatch): void {
    const nics = batch.observations.filter(
      (o) => (o.driver === 'nic' || o.driver === 'vsphere-host') && o.state !== 'unknown',
    )
    if (nics.length > 0) {
      const bad = nics.filter((o) => o.state === 'failed' || o.metrics?.degraded === 1)
      this.sinks.onEngineInput({
        type: 'link-state',
        node: batch.node,
        degraded: bad.length > 0,
        detail: bad.map((o) => o.detail ?? `${o.target} ${o.state}`).join('; ') || 'all links up',
      })
    }
    const pings = batch.observations.filter(
      (o) => o.driver === 'ping' && o.metrics?.total !== undefined && o.metrics.reachable !== undefined,
    )
    if (pings.length > 0)
      this.sinks.onEngineInput({
        type: 'connectivity',
        node: batch.node,
        reachable: pings.reduce((sum, o) => sum + (o.metrics?.reachable ?? 0), 0),
        total: pings.reduce((sum, o) => sum + (o.metrics?.total ?? 0), 0),
      })
  }

  /**
   * A vm's guest heartbeat (the libvirt driver's `guestHeartbeats` counter) is alive while the
   * counter goes up; the first sighting on a node only sets the baseline, and a counter that went
   * down (the agent restarted) sets it again.
   */
  private guestHeartbeats(batch: ObservationBatch): void {
    for (const o of batch.observations) {
      const count = o.metrics?.guestHeartbeats
      if (count === undefined || o.state !== 'running') continue
      const key = `${batch.node}\u0000${o.target}`
      const last = this.guestCounters.get(key)
      this.guestCounters.set(key, count)
      if (last !== undefined && count > last)
        this.sinks.onEngineInput({ type: 'guest-heartbeat', resource: o.target })
    }
  }

  private onObservations(batch: ObservationBatch): void {
    const { node } = this.table.ensure(batch.node, this.clock.monoMs(), this.clock.wallMs())
    if (node.row.incarnation !== null && batch.incarnation < node.row.incarnation) return
    node.observations = batch.observations
    this.linkAndConnectivity(batch)
    this.guestHeartbeats(batch)
    // A complete batch becomes an inventory (anything not listed is not on this node), unless a
    // monitor failed: then nothing can be concluded about what is absent.
    if (batch.complete && batch.observations.every((o) => o.state !== 'unknown')) {
      const resources: Record<string, 'running' | 'failed' | 'paused'> = {}
      const reasons: Record<string, string> = {}
      for (const o of batch.observations)
        if (o.state === 'running' || o.state === 'failed' || o.state === 'paused') {
          resources[o.target] = o.state
          // A failure's detail is its why (a check vouching for it, a crash): the engine records it.
          if (o.state === 'failed' && o.detail) reasons[o.target] = o.detail
        }
      this.sinks.onEngineInput({
        type: 'inventory',
        node: batch.node,
        resources,
        ...(Object.keys(reasons).length > 0 ? { reasons } : {}),
      })
      return
    }
    for (const o of batch.observations) {
      if (o.state === 'unknown') continue // the monitor itself failed: no evidence either way
      this.sinks.onEngineInput({
        type: 'resource-state',
        node: batch.node,
        resource: o.target,
        state: o.state,
        ...(o.detail ? { reason: o.detail } : {}),
      })
    }
  }

  private onAgentEvent(event: AgentEvent, topic: string): void {
    const nowWall = this.clock.wallMs()
    const { node, created } = this.table.ensure(event.node, this.clock.monoMs(), nowWall)
    if (created) this.store.saveNode(node.row)
    // An event can be the first message of a new run (sent before its first heartbeat).
    if (node.row.incarnation === null || event.incarnation > node.row.incarnation) {
      this.acceptIncarnation(node, event.incarnation, topic, nowWall)
    }
    if (event.incarnation === node.row.incarnation && !node.events.accept(event.seq)) return // a resend
    this.appendEvent({
      at: event.at,
      node: event.node,
      source: 'agent',
      kind: event.kind,
      severity: event.severity,
      message: event.message,
      attrs: { ...event.attrs, incarnation: event.incarnation, seq: event.seq },
    })
  }

  commitChange(node: LiveNode, change: StateChange): void {
    this.store.saveNode(node.row)
    this.metrics.nodeStateChanges.inc({ state: change.to })
    this.appendEvent({
      at: change.at,
      node: change.node,
      source: 'hub',
      kind: 'node.state',
      severity: change.to === 'lost' ? 'critical' : change.to === 'suspect' ? 'warning' : 'info',
      message: `${change.from} -> ${change.to}: ${change.reason}`,
      attrs: { from: change.from, to: change.to },
    })
    this.log.info(
      { node: change.node, from: change.from, to: change.to, reason: change.reason },
      'node state changed',
    )
    this.sinks.onStateChange(change)
  }

  /** Once per incarnation: a birth message is repeated on every reconnect. */
  private checkIsolation(node: LiveNode, isolation: NonNullable<Status['isolation']>, nowWall: number): void {
    const incarnation = node.row.incarnation ?? 0
    if (this.isolationChecked.get(node.row.id) === incarnation) return
    this.isolationChecked.set(node.row.id, incarnation)
    const problem = this.sinks.isolationProblem?.(node.row.id, isolation)
    if (!problem) return
    this.log.warn(
      { node: node.row.id, key: problem.key, detail: problem.message },
      'isolation timing conflict',
    )
    this.appendEvent({
      at: nowWall,
      node: node.row.id,
      source: 'hub',
      kind: 'config.isolation-late',
      severity: 'warning',
      message: problem.message,
      attrs: { key: problem.key, ...isolation },
    })
  }

  private appendEvent(e: NewEvent): void {
    this.sinks.onEvent(this.store.appendEvent(e))
  }

  private reject(
    error: DecodeError | { reason: HubRejectReason; message: string; field?: string },
    topic: string,
  ): void {
    this.metrics.messagesRejected.inc({ reason: error.reason })
    const suppressed = this.rejectLog.admit(error.reason)
    if (suppressed !== null) {
      this.log.warn(
        { reason: error.reason, field: error.field, topic, detail: error.message, suppressed },
        'message rejected',
      )
    }
  }
}
