import type { Logger } from '@vigil/kit'
import type { HubMetrics } from './metrics.js'
import { PRUNED_TABLES, type PrunedTable } from './store.js'

const DAY_MS = 86_400_000

export interface PrunableStore {
  prune(before: number, batch?: number): { deleted: Record<PrunedTable, number>; more: boolean }
  sizeBytes(): number
  readonly failing: string | null
}

/**
 * Keeps the hub's history bounded (`store.retention`): at start and every `everyMs`, what is older
 * than `maxAgeDays` is deleted, a batch per turn of the event loop so that a long first prune never
 * holds ingest. A database that cannot be written is skipped (its guard says so); the next turn
 * tries again. `maxAgeDays: 0` keeps everything.
 */
export class Retention {
  private timer: NodeJS.Timeout | null = null
  private pass: NodeJS.Immediate | null = null
  private closed = false

  constructor(
    private readonly store: PrunableStore,
    private readonly options: { maxAgeDays: number; everyMs: number },
    private readonly deps: {
      now: () => number
      log: Logger
      metrics: Pick<HubMetrics, 'prunedRows' | 'storeSize'>
    },
  ) {
    for (const table of PRUNED_TABLES) deps.metrics.prunedRows.inc({ table }, 0)
  }

  start(): void {
    if (this.options.maxAgeDays <= 0) return
    this.timer = setInterval(() => this.run(), this.options.everyMs)
    this.run()
  }

  /** One prune, in batches; resolves with the rows deleted per table. */
  run(): Promise<Record<PrunedTable, number>> {
    const before = this.deps.now() - this.options.maxAgeDays * DAY_MS
    const total = Object.fromEntries(PRUNED_TABLES.map((t) => [t, 0])) as Record<PrunedTable, number>
    return new Promise((resolve) => {
      const turn = () => {
        this.pass = null
        if (this.closed || this.store.failing !== null) return resolve(total)
        let more = false
        try {
          const r = this.store.prune(before)
          for (const table of PRUNED_TABLES) {
            total[table] += r.deleted[table]
            if (r.deleted[table] > 0) this.deps.metrics.prunedRows.inc({ table }, r.deleted[table])
          }
          more = r.more
        } catch (err) {
          // A store failure is the guard's to report (once); anything else is said here.
          if (this.store.failing === null) this.deps.log.error({ err }, 'pruning the history failed')
          return resolve(total)
        }
        if (more) {
          this.pass = setImmediate(turn)
          return
        }
        this.deps.metrics.storeSize.set(this.store.sizeBytes())
        if (Object.values(total).some((n) => n > 0))
          this.deps.log.info(
            { ...total, olderThan: new Date(before).toISOString() },
            'history older than store.retention.maxAgeDays pruned',
          )
        resolve(total)
      }
      turn()
    })
  }

  close(): void {
    this.closed = true
    if (this.timer) clearInterval(this.timer)
    if (this.pass) clearImmediate(this.pass)
  }
}
