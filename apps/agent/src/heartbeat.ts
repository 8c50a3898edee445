/**
 * The network heartbeat. Contract: every `intervalMs` a heartbeat is numbered (`seq` from 0 with each
 * incarnation, advancing whether or not it can be sent, so the hub sees the gap) and, if `canSend`,
 * handed to `send` with the peers this node hears (when the mesh is on) and the shared-disk slots it
 * read (when the disk heartbeat is on). With `diskInStep`, the disk is read at each tick just before
 * the heartbeat is built, for at most a quarter interval.
 */
import type { Clock } from '@vigil/kit'
import type { Heartbeat } from '@vigil/protocol'
import type { DiskHeartbeat } from './disk-heartbeat.js'
import type { PeerMesh } from './peers.js'

export interface HeartbeatDeps {
  clock: Clock
  mesh: Pick<PeerMesh, 'enabled' | 'hears'>
  disk: Pick<DiskHeartbeat, 'enabled' | 'beat' | 'sightings'>
  /** The disk is read at each tick, not on its own timer. */
  diskInStep: boolean
  /** Whether a heartbeat would be heard now. */
  canSend: () => boolean
  send: (hb: Heartbeat) => void
}

export class HeartbeatSender {
  private seq = 0
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly source: { node: string; incarnation: number; intervalMs: number },
    private readonly deps: HeartbeatDeps,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.source.intervalMs)
  }

  close(): void {
    clearInterval(this.timer)
  }

  /** One heartbeat: what the timer does each interval. */
  async tick(): Promise<void> {
    const { source, deps } = this
    const seq = this.seq++ // advances while disconnected too, so the hub sees the gap
    // A slow or hung device delays a heartbeat by a quarter interval at most, never more: the
    // network channel must not depend on the disk's health (a skipped beat is still in flight).
    if (deps.diskInStep && deps.disk.enabled)
      await Promise.race([deps.disk.beat(), sleep(source.intervalMs / 4)])
    if (!deps.canSend()) return
    deps.send({
      v: 1,
      node: source.node,
      incarnation: source.incarnation,
      seq,
      sentMono: deps.clock.monoMs(),
      sentAt: deps.clock.wallMs(),
      intervalMs: source.intervalMs,
      ...(deps.mesh.enabled ? { hears: deps.mesh.hears() } : {}),
      ...(deps.disk.enabled ? { disk: deps.disk.sightings() } : {}),
    })
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
