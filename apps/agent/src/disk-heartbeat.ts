import { type Clock, type Logger, runCommand } from '@vigil/kit'
import { z } from 'zod'

const SLOT_BYTES = 512

export const diskHeartbeatSchema = z
  .strictObject({
    /** A small shared block device or file every host can read and write (like an SBD device). Unset: off. */
    path: z.string().min(1).optional(),
    /** This host's slot (each host its own); the device holds `slots` slots of 512 bytes. */
    slot: z.number().int().min(0).max(254).optional(),
    slots: z.number().int().min(2).max(255).default(32),
    intervalMs: z.number().int().min(100).max(60_000).default(250),
    /** O_DIRECT reads and writes (bypass the page cache: needed on a real shared device). */
    direct: z.boolean().default(true),
  })
  .prefault({})
  .refine((d) => d.path === undefined || (d.slot !== undefined && d.slot < d.slots), {
    message: 'a disk heartbeat needs this host\'s slot, below "slots"',
    path: ['slot'],
  })
export type DiskHeartbeatConfig = z.output<typeof diskHeartbeatSchema>

export interface DiskSighting {
  node: string
  incarnation: number
  /** The writer's counter: the hub counts a heartbeat only when it goes up. */
  counter: number
}

/**
 * The shared-disk heartbeat: every `intervalMs` this host writes its slot (its name, incarnation
 * and a counter) with O_DIRECT and O_DSYNC, and reads every slot back. The slots are
 * reported to the hub, which counts a host's disk heartbeat as alive while its counter goes up:
 * a host the hub and its peers cannot hear, but whose disk heartbeat advances, is alive and cut off
 * (isolated), not dead. Direct I/O runs in `dd` children: a hung device never blocks the agent.
 */
export class DiskHeartbeat {
  private timer: NodeJS.Timeout | null = null
  private counter = 0
  private busy = false
  private seen: DiskSighting[] = []
  failures = 0

  constructor(
    private readonly config: DiskHeartbeatConfig,
    private readonly self: { node: string; incarnation: number },
    private readonly deps: { clock: Clock; log: Logger },
  ) {}

  get enabled(): boolean {
    return this.config.path !== undefined
  }

  start(): void {
    if (!this.enabled) return
    this.timer = setInterval(() => void this.beat(), this.config.intervalMs)
    void this.beat()
  }

  /**
   * Every slot as last read, this host's own included: its own counter advancing in the hub's eyes
   * proves this host's reads of the others are fresh (a hung device leaves them all still), which
   * a restarted hub needs before it takes another host's still slot for a death (even with two
   * hosts, where nobody else reads this one).
   */
  sightings(): DiskSighting[] {
    return this.seen
  }

  async beat(): Promise<void> {
    if (this.busy) return // the device is slower than the interval: skip, never pile up
    this.busy = true
    try {
      const { path, slot, slots, direct, intervalMs } = this.config
      const record = JSON.stringify({
        n: this.self.node,
        i: this.self.incarnation,
        c: ++this.counter,
        t: this.deps.clock.wallMs(),
      })
      const written = await runCommand(
        [
          'dd',
          `of=${path}`,
          `bs=${SLOT_BYTES}`,
          `seek=${slot}`,
          'count=1',
          'conv=notrunc',
          `oflag=${direct ? 'direct,dsync' : 'dsync'}`,
          'status=none',
        ],
        { input: record.padEnd(SLOT_BYTES, ' '), timeoutMs: intervalMs * 3 },
      )
      if (written.code !== 0) throw new Error(`write: ${written.stderr.trim() || 'timed out'}`)
      const read = await runCommand(
        [
          'dd',
          `if=${path}`,
          `bs=${SLOT_BYTES}`,
          `count=${slots}`,
          ...(direct ? ['iflag=direct'] : []),
          'status=none',
        ],
        { timeoutMs: intervalMs * 3 },
      )
      if (read.code !== 0) throw new Error(`read: ${read.stderr.trim() || 'timed out'}`)
      const seen: DiskSighting[] = []
      for (let i = 0; i < slots; i++) {
        const text = read.stdout.slice(i * SLOT_BYTES, (i + 1) * SLOT_BYTES).trim()
        if (!text.startsWith('{')) continue
        try {
          const r = JSON.parse(text) as { n?: unknown; i?: unknown; c?: unknown }
          if (typeof r.n === 'string' && typeof r.i === 'number' && typeof r.c === 'number')
            seen.push({ node: r.n, incarnation: r.i, counter: r.c })
        } catch {
          // a torn or foreign slot: ignored
        }
      }
      this.seen = seen
    } catch (err) {
      this.failures++
      this.seen = []
      this.deps.log.warn({ err: (err as Error).message, path: this.config.path }, 'disk heartbeat failed')
    } finally {
      this.busy = false
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer)
  }
}
