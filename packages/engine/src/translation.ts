import type {
  CommandAction,
  CommandResult,
  Heartbeat,
  ObservationBatch,
  Status,
} from '@vigil/protocol/schemas'
import type { Action, Input } from './types.js'

/**
 * The one translation from what agents send (protocol messages, already decoded and validated) to
 * what the engine hears. The hub feeds it every accepted message; the simulator feeds it the
 * messages its simulated agents send, so every golden scenario drives the path production runs.
 * It keeps only the counters that turn a stream of samples into liveness (a disk slot, a guest's
 * heartbeat count): no clock, no I/O. Incarnation checks (a message of an earlier agent run) are
 * the caller's, before a message reaches it.
 */
export class AgentTranslation {
  /** The last shared-disk heartbeat counter seen per node (any reporter). */
  private readonly diskCounters = new Map<string, { incarnation: number; counter: number }>()
  /** Last guest heartbeat count per node and vm. */
  private readonly guestCounters = new Map<string, number>()

  /**
   * A heartbeat: the node is heard, with the peers it hears; a node's disk heartbeat is alive while
   * its counter goes up, whoever read it. The first sighting only sets the baseline: an old slot
   * proves nothing.
   */
  heartbeat(hb: Heartbeat): Input[] {
    const inputs: Input[] = [{ type: 'heartbeat', node: hb.node, intervalMs: hb.intervalMs }]
    if (hb.hears) inputs.push({ type: 'peer-view', node: hb.node, hears: hb.hears })
    for (const d of hb.disk ?? []) {
      const last = this.diskCounters.get(d.node)
      if (
        last &&
        (d.incarnation < last.incarnation ||
          (d.incarnation === last.incarnation && d.counter <= last.counter))
      )
        continue
      this.diskCounters.set(d.node, { incarnation: d.incarnation, counter: d.counter })
      if (last) inputs.push({ type: 'disk-heartbeat', node: d.node })
    }
    return inputs
  }

  /**
   * An agent's birth message: each action's deadline is the one its driver declares. Its clean
   * stop: whether its host stays up (the node's silence is then held, not judged).
   */
  status(status: Status): Input[] {
    if (status.state === 'offline' && status.stopping)
      return [{ type: 'agent-stopped', node: status.node, hostShutdown: status.stopping === 'host' }]
    return status.state === 'online' && status.actionTimeouts
      ? [{ type: 'action-timeouts', node: status.node, resources: status.actionTimeouts }]
      : []
  }

  /**
   * A batch of monitor results: the node's footing (links, connectivity), its vms' guest
   * heartbeats, and the resources' states. A complete batch becomes an inventory (anything not
   * listed is not on this node), unless a monitor failed: then nothing can be concluded about what
   * is absent, and each answered monitor counts alone.
   */
  observations(batch: ObservationBatch): Input[] {
    const inputs = [...this.footing(batch), ...this.guestHeartbeats(batch)]
    if (batch.complete && batch.observations.every((o) => o.state !== 'unknown')) {
      const resources: Record<string, 'running' | 'failed' | 'paused' | 'suspended'> = {}
      const reasons: Record<string, string> = {}
      for (const o of batch.observations) {
        if (o.state === 'stopped' || o.state === 'unknown') continue
        resources[o.target] = o.state
        // A failure's detail is its why (a check vouching for it, a crash): the engine records it.
        if (o.state === 'failed' && o.detail) reasons[o.target] = o.detail
      }
      inputs.push({
        type: 'inventory',
        node: batch.node,
        resources,
        ...(Object.keys(reasons).length > 0 ? { reasons } : {}),
      })
      return inputs
    }
    for (const o of batch.observations) {
      if (o.state === 'unknown') continue // the monitor itself failed: no evidence either way
      inputs.push({
        type: 'resource-state',
        node: batch.node,
        resource: o.target,
        state: o.state,
        ...(o.detail ? { reason: o.detail } : {}),
      })
    }
    return inputs
  }

