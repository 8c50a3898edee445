/**
 * The agent's edge events, in order. Contract: `emit` numbers each event (`seq` from 0 with each
 * incarnation) and publishes it at once if connected and nothing is waiting, else buffers it
 * (bounded: the oldest are dropped). A publish that fails puts its event back. `flush`, on each
 * (re)connection, sends everything buffered in `seq` order, then one `agent.events_dropped` event
 * counting what was dropped since the last report.
 */
import { BoundedQueue, type Clock, type Logger } from '@vigil/kit'
import type { AgentEvent } from '@vigil/protocol'

/** What a caller says; the outbox adds who, when and the sequence number. */
export type EventInput = Pick<AgentEvent, 'kind' | 'severity' | 'message'> & { attrs?: AgentEvent['attrs'] }

export interface EventOutboxDeps {
  clock: Clock
  log: Logger
  /** True while some broker is connected. */
  connected: () => boolean
  /** Publishes one event; `done` is called once, with an error if it was not taken. */
  publish: (event: AgentEvent, done: (err?: Error) => void) => void
}

export class EventOutbox {
  private readonly buffer: BoundedQueue<AgentEvent>
  private seq = 0
  private reportedDrops = 0

  constructor(
    private readonly source: { node: string; incarnation: number },
    capacity: number,
    private readonly deps: EventOutboxDeps,
  ) {
    this.buffer = new BoundedQueue<AgentEvent>(capacity)
  }

  /** Events waiting for a broker. */
  get size(): number {
    return this.buffer.size
  }

  /** Queue an edge event; sent now if connected, else buffered (bounded, oldest dropped). */
  emit(e: EventInput): void {
    const event: AgentEvent = {
      v: 1,
      node: this.source.node,
      incarnation: this.source.incarnation,
      seq: this.seq++,
      at: this.deps.clock.wallMs(),
      kind: e.kind,
      severity: e.severity,
      message: e.message,
      ...(e.attrs ? { attrs: e.attrs } : {}),
    }
    if (this.deps.connected() && this.buffer.size === 0) this.send(event)
    else this.buffer.push(event)
  }

  /** Sends what was buffered, then reports what had to be dropped; called on each connection. */
  flush(): void {
    const { buffer } = this
    // Drain before anything new is emitted, or a new event would evict a buffered one.
    // Sorted: a send that failed was put back after newer events; the hub expects seq order.
    const pending = buffer.drain().sort((x, y) => x.seq - y.seq)
    for (const event of pending) this.send(event)
    if (pending.length > 0) this.deps.log.info({ replayed: pending.length }, 'buffered events sent')
    const dropped = buffer.dropped - this.reportedDrops
    if (dropped > 0) {
      this.reportedDrops = buffer.dropped
      this.emit({
        kind: 'agent.events_dropped',
        severity: 'warning',
        message: `${dropped} events were dropped while the broker was unreachable (buffer capacity ${buffer.capacity})`,
        attrs: { dropped },
      })
    }
  }

  private send(event: AgentEvent): void {
    this.deps.publish(event, (err) => {
      if (err) this.buffer.unshiftAll([event])
    })
  }
}
