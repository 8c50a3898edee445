import type { NodeCondition } from '@vigil/engine'
import type { Hypervisor, Observation } from '@vigil/protocol'
import { SeqWindow } from './seq-window.js'
import type { NodeRow } from './store.js'

/**
 * What the engine says of a node (EngineLoop.condition): its classification, since when (engine
 * time, wall-anchored ms), its health score and fence phase, and whether it is in maintenance or
 * being emptied.
 */
export interface NodeJudgement {
  condition: NodeCondition
  since: number
  health: number
  fence: string
  /** In maintenance (nothing acts on it), with when it re-arms by itself (null: until switched off). */
  maintenance: { until: number | null } | null
  evacuating: boolean
}

/**
 * A node as the API, the live feed, `vigil status` and the status page show it. Its `state` is the
 * engine's classification, the one truth about a node (unknown while the engine does not judge it:
 * not in the cluster file, an agent that shut down cleanly in observe mode, a standby hub);
 * `shutdownAt` says its agent announced a clean shutdown; the rest is what the hub stores and the
 * agent's latest observations.
 */
export type NodeView = Omit<NodeRow, 'firstSeen'> & {
  state: NodeCondition
  /** When the engine classified it so (null: not judged). */
  stateSince: number | null
  engine: NodeJudgement | null
  observations: Observation[]
}

interface LiveNode {
  row: NodeRow
  lastSeq: number | null
  heartbeatDirty: boolean
  observations: Observation[]
  /** De-duplicates the current incarnation's events (QoS 1 and buffer replays resend). */
  events: SeqWindow
}

/**
 * The hub's in-memory view of every node: what its agent said (incarnation, version, facts, a
 * clean shutdown, observations), never a judgement of its own. Heartbeats only touch memory;
 * callers persist rows when they change and flush heartbeat times in batches. Views join each node
 * with the engine's judgement of it (`judge`).
 */
export class NodeTable {
  private readonly nodes = new Map<string, LiveNode>()
  /** `running()` as last computed, while no node was added and no shutdown set or cleared since. */
  private runningIds: readonly string[] | null = null

  /**
   * `judge`: what the engine says of a node now, or null when it does not judge it. `declared`: the
   * cluster file's nodes, shown even before (or without) a word from their agent: a node that never
   * reported is the one an operator most needs to see.
   */
  constructor(
    private readonly judge: (id: string) => NodeJudgement | null = () => null,
    private readonly declared: () => string[] = () => [],
  ) {}

  /** Seeds the table from the store at hub start. */
  load(rows: NodeRow[]): void {
    for (const row of rows) this.nodes.set(row.id, liveNode(row))
    this.runningIds = null
  }

  get(id: string): LiveNode | undefined {
    return this.nodes.get(id)
  }

  ensure(id: string, nowWall: number): { node: LiveNode; created: boolean } {
    const existing = this.nodes.get(id)
    if (existing) return { node: existing, created: false }
    const node = liveNode(emptyRow(id, nowWall))
    this.nodes.set(id, node)
    this.runningIds = null
    return { node, created: true }
  }

  /**
   * Sets or clears a node's announced clean shutdown: through here, not on its row, so that
   * `running()` knows its answer changed.
   */
  setShutdown(node: LiveNode, at: number | null): void {
    if (node.row.shutdownAt === at) return
    if ((node.row.shutdownAt === null) !== (at === null)) this.runningIds = null
    node.row.shutdownAt = at
  }

  /**
   * Every node whose agent has not announced a clean shutdown (heard, or known from the store), by
   * id. The same array while that set is unchanged (the engine asks every tick; sorting 10,000
   * ids each time cost it 1-3 ms): compare it by identity, never modify it.
   */
  running(): readonly string[] {
    if (this.runningIds === null) {
      const out: string[] = []
      for (const node of this.nodes.values()) if (node.row.shutdownAt === null) out.push(node.row.id)
      this.runningIds = out.sort()
    }
    return this.runningIds
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

  view(id: string): NodeView | undefined {
    const node = this.nodes.get(id) ?? (this.declared().includes(id) ? neverHeard(id) : undefined)
    return node ? this.toView(node) : undefined
  }

  views(): NodeView[] {
    const unheard = this.declared()
      .filter((id) => !this.nodes.has(id))
      .map(neverHeard)
    return [...this.nodes.values(), ...unheard]
      .sort((a, b) => a.row.id.localeCompare(b.row.id))
      .map((n) => this.toView(n))
  }

  /**
   * Each node `views` shows, in its order, with its health: what the history samples every 10 s,
   * without building the views (60-90 ms at 10,000 nodes, issue #21).
   */
  healths(): { id: string; health: number | null }[] {
    const ids = [...this.nodes.keys()]
    for (const id of this.declared()) if (!this.nodes.has(id)) ids.push(id)
    return ids
      .sort((a, b) => a.localeCompare(b))
      .map((id) => ({ id, health: this.judge(id)?.health ?? null }))
  }

  private toView(node: LiveNode): NodeView {
    const { firstSeen: _firstSeen, ...row } = node.row
    const engine = this.judge(row.id)
    return {
      ...row,
      state: engine?.condition ?? 'unknown',
      stateSince: engine?.since ?? null,
      engine,
      observations: node.observations,
    }
  }
}

export type { LiveNode }

/** A cluster-file node no agent has spoken for: shown, never stored. */
function neverHeard(id: string): LiveNode {
  return liveNode(emptyRow(id, 0))
}

/** A node's row before its agent has said anything. */
function emptyRow(id: string, firstSeen: number): NodeRow {
  return {
    id,
    shutdownAt: null,
    incarnation: null,
    lastHeartbeatAt: null,
    role: null,
    agentVersion: null,
    capabilities: [],
    facts: null,
    firstSeen,
  }
}

/** A node's in-memory record, with nothing tracked yet. */
function liveNode(row: NodeRow): LiveNode {
  return { row, lastSeq: null, heartbeatDirty: false, observations: [], events: new SeqWindow() }
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
