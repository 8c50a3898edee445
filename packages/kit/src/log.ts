import { type Logger, pino } from 'pino'

export type { Logger } from 'pino'

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

/** One structured JSON line per event on stdout; `component` says which process wrote it. */
export function createLogger(component: string, level: LogLevel = 'info'): Logger {
  return pino({ level, base: { component }, timestamp: pino.stdTimeFunctions.isoTime })
}

/**
 * Lets one line through per `intervalMs` and key, and says how many were suppressed in between.
 * Used where an attacker or a broken peer controls the rate (rejected input).
 */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>()
  constructor(
    private readonly intervalMs: number,
    private readonly nowMs: () => number,
  ) {}

  /** Returns the number of suppressed lines to report, or null if this line must be dropped. */
  admit(key: string): number | null {
    const now = this.nowMs()
    const entry = this.last.get(key)
    if (entry && now - entry.at < this.intervalMs) {
      entry.suppressed++
      return null
    }
    const suppressed = entry?.suppressed ?? 0
    this.last.set(key, { at: now, suppressed: 0 })
    return suppressed
  }
}