  /**
   * What a node's agent says of the node's own footing becomes its link state: its NICs (a link
   * down, a bond short of a slave) and, on vSphere, its ESX host as vCenter sees it. Degraded is
   * one channel, never a verdict: the node stays healthy and is placed on last. Connectivity
   * (targets reached, summed over its ping resources) scores it against the others, like pingd.
   */
  private footing(batch: ObservationBatch): Input[] {
    const inputs: Input[] = []
    const links = batch.observations.filter(
      (o) => (o.driver === 'nic' || o.driver === 'vsphere-host') && o.state !== 'unknown',
    )
    if (links.length > 0) {
      const bad = links.filter((o) => o.state === 'failed' || o.metrics?.degraded === 1)
      inputs.push({
        type: 'link-state',
        node: batch.node,
        degraded: bad.length > 0,
        detail: bad.map((o) => o.detail ?? `${o.target} ${o.state}`).join('; ') || 'all links up',
      })
    }
    const pings = batch.observations.filter(
      (o) => o.driver === 'ping' && o.metrics?.total !== undefined && o.metrics.reachable !== undefined,
    )
    if (pings.length > 0)
      inputs.push({
        type: 'connectivity',
        node: batch.node,
        reachable: pings.reduce((sum, o) => sum + (o.metrics?.reachable ?? 0), 0),
        total: pings.reduce((sum, o) => sum + (o.metrics?.total ?? 0), 0),
      })
    return inputs
  }

  /**
   * A vm's guest heartbeat (its driver's `guestHeartbeats` counter) is alive while the counter goes
   * up; the first sighting on a node only sets the baseline, and a counter that went down (the
   * agent restarted) sets it again. Each sighting's age goes with it (`guest-sample`): the engine
   * never counts a guest silent past what its monitor has answered.
   */
  private guestHeartbeats(batch: ObservationBatch): Input[] {
    const inputs: Input[] = []
    for (const o of batch.observations) {
      const count = o.metrics?.guestHeartbeats
      if (count === undefined || o.state !== 'running') continue
      if (o.ageMs !== undefined)
        inputs.push({ type: 'guest-sample', node: batch.node, resource: o.target, ageMs: o.ageMs })
      const key = `${batch.node}\u0000${o.target}`
      const last = this.guestCounters.get(key)
      this.guestCounters.set(key, count)
      if (last !== undefined && count > last) inputs.push({ type: 'guest-heartbeat', resource: o.target })
    }
    return inputs
  }
}

/**
 * An agent's result of a command as the engine's input, with the driver's recovery scope
 * (transient: retry here; local: elsewhere; config: never). A driver's failure says its own why (the
 * record names the node and the scope); a refusal (expired, replayed, ...) is not the driver's, so
 * config, and says it was refused.
 */
export function actionResultInput(actionId: string, result: CommandResult): Input {
  if (result.status === 'ok') return { type: 'action-result', actionId, node: result.node, ok: true }
  const code = result.error?.code
  const kind = code === 'transient' || code === 'local' ? code : 'config'
  const driverFailure = result.status === 'failed' && (kind === code || code === 'config')
  const message = !result.error
    ? `${result.node} ${result.status} the command`
    : driverFailure
      ? result.error.message
      : `${result.node} ${result.status} the command: ${result.error.code}: ${result.error.message}`
  return { type: 'action-result', actionId, node: result.node, ok: false, error: { kind, message } }
}

/** An engine action that an agent carries out (fences are the hub's, alerts the operator's). */
export type AgentAction = Exclude<Action, { type: 'fence' | 'alert' }>

/**
 * The command an engine action becomes, for the agent on `target`. The action id travels with it:
 * it is the agent's idempotency key (an action asked again is answered from its record), and a
 * result the hub no longer waits for (late, or sent to an earlier run or another hub of the group)
 * still reaches the engine by it.
 */
export function commandFor(a: AgentAction): {
  target: string
  action: CommandAction
  args: Record<string, string>
} {
  const args: Record<string, string> = { resource: a.resource, decision: a.decision, action: a.id }
  if (a.type === 'migrate') args.to = a.to
  return { target: a.node, action: a.type, args }
}
