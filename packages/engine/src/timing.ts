import { silenceToReach } from './phi.js'
import { type ClusterSpec, policyOf } from './spec.js'

/** An agent's isolation response, as its hello announces it. */
export interface IsolationTiming {
  /** Cut off from the hub this long means isolated (the agent's `isolation.afterMs`). */
  afterMs: number
  action: 'stop' | 'freeze' | 'reboot'
  /** From the last word from the hub to the response done, at worst (afterMs + longest stop timeout). */
  doneWithinMs: number
  /** Whether the node writes a shared-disk heartbeat: without one a cut-off node reads as dead. */
  diskHeartbeat: boolean
}

/**
 * The soonest, after a node last spoke, that the hub may decide to fence it once it stops hearing
 * it on the network: with a disk heartbeat that still advances the node is `isolated` and waits
 * `isolationGraceMs`; without one it is dead as soon as the hub's detector and `confirmMs` agree
 * (estimated from the detector's settings: the learned rhythm can only make it later).
 */
export function earliestFence(
  spec: ClusterSpec,
  node: string,
  diskHeartbeat: boolean,
): { ms: number; because: string } {
  const delay = spec.nodes.find((n) => n.id === node)?.fenceDelayMs ?? 0
  const d = spec.detection
  const delayText = delay > 0 ? ` + fenceDelayMs ${delay}` : ''
  if (diskHeartbeat)
    return {
      ms: d.isolationGraceMs + delay,
      because: `detection.isolationGraceMs ${d.isolationGraceMs}${delayText}`,
    }
  const silent = silenceToReach(
    d.hub.threshold,
    d.hub.firstIntervalMs + d.hub.acceptablePauseMs,
    d.hub.minStdDevMs,
  )
  const ms = Math.round(silent) + d.confirmMs + delay
  return {
    ms,
    because: `no disk heartbeat, so a silent node is dead: the hub detector's ~${Math.round(silent)} + detection.confirmMs ${d.confirmMs}${delayText}`,
  }
}

/**
 * Issue #8's cross-check: a node's isolation response must be done before the hub could fence it,
 * so that a cut-off host has stopped its resources by itself (cleanly) rather than having them
 * ended by the fence. Returns the problem, naming the agent's key, or undefined when the timings
 * fit. A `freeze` response does nothing to finish, and a node without fence levels is never
 * fenced, so both always fit.
 */
export function isolationTimingProblem(
  spec: ClusterSpec,
  node: string,
  isolation: IsolationTiming,
): { key: string; message: string } | undefined {
  if (isolation.action === 'freeze') return undefined
  // A node without fence levels is never fenced: nothing starts elsewhere until a person says so.
  if ((spec.nodes.find((n) => n.id === node)?.fencing.length ?? 0) === 0) return undefined
  const fence = earliestFence(spec, node, isolation.diskHeartbeat)
  if (isolation.doneWithinMs < fence.ms) return undefined
  const stop = isolation.doneWithinMs - isolation.afterMs
  return {
    key: 'isolation.afterMs',
    message:
      `${node}'s isolation response (${isolation.action}) can take until ${isolation.doneWithinMs} ms after it last heard the hub ` +
      `(isolation.afterMs ${isolation.afterMs}${stop > 0 ? ` + its longest stop timeout ${stop}` : ''}), ` +
      `but the hub may fence it ${fence.ms} ms after (${fence.because}): ` +
      (isolation.diskHeartbeat
        ? 'lower isolation.afterMs or the stop timeouts, or raise detection.isolationGraceMs'
        : 'give the node a disk heartbeat, or lower isolation.afterMs and the stop timeouts'),
  }
}

/**
 * Which clock governs each action a node's agent declares a timeout for, wherever the engine's own
 * fallback (`actionTimeoutMs`, for agents that declare nothing) is shorter than the driver's budget:
 * the engine waits for the driver's (plus `actionMarginMs`), never the shorter one, and says so with
 * both numbers, so that an operator who set the fallback knows it does not apply.
 */
export function actionTimeoutNotes(
  spec: ClusterSpec,
  node: string,
  declared: Record<string, Partial<Record<string, number>>>,
): { key: string; message: string }[] {
  const notes: { key: string; message: string }[] = []
  spec.resources.forEach((resource, i) => {
    const timeouts = declared[resource.id]
    if (!timeouts) return
    const policy = policyOf(spec, resource)
    const key =
      resource.policy.actionTimeoutMs !== undefined
        ? `resources.${i}.policy.actionTimeoutMs`
        : 'defaults.actionTimeoutMs'
    for (const [action, ms] of Object.entries(timeouts).sort()) {
      if (ms === undefined || ms <= policy.actionTimeoutMs) continue
      notes.push({
        key,
        message:
          `${resource.id} ${action}: ${key} is ${policy.actionTimeoutMs} ms, shorter than the ${ms} ms ${node}'s driver declares; ` +
          `the engine waits ${ms + policy.actionMarginMs} ms (the driver's ${ms} + actionMarginMs ${policy.actionMarginMs})`,
      })
    }
  })
  return notes
}
