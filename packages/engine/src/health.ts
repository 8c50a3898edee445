import type { ResourcePhase, ResourceState } from './types.js'

/** A resource's score for its phase alone: running 100, moving or recovering in between, down 0. */
const PHASE_SCORES: Record<ResourcePhase, number> = {
  running: 100,
  starting: 70,
  migrating: 70,
  stopping: 50,
  recovering: 50,
  waiting: 30,
  unmanaged: 50,
  // Intended by an operator, but serving nothing: neither healthy nor failed.
  suspended: 50,
  stopped: 0,
  blocked: 0,
}
/** Points a running resource loses per failure its restart ladder still counts. */
const PER_COUNTED_FAILURE = 20
/** A running resource that keeps failing never scores below this: it is running. */
const RUNNING_FLOOR = 40

/**
 * A resource's health, 0-100, with hysteresis: its phase sets the score, and each failure its
 * restart ladder still counts takes points off while it runs again, so a resource that crashes and
 * restarts in place does not look as healthy as one that never failed until its failures decay
 * (`failureTimeoutMs`). One bad sample does not move it; a flapping one stays visibly degraded.
 */
export function resourceHealthScore(r: Pick<ResourceState, 'phase' | 'failures'>): number {
  const base = PHASE_SCORES[r.phase]
  if (r.phase !== 'running') return base
  return Math.max(RUNNING_FLOOR, base - PER_COUNTED_FAILURE * r.failures.length)
}
