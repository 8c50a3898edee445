import { AgentTranslation, type Input } from '@vigil/engine'
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
import type { LiveNode, NodeTable } from './nodes.js'
import { SeqWindow } from './seq-window.js'
import type { EventRow, HubStore, NewEvent } from './store.js'

type AgentChannel = (typeof AGENT_CHANNELS)[number]

export interface IngestSinks {
  /** What the hub shows of a node changed (its status, facts, a clean shutdown, a return). */
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
 * Turns raw broker messages into what the hub knows of each node (the node table, the event log)
 * and into the engine's inputs, which alone judge a node. Everything is decoded and validated before anything
 * is stored; rejected input is counted by reason and logged at most once a second per reason.
 */
export class Ingest {
  private readonly rejectLog: RateLimitedLog
  /** What the engine hears of each accepted message: the simulator's translation too. */
  private readonly translation = new AgentTranslation()
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
    const nowWall = this.clock.wallMs()
    const { node } = this.table.ensure(hb.node, nowWall)
    if (!this.acceptIncarnation(node, hb.incarnation, topic, nowWall)) return
    if (node.lastSeq !== null && hb.seq > node.lastSeq + 1)
      this.metrics.heartbeatsMissed.inc(hb.seq - node.lastSeq - 1)
    if (node.lastSeq === null || hb.seq > node.lastSeq) node.lastSeq = hb.seq
    node.row.lastHeartbeatAt = nowWall
    node.heartbeatDirty = true
    for (const input of this.translation.heartbeat(hb)) this.sinks.onEngineInput(input)
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
      const wasShutDown = node.row.shutdownAt !== null
      node.row.incarnation = incarnation
      // A new run of the agent: whatever shutdown the last one announced is over.
      this.table.setShutdown(node, null)
      node.lastSeq = null
      node.events = new SeqWindow()
      this.store.saveNode(node.row)
      if (wasShutDown) this.sinks.onNodeUpdated(node.row.id)
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
    const { node } = this.table.ensure(status.node, nowWall)
    // Retained messages from an earlier run arrive at hub start; they describe history, not now.
    if (node.row.incarnation !== null && status.incarnation < node.row.incarnation) return
    if (!this.acceptIncarnation(node, status.incarnation, topic, nowWall)) return
    node.row.role = status.role
    node.row.agentVersion = status.agentVersion
    node.row.capabilities = status.capabilities
    if (status.state === 'online' && status.isolation) this.checkIsolation(node, status.isolation, nowWall)
    // Each action's deadline is the one its driver declares: the engine waits that long (plus a
    // margin) for a result, instead of a cluster-wide guess that a long migration outlasts.
    for (const input of this.translation.status(status)) this.sinks.onEngineInput(input)
    // A clean shutdown is the agent's word, shown beside the engine's judgement (which still sees
    // only silence); a heartbeat of the same run after it is a straggler and does not undo it. `gone`
    // (the broker's last will) says nothing the engine does not hear for itself.
    if (status.state === 'offline' && node.row.shutdownAt === null) {
      this.table.setShutdown(node, nowWall)
      this.appendEvent({
        at: nowWall,
        node: node.row.id,
        source: 'hub',
        kind: 'node.shutdown',
        severity: 'info',
        message: 'the agent announced a clean shutdown',
        attrs: { incarnation: node.row.incarnation },
      })
      this.log.info(
        { node: node.row.id, incarnation: node.row.incarnation },
        'agent announced a clean shutdown',
      )
    } else if (status.state === 'online') this.table.setShutdown(node, null)
    this.store.saveNode(node.row)
    this.sinks.onNodeUpdated(node.row.id)
  }

  private onFacts(facts: Facts): void {
    const nowWall = this.clock.wallMs()
    const { node } = this.table.ensure(facts.node, nowWall)
    if (node.row.incarnation !== null && facts.incarnation < node.row.incarnation) return
    node.row.facts = facts
    this.store.saveNode(node.row)
    this.sinks.onNodeUpdated(node.row.id)
  }

  private onObservations(batch: ObservationBatch): void {
    const { node } = this.table.ensure(batch.node, this.clock.wallMs())
    if (node.row.incarnation !== null && batch.incarnation < node.row.incarnation) return
    node.observations = batch.observations
    for (const input of this.translation.observations(batch)) this.sinks.onEngineInput(input)
  }

  private onAgentEvent(event: AgentEvent, topic: string): void {
    const nowWall = this.clock.wallMs()
    const { node, created } = this.table.ensure(event.node, nowWall)
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
