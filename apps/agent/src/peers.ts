import { createHmac, timingSafeEqual } from 'node:crypto'
import { createSocket, type Socket } from 'node:dgram'
import type { Clock, Logger } from '@vigil/kit'
import { readSecretFile } from '@vigil/kit'
import { nameSchema } from '@vigil/protocol'
import { z } from 'zod'

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port, e.g. 10.0.0.11:7480')

export const peersSchema = z
  .strictObject({
    /** Where this agent listens for its peers' heartbeats (UDP). Unset: no peer mesh. */
    listen: hostPort.optional(),
    /** The other host agents and where they listen. */
    mesh: z
      .array(z.strictObject({ node: nameSchema, address: hostPort }))
      .max(255)
      .default([]),
    intervalMs: z.number().int().min(20).max(60_000).default(100),
    /** A peer not heard for this long is no longer reported as heard. */
    deadAfterMs: z.number().int().min(50).max(600_000).default(400),
    /** File holding a shared key: datagrams are signed (HMAC-SHA256) and unsigned ones dropped. */
    keyFile: z.string().min(1).optional(),
  })
  .prefault({})
  .refine((p) => p.deadAfterMs > 2 * p.intervalMs, {
    message: 'must be more than twice intervalMs (one lost datagram must not make a peer silent)',
    path: ['deadAfterMs'],
  })
export type PeersConfig = z.output<typeof peersSchema>

interface PeerBeat {
  v: 1
  c: string
  n: string
  i: number
  s: number
}

const MAX_DATAGRAM = 512

function split(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':')
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) }
}

/**
 * A lightweight UDP heartbeat mesh between host agents, independent of the broker: each agent sends
 * a small datagram to every peer every `intervalMs` and reports, in its heartbeats to the hub, which
 * peers it heard within `deadAfterMs`. With it the hub tells a node cut from the hub only
 * (partitioned: never fenced) from a node nobody hears (dead). Datagrams from nodes outside the
 * mesh, of another cluster, replayed (old sequence), or unsigned when a key is set are dropped.
 */
export class PeerMesh {
  private socket: Socket | null = null
  private timer: NodeJS.Timeout | null = null
  private seq = 0
  private readonly key: Buffer | null
  private readonly lastHeard = new Map<string, { at: number; incarnation: number; seq: number }>()
  private readonly members: Map<string, { host: string; port: number }>
  dropped = 0

  constructor(
    private readonly config: PeersConfig,
    private readonly self: { cluster: string; node: string; incarnation: number },
    private readonly deps: { clock: Clock; log: Logger },
  ) {
    this.key = config.keyFile ? Buffer.from(readSecretFile(config.keyFile, 'peers.keyFile')) : null
    this.members = new Map(
      config.mesh.filter((p) => p.node !== self.node).map((p) => [p.node, split(p.address)]),
    )
  }

  get enabled(): boolean {
    return this.config.listen !== undefined
  }

  async start(): Promise<void> {
    if (!this.config.listen) return
    const { host, port } = split(this.config.listen)
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4')
    this.socket = socket
    socket.on('message', (msg, rinfo) => this.receive(msg, rinfo.address))
    socket.on('error', (err) => this.deps.log.warn({ err: err.message }, 'peer mesh socket error'))
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(port, host, () => {
        socket.off('error', reject)
        resolve()
      })
    })
    this.timer = setInterval(() => this.send(), this.config.intervalMs)
    this.send()
  }

  /** The peers heard within `deadAfterMs`, sorted. */
  hears(): string[] {
    const now = this.deps.clock.monoMs()
    return [...this.lastHeard.entries()]
      .filter(([, h]) => now - h.at <= this.config.deadAfterMs)
      .map(([node]) => node)
      .sort()
  }

  private sign(body: string): string {
    return createHmac('sha256', this.key as Buffer)
      .update(body)
      .digest('hex')
  }

  private send(): void {
    const beat: PeerBeat = {
      v: 1,
      c: this.self.cluster,
      n: this.self.node,
      i: this.self.incarnation,
      s: this.seq++,
    }
    const body = JSON.stringify(beat)
    const datagram = this.key ? `${body}\n${this.sign(body)}` : body
    for (const { host, port } of this.members.values()) this.socket?.send(datagram, port, host, () => {})
  }

  private receive(msg: Buffer, from: string): void {
    const why = this.accept(msg)
    if (why === null) return
    this.dropped++
    this.deps.log.debug({ from, why }, 'peer datagram dropped')
  }

  /** Records a valid beat; returns why a datagram is dropped, or null if it was accepted. */
  private accept(msg: Buffer): string | null {
    if (msg.length > MAX_DATAGRAM) return 'too large'
    const [body = '', mac] = msg.toString('utf8').split('\n')
    if (this.key) {
      const expected = Buffer.from(this.sign(body), 'hex')
      const given = Buffer.from(mac ?? '', 'hex')
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'bad signature'
    }
    let beat: PeerBeat
    try {
      beat = JSON.parse(body) as PeerBeat
    } catch {
      return 'not JSON'
    }
    if (beat?.v !== 1 || beat.c !== this.self.cluster) return 'other cluster or version'
    if (typeof beat.n !== 'string' || !this.members.has(beat.n)) return 'not a member of the mesh'
    if (!Number.isSafeInteger(beat.i) || !Number.isSafeInteger(beat.s)) return 'malformed'
    const last = this.lastHeard.get(beat.n)
    // Replay protection: a newer incarnation restarts the sequence; within one, it only goes up.
    if (last && (beat.i < last.incarnation || (beat.i === last.incarnation && beat.s <= last.seq)))
      return 'replayed or out of order'
    this.lastHeard.set(beat.n, { at: this.deps.clock.monoMs(), incarnation: beat.i, seq: beat.s })
    return null
  }

  close(): void {
    if (this.timer) clearInterval(this.timer)
    this.socket?.close()
    this.socket = null
  }
}
