import { setMaxListeners } from 'node:events'
import { type Action, type Driver, DriverError, type MonitorResult, runAction } from '@vigil/driver-kit'
import { type Clock, type Logger, systemClock } from '@vigil/kit'
import type { CommandAction, Observation } from '@vigil/protocol'
import { DRIVERS, type ResourceEntry } from './drivers.js'

interface Watched {
  entry: ResourceEntry
  /** Replaced when a watch vouching for a resource starts over (see `startOver`). */
  driver: Driver
  latest: MonitorResult | null
  /** When `latest` was taken (the clock's monotonic ms): its age tells a late monitor from a quiet one. */
  latestAt: number
  /** Actions on one resource run one at a time, in order. */
  queue: Promise<unknown>
  /** The declared timeouts of the actions queued or running on it (what a new one waits behind). */
  backlogMs: number
  timer: NodeJS.Timeout | null
}

/**
 * The agent's resources: monitors each on its interval and whenever its driver reports a change,
 * calls `onChange` when any state changed, and runs the hub's actions through the driver contract.
 */
export class ResourceRunner {
  private readonly watched = new Map<string, Watched>()
  private readonly abort = new AbortController()

  constructor(
    entries: ResourceEntry[],
    private readonly log: Logger,
    private readonly onChange: () => void,
    private readonly clock: Clock = systemClock,
  ) {
    // Every action and monitor in flight listens to this one signal (a listener each, removed when
    // it ends): with dozens of resources that is more than EventTarget's default warning limit.
    setMaxListeners(0, this.abort.signal)
    for (const entry of entries) {
      const w: Watched = {
        entry,
        driver: this.create(entry),
        latest: null,
        latestAt: clock.monoMs(),
        queue: Promise.resolve(),
        backlogMs: 0,
        timer: null,
      }
      w.driver.onChange?.(() => void this.monitor(w))
      this.watched.set(entry.id, w)
      if (entry.vouchesFor !== undefined)
        this.vouchers.set(entry.vouchesFor, [...(this.vouchers.get(entry.vouchesFor) ?? []), w])
    }
  }

  /** The watches that vouch for each resource, by the resource's id. */
  private readonly vouchers = new Map<string, Watched[]>()

  private create(entry: ResourceEntry): Driver {
    return DRIVERS[entry.driver].create(entry.config as never, {
      resourceId: entry.id,
      log: this.log.child({ resource: entry.id }),
    })
  }

  /**
   * The watches vouching for a resource that was just started start over: a fresh driver, so a
   * fresh grace of failed probes before they fail it again (ExpressCluster's wait before monitoring
   * a reactivated resource). Without it, a check still failed from before the restart would fail
   * the restarted resource at once, and the ladder would climb on a single fault.
   */
  private async startOver(id: string): Promise<void> {
    for (const v of this.vouchers.get(id) ?? []) {
      const old = v.driver
      v.driver = this.create(v.entry)
      v.latest = null
      await old.close?.()
    }
  }

  start(): void {
    for (const w of this.watched.values()) {
      void this.monitor(w)
      w.timer = setInterval(() => void this.monitor(w), w.entry.monitorIntervalMs)
    }
  }

  capabilities(): string[] {
    return [...this.watched.values()].map(
      (w) => `${w.entry.driver}:${w.entry.id}:${w.driver.capabilities.join('+')}`,
    )
  }

  /**
   * Each resource's declared timeout per command action (the driver's own budget, run by
   * `runAction`): advertised to the hub, whose engine waits that long for a result, plus a margin.
   */
  actionTimeouts(): Record<string, Partial<Record<CommandAction, number>>> {
    const out: Record<string, Partial<Record<CommandAction, number>>> = {}
    for (const [id, w] of this.watched) {
      const declared: Partial<Record<CommandAction, number>> = {}
      for (const action of w.driver.capabilities) {
        const command = COMMAND_OF[action]
        if (command) declared[command] = timeoutOf(w.driver, action)
      }
      if (Object.keys(declared).length > 0) out[id] = declared
    }
    return out
  }

  /**
   * How long an action asked for now may take at most: its own declared timeout plus those of the
   * actions queued ahead of it on the same resource (they run one at a time). Null: no such resource.
   */
  deadlineMs(id: string, action: Exclude<Action, 'monitor'>): number | null {
    const w = this.watched.get(id)
    return w ? w.backlogMs + timeoutOf(w.driver, action) : null
  }

