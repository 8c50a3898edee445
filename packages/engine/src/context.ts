import { type PhiParams, phi } from './phi.js'
import type { ClusterSpec, DetectorSpec, NodeSpec, ResourceSpec } from './spec.js'
import type { Action, ChannelEvidence, DecisionRecord, EngineEnv, EngineState, NodeState } from './types.js'

type NewRecord = Omit<DecisionRecord, 'id' | 'at' | 'policyVersion' | 'correlationId'> & {
  correlationId?: string | null
}
type NewAction = Action extends infer A ? (A extends Action ? Omit<A, 'id'> : never) : never

export function phiParams(d: DetectorSpec): PhiParams {
  return {
    firstIntervalMs: d.firstIntervalMs,
    minStdDevMs: d.minStdDevMs,
    acceptablePauseMs: d.acceptablePauseMs,
    window: d.window,
  }
}

/** One step's working set: a private copy of the state, the time, and what the step produced. */
export class StepContext {
  readonly actions: Action[] = []
  readonly records: DecisionRecord[] = []
  readonly now: number
  readonly nodeSpecs: NodeSpec[]
  readonly resourceSpecs: ResourceSpec[]

  constructor(
    readonly spec: ClusterSpec,
    readonly state: EngineState,
    readonly env: EngineEnv,
  ) {
    this.now = env.now()
    this.nodeSpecs = [...spec.nodes].sort((a, b) => a.id.localeCompare(b.id))
    this.resourceSpecs = [...spec.resources].sort(
      (a, b) => b.priority - a.priority || a.id.localeCompare(b.id),
    )
  }

  record(r: NewRecord): string {
    const id = this.env.newId('decision')
    const { correlationId, ...rest } = r
    this.records.push({
      id,
      at: this.now,
      policyVersion: this.spec.policyVersion,
      correlationId: correlationId ?? id,
      ...rest,
    })
    return id
  }

  act(a: NewAction): string {
    const id = this.env.newId('action')
    this.actions.push({ ...a, id } as Action)
    return id
  }

  alert(decision: string, severity: 'warning' | 'critical', subject: string, message: string): void {
    this.act({ type: 'alert', decision, severity, subject, message })
  }

  node(id: string): NodeState {
    const n = this.state.nodes[id]
    if (!n) throw new Error(`engine: no state for node ${id}`)
    return n
  }

  nodeSpec(id: string): NodeSpec | undefined {
    return this.spec.nodes.find((n) => n.id === id)
  }

  hubPhi(id: string): number {
    return phi(this.node(id).hub, this.now, phiParams(this.spec.detection.hub))
  }

  hubAlive(id: string): boolean {
    return this.hubPhi(id) < this.spec.detection.hub.threshold
  }

  /**
   * Power read back off (by a fence device or a status read) and not heard since: dead whatever
   * the detector says, since heartbeats sent just before the power-off keep phi low for a while.
   */
  provenOff(id: string): boolean {
    const n = this.node(id)
    return n.power.state === 'off' && (n.hub.lastAt === null || n.hub.lastAt <= n.power.at || !n.heard)
  }

  /** The nodes (themselves heard by the hub) whose fresh peer report says they hear `id`. */
  peersHearing(id: string): string[] {
    const ttl = this.spec.detection.peerReportTtlMs
    return this.nodeSpecs
      .map((n) => n.id)
      .filter((other) => {
        if (other === id) return false
        const report = this.node(other).hears
        return (
          report !== null && this.now - report.at <= ttl && report.peers.includes(id) && this.hubAlive(other)
        )
      })
  }

  diskAlive(id: string): boolean | null {
    const d = this.node(id).disk
    if (d.lastAt === null) return null
    return phi(d, this.now, phiParams(this.spec.detection.disk)) < this.spec.detection.disk.threshold
  }

  /** What each independent channel says about a node, for decision records. */
  evidence(id: string): ChannelEvidence[] {
    const n = this.node(id)
    const hubPhi = this.hubPhi(id)
    const silentMs = n.hub.lastAt === null ? null : this.now - n.hub.lastAt
    const peers = this.peersHearing(id)
    const disk = this.diskAlive(id)
    const out: ChannelEvidence[] = [
      {
        channel: 'hub',
        alive: hubPhi < this.spec.detection.hub.threshold,
        says: !n.heard
          ? 'never heard since start'
          : `last heartbeat ${fmtMs(silentMs ?? 0)} ago (phi ${fmtPhi(hubPhi)})`,
      },
      {
        channel: 'peers',
        alive: peers.length > 0,
        says: peers.length > 0 ? `heard by ${peers.join(', ')}` : 'no peer hears it',
      },
    ]
    if (disk !== null)
      out.push({
        channel: 'disk',
        alive: disk,
        says: disk ? 'disk heartbeat advancing' : 'disk heartbeat stalled',
      })
    if (n.power.state !== 'unknown') {
      out.push({
        channel: 'power',
        alive: n.power.state === 'on',
        says: `power ${n.power.state} (read from ${n.power.device ?? '?'})`,
      })
    }
    return out
  }

  inMaintenance(nodeId: string | null): boolean {
    if (this.state.maintenance) return true
    return nodeId !== null && this.state.nodes[nodeId]?.maintenance != null
  }
}

export function fmtMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`
}

function fmtPhi(p: number): string {
  return Number.isFinite(p) ? p.toFixed(1) : 'inf'
}
