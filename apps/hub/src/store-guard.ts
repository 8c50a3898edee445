import type { Logger } from '@vigil/kit'
import type { NewEvent } from './store.js'

/** What the guard watches: the database's write failures, and a probe that writes again. */
export interface GuardedStore {
  onWriteFailure(listener: (problem: string) => void): void
  probe(now: number): boolean
}

/**
 * A database that cannot be written: nothing may leave that is not written first, so this hub
 * stops acting (a leader gives the leadership up) and keeps observing and serving reads, until a
 * probe writes again. The failure is an event once the database takes it; the recovery says how
 * long this hub did not act.
 */
export class StoreGuard {
  private failedAt: number | null = null
  private probeTimer: NodeJS.Timeout | null = null

  constructor(
    private readonly deps: {
      store: GuardedStore
      probeEveryMs: number
      /** Stop acting: a leader steps down, a hub alone stands its engine down. */
      stopActing: () => void
      /** Act again (a hub alone; in a group the next campaign decides). */
      actAgain: () => void
      partDown: (problem: string) => void
      partUp: () => void
      event: (e: NewEvent) => void
      closing: () => boolean
      now: () => number
      log: Logger
    },
  ) {
    deps.store.onWriteFailure((problem) => this.failed(problem))
  }

  private failed(problem: string): void {
    const { deps } = this
    this.failedAt = deps.now()
    deps.partDown(problem)
    deps.log.error(
      { problem },
      'the database cannot be written: this hub stops acting until it can (reads go on)',
    )
    deps.event({
      at: this.failedAt,
      node: null,
      source: 'hub',
      kind: 'hub.store-failed',
      severity: 'critical',
      message: `this hub stops acting until its database can be written: ${problem}`,
      attrs: { problem },
    })
    deps.stopActing()
    this.probeTimer ??= setInterval(() => {
      if (!deps.closing() && deps.store.probe(deps.now())) this.recovered()
    }, deps.probeEveryMs)
  }

  private recovered(): void {
    const { deps } = this
    if (this.probeTimer) clearInterval(this.probeTimer)
    this.probeTimer = null
    const since = this.failedAt ?? deps.now()
    this.failedAt = null
    deps.partUp()
    const seconds = ((deps.now() - since) / 1000).toFixed(1)
    deps.event({
      at: deps.now(),
      node: null,
      source: 'hub',
      kind: 'hub.store-recovered',
      severity: 'warning',
      message: `the database could not be written for ${seconds} s; this hub did not act in that time and acts again`,
      attrs: { failedAt: since, seconds: Number(seconds) },
    })
    deps.log.warn({ seconds: Number(seconds) }, 'the database can be written again: this hub acts again')
    deps.actAgain()
  }

  close(): void {
    if (this.probeTimer) clearInterval(this.probeTimer)
    this.probeTimer = null
  }
}
