/**
 * Phi-accrual failure detector (Hayashibara et al.), with Akka's logistic approximation of the
 * normal CDF. Phi says how unlikely the current silence is given the observed arrival intervals:
 * phi 1 ~ 10 % chance the node is alive yet silent this long, phi 8 ~ 1e-8.
 * State is a plain object so engine state stays serialisable.
 */
export interface PhiState {
  /** Last arrival time (ms), or null before the first. */
  lastAt: number | null
  /** Recent inter-arrival intervals (ms), oldest first. */
  intervals: number[]
}

export interface PhiParams {
  /** Expected interval before any sample (ms): seeds the window so phi is meaningful at once. */
  firstIntervalMs: number
  /** Floor on the standard deviation (ms): regular heartbeats would otherwise make phi explode. */
  minStdDevMs: number
  /** Silence tolerated on top of the mean (ms), e.g. for GC pauses or broker hiccups. */
  acceptablePauseMs: number
  /** Intervals kept. */
  window: number
}

export function emptyPhi(): PhiState {
  return { lastAt: null, intervals: [] }
}

/**
 * Learns one arrival. An arrival after a silence that had already reached `threshold` ends an
 * outage (the node was down, cut off, or fenced and powered on again): the clock restarts but the
 * gap is not learnt as an interval, as Cassandra's detector ignores over-long intervals. Learning
 * outages would inflate the mean, and every later failure of the node would be detected later.
 */
export function recordArrival(state: PhiState, at: number, params: PhiParams, threshold?: number): PhiState {
  if (state.lastAt === null) {
    // Seed with the expected interval and its spread, as Akka does.
    const seed = params.firstIntervalMs
    return { lastAt: at, intervals: [seed - seed / 4, seed + seed / 4] }
  }
  if (at <= state.lastAt) return state
  if (threshold !== undefined && phi(state, at, params) >= threshold)
    return { lastAt: at, intervals: state.intervals }
  const intervals = [...state.intervals, at - state.lastAt]
  if (intervals.length > params.window) intervals.splice(0, intervals.length - params.window)
  return { lastAt: at, intervals }
}

/**
 * Mean and standard deviation of an interval window. Windows are never changed in place
 * (`recordArrival` makes a new one), so they are computed once per window, not once per question:
 * the hub asks for every node's phi on every step.
 */
const windowStats = new WeakMap<readonly number[], { mean: number; stdDev: number }>()

function statsOf(intervals: readonly number[]): { mean: number; stdDev: number } {
  let stats = windowStats.get(intervals)
  if (!stats) {
    const n = intervals.length
    let sum = 0
    for (const x of intervals) sum += x
    const mean = sum / n
    let squares = 0
    for (const x of intervals) squares += (x - mean) ** 2
    stats = { mean, stdDev: Math.sqrt(squares / n) }
    windowStats.set(intervals, stats)
  }
  return stats
}

/** Phi at `now`; Infinity before any arrival (never heard: maximally suspicious). */
export function phi(state: PhiState, now: number, params: PhiParams): number {
  if (state.lastAt === null) return Number.POSITIVE_INFINITY
  const stats =
    state.intervals.length === 0 ? { mean: params.firstIntervalMs, stdDev: 0 } : statsOf(state.intervals)
  const mean = stats.mean
  const stdDev = Math.max(stats.stdDev, params.minStdDevMs)
  return phiOf(now - state.lastAt, mean + params.acceptablePauseMs, stdDev)
}

export function phiOf(elapsed: number, mean: number, stdDev: number): number {
  const y = (elapsed - mean) / stdDev
  const e = Math.exp(-y * (1.5976 + 0.070566 * y * y))
  const value = elapsed > mean ? -Math.log10(e / (1 + e)) : -Math.log10(1 - 1 / (1 + e))
  return Number.isFinite(value) ? Math.max(0, value) : Number.POSITIVE_INFINITY
}

/** How long after the last arrival phi first reaches `threshold` (ms), for docs and tests. */
export function silenceToReach(threshold: number, mean: number, stdDev: number): number {
  let lo = 0
  let hi = mean + 100 * stdDev
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2
    if (phiOf(mid, mean, stdDev) >= threshold) hi = mid
    else lo = mid
  }
  return hi
}
