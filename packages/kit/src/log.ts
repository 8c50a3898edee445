import { type Logger, pino } from 'pino'

export type { Logger } from 'pino'

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

/**
 * Keys whose values never reach a log line, at the top level or one level down (an object logged
 * by mistake, a config section, an error's options): defence in depth behind "secrets are read
 * from files and never passed to a logger".
 */
const SECRET_KEYS = [
  'password',
  'passphrase',
  'secret',
  'token',
  'authorization',
  'community',
  'privateKey',
  'key',
  'authKey',
  'privKey',
]
export const REDACT_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`])

/** One structured JSON line per event on stdout; `component` says which process wrote it. */
export function createLogger(component: string, level: LogLevel = 'info'): Logger {
  return pino({
    level,
    base: { component },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  })
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
