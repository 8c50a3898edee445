import type { Hypervisor, Observation } from '@vigil/protocol'
import { type LivenessPolicy, type NodeState, nextLivenessState } from './liveness.js'
import { SeqWindow } from './seq-window.js'
import type { NodeRow } from './store.js'

/** A node as the API and live feed show it: what is stored, plus its latest observations. */
export type NodeView = Omit<NodeRow, 'firstSeen'> & { observations: Observation[] }

export interface StateChange {
  node: string
  from: NodeState
  to: NodeState
  at: number
  reason: string
}

interface LiveNode {
  row: NodeRow
  lastHeardMono: number
  lastSeq: number | null
  willReceived: boolean
  heartbeatDirty: boolean
  observations: Observation[]
  /** De-duplicates the current incarnation's events (QoS 1 and buffer replays resend). */
  events: SeqWindow
}

/**
 * The hub's in-memory view of every node. Heartbeats only touch memory; callers persist rows on
 * state changes and flush heartbeat times in batches.
 */
export class NodeTable {
  private readonly nodes = new Map<string, LiveNode>()

  /** Seeds the table from the store at hub start; nothing heard yet, so every node is unknown. */
  load(rows: NodeRow[], nowMono: number, nowWall: number): void {
    for (const row of rows) {
      const state: NodeState = row.state === 'offline' ? 'offline' : 'unknown'
      this.nodes.set(
        row.id,
        liveNode({ ...row, state, stateSince: state === row.state ? row.stateSince : nowWall }, nowMono),
      )
    }
  }

  get(id: string): LiveNode | undefined {
    return this.nodes.get(id)
  }

  ensure(id: string, nowMono: number, nowWall: number): { node: LiveNode; created: boolean } {
    const existing = this.nodes.get(id)
    if (existing) return { node: existing, created: false }
    const node = liveNode(
      {
        id,
        state: 'unknown',
        stateSince: nowWall,
        incarnation: null,
        lastHeartbeatAt: null,
        role: null,
        agentVersion: null,
        capabilities: [],
        facts: null,
        firstSeen: nowWall,
      },
      nowMono,
    )
    this.nodes.set(id, node)
    return { node, created: true }
  }

  /** Applies a transition in memory and returns it, or null when the state is unchanged. */
  transition(node: LiveNode, to: NodeState, at: number, reason: string): StateChange | null {
    const from = node.row.state
    if (from === to) return null
    node.row.state = to
    node.row.stateSince = at
    return { node: node.row.id, from, to, at, reason }
  }

  /** Re-evaluates liveness of every node; returns the transitions it made. */
  evaluate(nowMono: number, nowWall: number, policy: LivenessPolicy): StateChange[] {
    const changes: StateChange[] = []
    for (const node of this.nodes.values()) {
      const next = nextLivenessState(
        { current: node.row.state, lastHeardMono: node.lastHeardMono, willReceived: node.willReceived },
        nowMono,
        policy,
      )
      const silentMs = Math.round(nowMono - node.lastHeardMono)
      const reason =
        node.willReceived && next === 'suspect'
          ? 'connection lost (last will)'
          : `no heartbeat for ${silentMs} ms`
      const change = this.transition(node, next, nowWall, reason)
      if (change) changes.push(change)
    }
    return changes
  }

  /** Heartbeat times changed since the last call, for a batched write. */
  takeDirtyHeartbeats(): [string, number][] {
    const out: [string, number][] = []
    for (const node of this.nodes.values()) {
      if (node.heartbeatDirty && node.row.lastHeartbeatAt !== null) {
        out.push([node.row.id, node.row.lastHeartbeatAt])
        node.heartbeatDirty = false
      }
    }
    return out
  }

  countByState(): Map<NodeState, number> {
    const counts = new Map<NodeState, number>()
    for (const node of this.nodes.values()) counts.set(node.row.state, (counts.get(node.row.state) ?? 0) + 1)
    return counts
  }

  view(id: string): NodeView | undefined {
    const node = this.nodes.get(id)
    return node ? toView(node) : undefined
  }

  views(): NodeView[] {
    return [...this.nodes.values()].sort((a, b) => a.row.id.localeCompare(b.row.id)).map(toView)
  }
}

export type { LiveNode }

/** A node's in-memory record, heard (or seeded) at `nowMono`, with nothing tracked yet. */
function liveNode(row: NodeRow, nowMono: number): LiveNode {
  return {
    row,
    lastHeardMono: nowMono,
    lastSeq: null,
    willReceived: false,
    heartbeatDirty: false,
    observations: [],
    events: new SeqWindow(),
  }
}

function toView(node: LiveNode): NodeView {
  const { firstSeen: _firstSeen, ...row } = node.row
  return { ...row, observations: node.observations }
}

/** A vm as one node's agent reports it: its state there and what runs it (the hypervisor). */
export interface VmSighting {
  resource: string
  node: string
  state: Observation['state']
  hypervisor: Hypervisor
}

/**
 * Every vm the agents report (an observation that carries a hypervisor), per node that reports
 * it, by resource then node. A vm defined on several hosts is reported by each (stopped on all but
 * one, usually), each with its own hypervisor: a cluster may mix KVM, Xen and vSphere nodes.
 */
export function vmSightings(nodes: NodeView[]): VmSighting[] {
  const out: VmSighting[] = []
  for (const n of nodes)
    for (const o of n.observations)
      if (o.hypervisor) out.push({ resource: o.target, node: n.id, state: o.state, hypervisor: o.hypervisor })
  return out.sort((a, b) =>
    a.resource === b.resource ? (a.node < b.node ? -1 : 1) : a.resource < b.resource ? -1 : 1,
  )
}

/**
 * Each resource with the hypervisor of its vm (null: not a vm, or no agent reports it yet): as
 * reported by the node the engine places it on, else by any node that reports it (a vm stopped
 * everywhere is still a KVM or Xen guest).
 */
export function withHypervisors<R extends { id: string; node: string | null }>(
  resources: R[],
  nodes: NodeView[],
): (R & { hypervisor: Hypervisor | null })[] {
  const byResource = new Map<string, VmSighting[]>()
  for (const s of vmSightings(nodes)) {
    const list = byResource.get(s.resource)
    if (list) list.push(s)
    else byResource.set(s.resource, [s])
  }
  return resources.map((r) => {
    const mine = byResource.get(r.id) ?? []
    const hypervisor = (mine.find((s) => s.node === r.node) ?? mine[0])?.hypervisor ?? null
    return { ...r, hypervisor }
  })
}
