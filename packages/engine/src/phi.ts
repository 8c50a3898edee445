/**
 * Phi-accrual failure detector (Hayashibara et al.), with Akka's logistic approximation of the
 * normal CDF. Phi says how unlikely the current silence is given the observed arrival intervals:
 * phi 1 ~ 10 % chance the node is alive yet silent this long, phi 8 ~ 1e-8.
 * State is a plain object so engine state stays serialisable.
 */
export interface PhiState {
  /** Last arrival time (ms), or null before the first. */
  lastAt: number | null
  /**
   * Recent inter-arrival intervals (ms): oldest first until the window is full, then a ring whose
   * oldest is at `head` (each arrival overwrites it: no copy of the window per heartbeat).
   */
  intervals: number[]
  /** Where the oldest interval is once the window is full (absent: 0, oldest first). */
  head?: number
  /**
   * The window's sum, kept with it by `recordArrival` (worked out on first use for a state saved
   * without it), and its standard deviation once asked for (cleared by each arrival): the hub asks
   * every node's phi at every step, and most of those questions need only the mean.
   */
  sum?: number
  stdDev?: number
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
 *
 * Updates `state` in place (as `step` updates the engine state it owns) and returns it, a fresh
 * state for the first arrival: a copy of the window per heartbeat was most of what the hub
 * allocated under load.
 */
export function recordArrival(state: PhiState, at: number, params: PhiParams, threshold?: number): PhiState {
  if (state.lastAt === null) {
    // Seed with the expected interval and its spread, as Akka does.
    const seed = params.firstIntervalMs
    return { lastAt: at, intervals: [seed - seed / 4, seed + seed / 4] }
  }
  if (at <= state.lastAt) return state
  if (threshold !== undefined && !phiBelow(state, at, params, threshold)) {
    state.lastAt = at
    return state
  }
  const interval = at - state.lastAt
  if (state.intervals.length > params.window) {
    // A smaller window than the one learnt with (a reload): keep the newest, oldest first.
    state.intervals = chronological(state).slice(-params.window)
    state.head = 0
    state.sum = undefined
  }
  if (state.intervals.length < params.window && (state.head ?? 0) !== 0) {
    // A larger window than the ring (a reload): oldest first again, and it grows.
    state.intervals = chronological(state).slice()
    state.head = 0
  }
  const intervals = state.intervals
  const sum = state.sum
  if (intervals.length < params.window) {
    intervals.push(interval)
    state.sum = sum !== undefined && exact(interval) ? sum + interval : undefined
  } else {
    const head = state.head ?? 0
    const oldest = intervals[head] as number
    intervals[head] = interval
    state.head = (head + 1) % intervals.length
    state.sum = sum !== undefined && exact(interval) && exact(oldest) ? sum - oldest + interval : undefined
  }
  state.stdDev = undefined
  state.lastAt = at
  return state
}

/** The intervals oldest first. */
export function chronological(state: PhiState): number[] {
  const head = state.head ?? 0
  return head === 0 ? state.intervals : [...state.intervals.slice(head), ...state.intervals.slice(0, head)]
}

/**
 * Whether a value keeps a running sum exact (and so equal to summing the window afresh): whole
 * milliseconds, as the hub's clock and the simulator's give. Any other value sums the window again.
 */
function exact(x: number): boolean {
  return Number.isInteger(x) && Math.abs(x) < 2 ** 40
}

/** The window's mean (its sum oldest first when not kept: the same figure either way). */
function meanOf(state: PhiState): number {
  if (state.sum === undefined) {
    const { intervals } = state
    const n = intervals.length
    const head = state.head ?? 0
    let sum = 0
    for (let k = 0; k < n; k++) sum += intervals[(head + k) % n] as number
    state.sum = sum
  }
  return state.sum / state.intervals.length
}

/** The window's standard deviation, two passes oldest first as always, once per arrival at most. */
function stdDevOf(state: PhiState): number {
  if (state.stdDev === undefined) {
    const mean = meanOf(state)
    const { intervals } = state
    const n = intervals.length
    const head = state.head ?? 0
    let squares = 0
    for (let k = 0; k < n; k++) squares += ((intervals[(head + k) % n] as number) - mean) ** 2
    state.stdDev = Math.sqrt(squares / n)
  }
  return state.stdDev
}

/** Phi at `now`; Infinity before any arrival (never heard: maximally suspicious). */
export function phi(state: PhiState, now: number, params: PhiParams): number {
  if (state.lastAt === null) return Number.POSITIVE_INFINITY
  if (state.intervals.length === 0)
    return phiOf(now - state.lastAt, params.firstIntervalMs + params.acceptablePauseMs, params.minStdDevMs)
  const stdDev = Math.max(stdDevOf(state), params.minStdDevMs)
  return phiOf(now - state.lastAt, meanOf(state) + params.acceptablePauseMs, stdDev)
}

/**
 * Phi at or below the mean interval (plus the tolerated pause) is at most log10(2) (0.301): within
 * it, a threshold above that is not reached, without the logarithm. The usual case, asked for every
 * heartbeat and every node at every step.
 */
const PHI_AT_MEAN = Math.log10(2)

/** `phi(state, now, params) < threshold`, cheaply when the silence is shorter than the mean. */
export function phiBelow(state: PhiState, now: number, params: PhiParams, threshold: number): boolean {
  if (state.lastAt !== null && state.intervals.length > 0 && threshold > PHI_AT_MEAN) {
    if (now - state.lastAt <= meanOf(state) + params.acceptablePauseMs) return true
  }
  return phi(state, now, params) < threshold
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
