import { closeSync, openSync, writeSync } from 'node:fs'
import { type Clock, createLogger, type Logger } from '@vigil/kit'
import type { Status } from '@vigil/protocol'
import { z } from 'zod'
import type { AgentConfig } from './config.js'
import type { ResourceEntry } from './drivers.js'
import { ResourceRunner } from './resources.js'

export const isolationSchema = z
  .strictObject({
    /**
     * Cut off from the hub this long (no packet from the broker: pings are answered every
     * keepalive) means isolated. Unset: no isolation response. Must be shorter than the hub's
     * detection plus fence time, so the response is done before anything could start elsewhere.
     */
    afterMs: z.number().int().min(100).max(3_600_000).optional(),
    /**
     * stop: stop every resource here (if a stop fails and a watchdog is set, stop feeding it: the
     * host resets). freeze: leave them running (the hub's fence decides). reboot: stop feeding the
     * watchdog at once (the host resets; without a watchdog this is `stop`).
     */
    action: z.enum(['stop', 'freeze', 'reboot']).default('stop'),
    /** A Linux watchdog device (/dev/watchdog): fed while this agent is healthy, SBD-style. */
    watchdog: z
      .strictObject({
        device: z.string().min(1),
        intervalMs: z.number().int().min(100).max(60_000).default(1000),
      })
      .optional(),
  })
  .prefault({})
export type IsolationConfig = z.output<typeof isolationSchema>

/**
 * What the agent's hello tells the hub of its isolation response, for the hub to check against
 * its own timings (undefined: no isolation response). A stop is done at worst after `afterMs` and
 * the longest stop timeout (the stops run together); a reboot is the watchdog's, whose reset time
 * the kernel knows, not the agent.
 */
export function isolationTiming(
  config: IsolationConfig,
  diskHeartbeat: boolean,
  longestStopMs: number,
): Status['isolation'] {
  if (config.afterMs === undefined) return undefined
  const stopping = config.action === 'stop' || (config.action === 'reboot' && !config.watchdog)
  return {
    afterMs: config.afterMs,
    action: config.action,
    doneWithinMs: config.afterMs + (stopping ? longestStopMs : 0),
    diskHeartbeat,
  }
}

/**
 * The agent's self-fence. A host that hears nothing from the hub for `afterMs` stops (or freezes)
 * its resources by itself, before the hub could have fenced it and started them elsewhere. With a
 * watchdog device, the agent writes to it every `intervalMs` while healthy; a hung agent, a failed
 * isolation stop, or `action: reboot` stops the writes and the kernel resets the host.
 */
export class IsolationGuard {
  private lastContact: number
  private isolated = false
  /** Once set, the watchdog is never fed again (the host is meant to reset). */
  private starving = false
  private watchdogFd: number | null = null
  private timers: NodeJS.Timeout[] = []

  constructor(
    private readonly config: IsolationConfig,
    private readonly deps: {
      clock: Clock
      log: Logger
      /** True while the peer mesh hears another host: cut from the hub only is not isolated. */
      hearsPeers: () => boolean
      /** Stops every resource; resolves with the ids it could not stop. */
      stopAll: () => Promise<string[]>
      emit: (kind: string, severity: 'info' | 'warning' | 'critical', message: string) => void
    },
  ) {
    this.lastContact = deps.clock.monoMs()
  }

  start(): void {
    if (this.config.afterMs !== undefined) this.timers.push(setInterval(() => void this.check(), 100))
    const wd = this.config.watchdog
    if (wd) {
      this.watchdogFd = openSync(wd.device, 'w')
      this.feed()
      this.timers.push(setInterval(() => this.feed(), wd.intervalMs))
    }
  }

  /** Any packet from the broker: the hub's side of the network is reachable. */
  contact(): void {
    // Only recorded here: the end of isolation is reported by the next check, after the reconnect
    // has replayed the buffered events (a new event sent first would arrive out of order).
    this.lastContact = this.deps.clock.monoMs()
  }

  get state(): { isolated: boolean; starving: boolean } {
    return { isolated: this.isolated, starving: this.starving }
  }

  private async check(): Promise<void> {
    const afterMs = this.config.afterMs as number
    if (this.deps.hearsPeers()) this.lastContact = this.deps.clock.monoMs()
    const silentMs = this.deps.clock.monoMs() - this.lastContact
    if (this.isolated && silentMs < afterMs) {
      this.isolated = false
      this.deps.log.warn(
        'contact with the broker restored; resources stay as the isolation response left them',
      )
      this.deps.emit('agent.isolation-ended', 'warning', 'contact with the hub restored after isolation')
      return
    }
    if (this.isolated || silentMs < afterMs) return
    this.isolated = true
    const { action } = this.config
    this.deps.log.error(
      { silentMs, action },
      'isolated: no contact with the hub; running the isolation response',
    )
    if (action === 'freeze') {
      this.deps.emit(
        'agent.isolated',
        'critical',
        `isolated for ${silentMs} ms: resources left running (freeze)`,
      )
      return
    }
    if (action === 'reboot' && this.watchdogFd !== null) {
      this.starving = true
      this.deps.emit(
        'agent.isolated',
        'critical',
        `isolated for ${silentMs} ms: watchdog starved, host resets`,
      )
      return
    }
    const failed = await this.deps.stopAll()
    if (failed.length > 0 && this.watchdogFd !== null) this.starving = true
    this.deps.emit(
      'agent.isolated',
      'critical',
      failed.length === 0
        ? `isolated for ${silentMs} ms: every resource stopped`
        : `isolated for ${silentMs} ms: could not stop ${failed.join(', ')}${this.starving ? '; watchdog starved, host resets' : ''}`,
    )
  }

  private feed(): void {
    if (this.watchdogFd === null || this.starving) return
    try {
      writeSync(this.watchdogFd, '1')
    } catch (err) {
      this.deps.log.error({ err: (err as Error).message }, 'cannot write to the watchdog')
    }
  }

  /** Clean shutdown: the magic close ("V") disarms the watchdog, unless the host is meant to reset. */
  close(): void {
    for (const t of this.timers) clearInterval(t)
    if (this.watchdogFd === null) return
    try {
      if (!this.starving) writeSync(this.watchdogFd, 'V')
      closeSync(this.watchdogFd)
    } catch {
      // the device is gone; nothing to disarm
    }
    this.watchdogFd = null
  }
}

/**
 * The isolation timing an agent with this config would announce, without starting it (for
 * `vigil config check --cluster`): its drivers are constructed, which only reads their declared
 * timeouts (construction opens, starts and watches nothing).
 */
export function announcedIsolation(config: AgentConfig): Status['isolation'] {
  if (config.isolation.afterMs === undefined) return undefined
  const runner = new ResourceRunner(
    config.resources as ResourceEntry[],
    createLogger('agent', 'silent'),
    () => {},
  )
  return isolationTiming(config.isolation, config.diskHeartbeat.path !== undefined, runner.longestStopMs())
}

/**
 * The timeouts an agent with this config would declare per action of each resource, without
 * starting it (for `vigil config check --cluster`): constructing the drivers only reads them.
 */
export function declaredActionTimeouts(config: AgentConfig): Status['actionTimeouts'] {
  return new ResourceRunner(
    config.resources as ResourceEntry[],
    createLogger('agent', 'silent'),
    () => {},
  ).actionTimeouts()
}