  /**
   * Each resource's latest monitor result; a vm's with its hypervisor (read now: it may be learnt
   * late). A resource running here that a failed watch vouches for is reported failed, saying which.
   * Each carries its age: a monitor that stopped answering (a hung libvirtd, a hung console file)
   * leaves its last result standing, and the hub must not read a stale guest count as a hung guest.
   */
  observations(): Observation[] {
    const now = this.clock.monoMs()
    return [...this.watched.values()].map((w) => {
      const hypervisor = w.driver.hypervisor
      const vouchedAgainst =
        w.latest?.state === 'running'
          ? (this.vouchers.get(w.entry.id) ?? []).find((v) => v.latest?.state === 'failed')
          : undefined
      const latest = vouchedAgainst
        ? {
            ...w.latest,
            state: 'failed' as const,
            detail: `${vouchedAgainst.entry.id} (${vouchedAgainst.entry.driver}) failed: ${vouchedAgainst.latest?.detail ?? ''}`,
          }
        : w.latest
      return {
        driver: w.entry.driver,
        target: w.entry.id,
        state: latest?.state ?? 'unknown',
        ...(latest?.detail ? { detail: latest.detail.slice(0, 1024) } : {}),
        ...(latest?.metrics ? { metrics: latest.metrics } : {}),
        ...(hypervisor ? { hypervisor } : {}),
        ageMs: Math.max(0, Math.round(now - w.latestAt)),
      }
    })
  }

  has(id: string): boolean {
    return this.watched.has(id)
  }

  /** Runs an action (after any queued one), then monitors at once so the hub sees the outcome. */
  run(id: string, action: Exclude<Action, 'monitor'>, options: { target?: string } = {}): Promise<void> {
    const w = this.watched.get(id)
    if (!w) return Promise.reject(new DriverError('config', `no resource "${id}" on this node`))
    const budget = timeoutOf(w.driver, action)
    w.backlogMs += budget
    const result = w.queue.then(async () => {
      this.log.info({ resource: id, action }, 'resource action')
      try {
        await runAction(w.driver, action, { log: this.log, signal: this.abort.signal, ...options })
        if (STARTS.has(action)) await this.startOver(id)
      } finally {
        w.backlogMs -= budget
        await this.monitor(w)
      }
    })
    w.queue = result.catch(() => {})
    return result
  }

  private async monitor(w: Watched): Promise<void> {
    const vouched = w.entry.vouchesFor === undefined ? undefined : this.watched.get(w.entry.vouchesFor)
    if (vouched && vouched.latest?.state !== 'running') {
      // Not probed while what it vouches for does not run here: its failure would mean nothing.
      const idle: MonitorResult = { state: 'stopped', detail: `${vouched.entry.id} does not run here` }
      const changed = w.latest?.state !== idle.state
      w.latest = idle
      w.latestAt = this.clock.monoMs()
      if (changed) this.onChange()
      return
    }
    const driver = w.driver
    let next: MonitorResult
    try {
      next = (await runAction(driver, 'monitor', { log: this.log, signal: this.abort.signal })) ?? {
        state: 'failed',
      }
    } catch (err) {
      this.log.warn({ resource: w.entry.id, err: (err as Error).message }, 'monitor failed')
      next = { state: 'failed', detail: `monitor error: ${(err as Error).message}` }
    }
    // A watch that started over meanwhile: this answer is its old driver's, from before.
    if (w.driver !== driver) return
    const changed = w.latest?.state !== next.state
    // A guest's heartbeat goes to the hub at once: its timing is what the hub's detector learns.
    const beat = next.metrics?.guestHeartbeats !== w.latest?.metrics?.guestHeartbeats
    w.latest = next
    w.latestAt = this.clock.monoMs()
    if (changed)
      this.log.info({ resource: w.entry.id, state: next.state, detail: next.detail }, 'resource state')
    if (changed || beat) this.onChange()
  }

  /** The longest declared stop timeout of the resources here: an isolation stop's worst case. */
  longestStopMs(): number {
    let longest = 0
    for (const w of this.watched.values())
      if (w.driver.stop !== undefined) longest = Math.max(longest, w.driver.timeouts.stop)
    return longest
  }

  /** Stops every resource (the isolation response); resolves with the ids that could not be stopped. */
  async stopAll(): Promise<string[]> {
    const failed: string[] = []
    await Promise.all(
      [...this.watched.entries()]
        .filter(([, w]) => w.driver.stop !== undefined)
        .map(([id]) =>
          this.run(id, 'stop').catch((err: unknown) => {
            this.log.error({ resource: id, err: (err as Error).message }, 'isolation stop failed')
            failed.push(id)
          }),
        ),
    )
    return failed.sort()
  }

  async close(): Promise<void> {
    this.abort.abort(new Error('agent stopping'))
    for (const w of this.watched.values()) {
      if (w.timer) clearInterval(w.timer)
      await w.driver.close?.()
    }
  }
}

/** Actions after which a resource runs afresh: the watches vouching for it start over. */
const STARTS: ReadonlySet<Action> = new Set(['start', 'restart', 'reset', 'reboot'])

/** The command the hub sends for each driver action (the hub's names for a vm's reset and reboot). */
const COMMAND_OF: Partial<Record<Action, CommandAction>> = {
  start: 'start',
  stop: 'stop',
  restart: 'restart',
  reset: 'reset-vm',
  reboot: 'reboot-vm',
  migrate: 'migrate',
  suspend: 'suspend',
  resume: 'resume',
}

/** The timeout `runAction` gives an action of this driver. */
function timeoutOf(driver: Driver, action: Exclude<Action, 'monitor'>): number {
  return driver.timeouts[action] ?? driver.timeouts.restart
}
