import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import type { DecisionRecord } from '@vigil/engine'
import { type WebSocket, WebSocketServer } from 'ws'
import type { HubMetrics } from './metrics.js'
import type { NodeView } from './nodes.js'
import type { EventRow, FenceOpRow } from './store.js'

/**
 * Messages on the live feed (ws://<hub>/live), one JSON object per WebSocket text message:
 *   {type:"hello", protocol:1, nodes:NodeView[]}   first message: a snapshot
 *   {type:"node", node:NodeView}                     a node's condition, facts or status changed
 *   {type:"event", event:EventRow}                   an entry appended to the event log (a
 *                                                    node.condition event says from and to)
 *   {type:"decision", record:DecisionRecord}         a decision (or refusal) of the engine
 * The feed is read-only: anything a client sends is ignored.
 */
export type LiveMessage =
  | { type: 'hello'; protocol: 1; nodes: NodeView[] }
  | { type: 'node'; node: NodeView }
  | { type: 'event'; event: EventRow }
  | { type: 'decision'; record: DecisionRecord }
  /** One device's run of a fence (fence history row). */
  | { type: 'fence'; op: FenceOpRow }

/** Buffered bytes past which a slow client is dropped rather than growing hub memory. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024

export class LiveFeed {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 4096 })

  constructor(
    private readonly snapshot: () => NodeView[],
    private readonly metrics: HubMetrics,
  ) {
    this.wss.on('connection', (socket: WebSocket) => {
      this.metrics.liveClients.set(this.wss.clients.size)
      socket.on('close', () => this.metrics.liveClients.set(this.wss.clients.size))
      socket.on('error', () => socket.terminate())
      socket.send(
        JSON.stringify({ type: 'hello', protocol: 1, nodes: this.snapshot() } satisfies LiveMessage),
      )
    })
  }

  /**
   * Serves the feed on `path`. `authorize` gets the bearer token, from the Authorization header or,
   * for browsers (which cannot set headers on a WebSocket), the `token` query parameter.
   */
  attach(server: Server, path: string, authorize: (token: string | undefined) => boolean): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const url = new URL(req.url ?? '/', 'http://localhost')
      if (url.pathname !== path) {
        socket.destroy()
        return
      }
      if (!authorize(req.headers.authorization ?? url.searchParams.get('token') ?? undefined)) {
        socket.end(
          'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="vigil"\r\nContent-Length: 0\r\n\r\n',
        )
        return
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => this.wss.emit('connection', ws, req))
    })
  }

  broadcast(message: LiveMessage): void {
    if (this.wss.clients.size === 0) return
    const text = JSON.stringify(message)
    for (const client of this.wss.clients) {
      if (client.readyState !== client.OPEN) continue
      if (client.bufferedAmount > MAX_BUFFERED_BYTES) {
        client.terminate()
        continue
      }
      client.send(text)
    }
  }

  close(): void {
    for (const client of this.wss.clients) client.terminate()
    this.wss.close()
  }
}
