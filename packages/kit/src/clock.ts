/**
 * Time as the rest of Vigil sees it. Production code takes a Clock instead of calling Date.now or
 * performance.now, so tests and the simulator can substitute virtual time.
 */
export interface Clock {
  /** Wall-clock milliseconds since the Unix epoch (comparable across hosts, subject to skew). */
  wallMs(): number
  /** Monotonic milliseconds since an arbitrary origin (never goes backwards; only for durations). */
  monoMs(): number
}

export const systemClock: Clock = {
  wallMs: () => Date.now(),
  monoMs: () => performance.now(),
}
