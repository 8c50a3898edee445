import type { FenceOutcome } from '@vigil/protocol/vocabulary'
import type { PhiState } from './phi.js'

/**
 * How the engine sees a node, from independent channels (hub heartbeat, peer reports, shared-disk
 * heartbeat, power state read from a fence device):
 *   unknown      never heard since the engine started
 *   healthy      the hub hears its heartbeats
 *   suspect      the hub does not; not yet corroborated (one lost heartbeat never acts)
 *   partitioned  the hub does not, but peers do: alive and cut from the hub only; never fenced
 *   isolated     neither hub nor peers do, its disk heartbeat advances: alive but cut off
 *   dead         every channel silent for `confirmMs`, or its power read back off
 *   frozen       silent together with too many others (hub-side partition assumed): never fenced
 *   agent-stopped  its agent said it was stopping (not its host) and is silent since: its resources
 *                run unwatched where they were; never fenced for that silence (a clean departure,
 *                as Pacemaker and VCS treat one), until heard again or its power is read off
 */
export type NodeCondition =
  | 'unknown'
  | 'healthy'
  | 'suspect'
  | 'partitioned'
  | 'isolated'
  | 'dead'
  | 'frozen'
  | 'agent-stopped'

/**
 * idle -> (delayed) -> running -> verifying -> confirmed, or -> failed when every level failed.
 * held: the governor's fence budget is spent; retried when it frees up.
 * verifying: every device said off; confirmed once no heartbeat arrives after that.
 */
export type FencePhase = 'idle' | 'delayed' | 'running' | 'verifying' | 'confirmed' | 'failed' | 'held'

export interface FenceState {
  phase: FencePhase
  level: number
  actionId: string | null
  startedAt: number | null
  /** Devices of the current level that have not yet reported the node off. */
  awaiting: string[]
  /** When every device of the level reported off. */
  offAt: number | null
  reason: string | null
  correlationId: string | null
  /** Fence although the node looks alive (a resource could not be stopped on it). */
  forced: string | null
  /** Retries of the current level so far (absent in states saved before retries existed: 0). */
  attempt?: number
  /** A retry of the current level is due then (engine time); null while none waits. */
  retryAt?: number | null
}

export interface NodeState {
  hub: PhiState
  /** False until the first real heartbeat (the detector is seeded at engine start). */
  heard: boolean
  disk: PhiState
  /** Ping targets this node reaches (pingd-like), from its connectivity driver; null if none. */
  connectivity: {
    reachable: number
    total: number
    at: number
    /** Since when it has reached this many (absent in states saved before: treat as `at`). */
    since?: number
  } | null
  /** Resources this node's last complete inventory listed; null until it sends one. */
  inventory: string[] | null
  /** Latest report from this node of which peers it hears. */
  hears: { at: number; peers: string[] } | null
  /**
   * The last power reading: from a fence run's read-back, or (`polled`) from the hub's periodic
   * status read of the node's fence devices, a channel of its own that proves nothing alone.
   */
  power: {
    state: 'on' | 'off' | 'unknown'
    at: number
    device: string | null
    polled?: boolean
    /** For a polled reading: the node was heard (its heartbeats alive) when it was read. */
    beating?: boolean
  }
  /**
   * A device whose periodic reading said off while the node kept sending heartbeats: it (or its
   * plug mapping) is wrong, and was said once; null or absent otherwise.
   */
  powerMismatch?: string | null
  condition: NodeCondition
  conditionSince: number
  /**
   * Resources this node must report on before they start anywhere (it was the target of their
   * live migration, which was cut off: it may have taken them over), with since when. Any report
   * of the resource from this node, or its complete inventory, answers.
   */
  askedFor?: Record<string, number>
  /** When every channel was first seen silent (null while any channel hears it). */
  silentSince: number | null
  /**
   * Not heard since the hub (re)started: since when its silence has been witnessed on the channels
   * that do not go through the hub (its disk heartbeat still while other nodes' advance, no peer
   * hearing it). Absent or null while not.
   */
  graceWitness?: number | null
  health: HealthState
  fence: FenceState
  maintenance: Maintenance | null
  /** Being emptied for maintenance: nothing is placed here; it enters maintenance once empty. */
  evacuating: boolean
  /** A degraded link (a bond lost a slave, a flapping NIC): still healthy, but placed on last. */
  degraded: { since: number; detail: string } | null
  /**
   * The correlation id of the node's current incident: from its first step away from healthy to
   * its return, every classification, fence and recovery it causes shares it (one trace, one
   * `vigil why` story). Absent in states saved before it existed.
   */
  incident?: string | null
  /**
   * Its agent announced a clean stop of itself (its host staying up) at `at`: its silence since is
   * not a death. `newRun`: a new run of the agent has spoken; its first heartbeat ends the hold.
   * Absent or null otherwise.
   */
  agentStopped?: { at: number; newRun: boolean } | null
  /** How often its agent said it beats; absent before any did (the detector's own seed then). */
  hubIntervalMs?: number
}

export interface HealthState {
  score: number
  critical: boolean
  bad: number
  good: number
}

export interface Maintenance {
  /** Re-arms by itself at this time (null: until switched off). */
  until: number | null
}

/** suspended: a vm paused on purpose by an operator (the hypervisor says so): intended, no failure. */
export type ObservedState = 'running' | 'stopped' | 'failed' | 'paused' | 'suspended'

export type ResourcePhase =
  | 'stopped'
  | 'starting'
  | 'running'
  | 'recovering'
  | 'stopping'
  | 'migrating'
  | 'waiting'
  | 'blocked'
  | 'unmanaged'
  /** A vm an operator suspended (through Vigil or outside it): intended, never recovered. */
  | 'suspended'

/** Actions taken on a resource (fence and alert are not). */
export type ResourceActionType =
  | 'start'
  | 'stop'
  | 'restart'
  | 'reset-vm'
  | 'reboot-vm'
  | 'migrate'
  | 'suspend'
  | 'resume'

export interface PendingAction {
  actionId: string
  type: ResourceActionType
  node: string
  issuedAt: number
  deadline: number
  /** For a migration: where it goes. */
  to?: string
  /** The resource the action is on, when not the one pending it (a guest-app's reset of its vm). */
  resource?: string
  /** What to do once a stop succeeds: place the resource elsewhere. */
  afterStop: 'place' | null
  /**
   * The result of a migration can no longer come (the agent that ran it restarted): its outcome is
   * settled by observation (running on the target and stopped on the source), or at its deadline.
   */
  resultLost?: boolean
}

export interface ResourceState {
  /** Where Vigil placed it (or found it running); null while it has no home. */
  node: string | null
  phase: ResourcePhase
  phaseSince: number
  observed: Record<string, { state: ObservedState; at: number; reason?: string }>
  /** Failure times and the ladder step each was handled at; decay after failureTimeoutMs. */
  /**
   * Failures counted by the ladder: when, at which step, on which node (absent in states saved
   * before the ladder counted per node). In-place steps count only the current node's.
   */
  failures: { at: number; step: number; node?: string }[]
  step: number
  /** Key of the failure already acted upon ("failed@<time>", "hang@<time>"): one failure acts once. */
  handledFailure: string | null
  pending: PendingAction | null
  /** A node to avoid when placing (the one it was relocated away from). */
  avoid: string | null
  move: { node: string; until: number } | null
  /**
   * A relocation in progress: dependents are stopped first, then this resource, then it is placed.
   * `inPlace`: it only stops for a dependency's restart in place, and is placed back where it ran.
   */
  relocating: { why: string; rule: string; decision: string; inPlace?: boolean } | null
  /**
   * Where it ran before it stopped for a dependency's restart in place: its stickiness holds there
   * when it is placed again. Absent or null otherwise; cleared once it runs.
   */
  returnTo?: string | null
  /**
   * A restart in place decided while what depends on it ran: those stop first (as for a
   * relocation), then this action is issued, and they start again once it runs. Absent or null
   * while none waits.
   */
  restartAfterDependents?: {
    type: 'restart' | 'start' | 'reset-vm'
    node: string
    decision: string
    /** When it was decided: a copy seen running again since then recovered on its own. */
    since: number
  } | null
  /**
   * A failback waits for its node to be healthy for `failbackStableMs`: then (engine time) it is
   * considered again; absent or null while none waits.
   */
  failbackDue?: number | null
  /** A vm with a boot allowance started then and its guest has not spoken yet; null otherwise. */
  bootWaitFrom?: number | null
  maintenance: Maintenance | null
  guest: PhiState | null
  /**
   * Its vm monitor's latest answer about the guest: on which node, when it was taken (engine time:
   * received less the observation's age), and whether its staleness has been said. Absent or null:
   * no observation carried an age (the guest is judged at the engine's now).
   */
  guestSample?: { node: string; at: number; staleSaid: boolean } | null
  correlationId: string | null
  /** Waiting for nodes not heard yet since the hub started (no alert until they had their chance). */
  awaitingNodes?: boolean
  /** An operator stopped it (target role stopped): kept stopped until started. Absent: false. */
  stoppedByOperator?: boolean
  /**
   * An operator's wish for a vm: true, suspended (kept so while its node lives); false, resumed
   * (until it runs again); absent or null: none, and a suspend seen from outside is respected.
   */
  wantSuspended?: boolean | null
  /**
   * Why it is in its phase: the rule and the words of the last decision that put it there (or, for
   * a resource still waiting, changed what it waits for). Absent in states saved before it existed.
   * Nothing waits in silence: the hub exports it with the time spent waiting, and alerts on it.
   */
  reason?: { rule: string; why: string }
}

export interface EngineState {
  /** Bumped when the shape of this object changes (the hub persists it). */
  schema: 1
  nodes: Record<string, NodeState>
  resources: Record<string, ResourceState>
  governor: { fences: number[]; restarts: number[] }
  maintenance: Maintenance | null
  /**
   * What each node's agent (a host's, or a guest's under its vm id) declares as the timeout of each
   * action on each of its resources: an action's deadline is its driver's, plus a margin. Absent in
   * states saved before it existed, and for agents that declare nothing.
   */
  actionTimeouts?: Record<string, Record<string, DeclaredTimeouts>>
}

/** An agent's declared timeout per action of one resource, in ms. */
export type DeclaredTimeouts = Partial<Record<ResourceActionType, number>>

/** What the world tells the engine. Times come from env.now(), never from inputs. */
export type Input =
  /** `intervalMs`: how often its agent says it beats (its detector is seeded with it). */
  | { type: 'heartbeat'; node: string; intervalMs?: number }
  /**
   * A node's agent announced, as it stopped cleanly, that it was going (its `offline` status);
   * `hostShutdown` when its host is shutting down with it (then its silence is judged as usual).
   */
  | { type: 'agent-stopped'; node: string; hostShutdown: boolean }
  | { type: 'disk-heartbeat'; node: string }
  | { type: 'peer-view'; node: string; hears: string[] }
  | { type: 'guest-heartbeat'; resource: string }
  /**
   * A vm's monitor on `node` produced its latest answer `ageMs` ago (its observation's age): its
   * guest is judged silent only up to what that monitor could see, never past a monitor that
   * stopped answering.
   */
  | { type: 'guest-sample'; node: string; resource: string; ageMs: number }
  /** A node's links: degraded when a bond lost a slave or a NIC flaps (nic driver, issue #3). */
  | { type: 'link-state'; node: string; degraded: boolean; detail: string }
  /** How many of its configured ping targets (gateway, peers) a node reaches. */
  | { type: 'connectivity'; node: string; reachable: number; total: number }
  | { type: 'resource-state'; node: string; resource: string; state: ObservedState; reason?: string }
  /**
   * A node's agent declares the timeout of each action of its resources (its drivers' own budgets,
   * as OCF meta-data advises): replaces what that node declared before. Unknown actions are ignored.
   */
  | { type: 'action-timeouts'; node: string; resources: Record<string, Partial<Record<string, number>>> }
  /** A node's complete list of the resources present on it: any resource not listed is stopped there. */
  | {
      type: 'inventory'
      node: string
      resources: Record<string, ObservedState>
      /** What its monitor said of a resource (a failure's detail), by resource id. */
      reasons?: Record<string, string>
    }
  /**
   * A node's power as a fence device read it: during a fence or a takeover, or (`polled`) by the
   * hub's periodic status read, which counts as proof of death only with every other channel silent.
   */
  | { type: 'power-state'; node: string; state: 'on' | 'off'; device: string; polled?: boolean }
  | {
      type: 'action-result'
      actionId: string
      /** The node that answered: when given, only an action pending on that node matches. */
      node?: string
      ok: boolean
      error?: { kind: 'transient' | 'local' | 'config'; message: string }
    }
  | { type: 'fence-result'; actionId: string; node: string; device: string; outcome: FenceOutcome }
  | { type: 'operator'; op: OperatorOp }
  /** The hub process restarted and resumed this state: its own silence must not count as the nodes'. */
  | { type: 'hub-restarted' }
  /**
   * A standby of the hub group took over and resumed the state the leader committed; for each node
   * it heard while it listened, how long before now it last heard it (its own witness).
   */
  | {
      type: 'hub-takeover'
      heardAgoMs: Record<string, number>
      /** Why the hub resumes acting, when not as a standby taking over (a database writable again). */
      reason?: string
    }
  /**
   * The hub's process was frozen (SIGSTOP, its VM paused) or its event loop blocked for `forMs`:
   * it heard nothing in that time, and what was queued meanwhile arrives only now.
   */
  | { type: 'hub-paused'; forMs: number }
  /**
   * A node's agent restarted (a new incarnation spoke): whatever it was sent and had not answered
   * died with the old one.
   */
  | { type: 'agent-restarted'; node: string }

export type OperatorOp =
  /** live: the operator asked for a live migration (`vigil migrate`); the hub refuses it for anything else. */
  | { op: 'move'; resource: string; node: string; forMs: number; live?: boolean }
  | { op: 'maintenance'; scope: 'cluster' | 'node' | 'resource'; id?: string; on: boolean; forMs?: number }
  | { op: 'cleanup'; resource: string }
  /**
   * An operator's wanted state for a resource (Pacemaker's target-role, `pcs resource disable` and
   * `enable`): stopped is stopped wherever it runs (what depends on it first) and never placed
   * until started again; started lets the engine place it as usual.
   */
  | { op: 'target'; resource: string; role: 'stopped' | 'started' }
  /**
   * An operator suspends a running vm (pauses it in memory on its node, `vigil resource suspend`),
   * or resumes it: an intended state, never recovered as a failure (VCS's admin suspend).
   */
  | { op: 'suspend'; resource: string; on: boolean }
  /** The cluster file was re-read (`vigil cluster reload`): recorded with what changed. */
  | { op: 'reload'; changes: string[] }
  | { op: 'ack-fence'; node: string; by: string }
  /** An operator has a node fenced (it need not look failed): its resources then recover elsewhere. */
  | { op: 'fence'; node: string; by: string }
  /** Empty a node for maintenance (live-migrating vms that allow it), then put it in maintenance. */
  | { op: 'evacuate'; node: string }

/** What the engine asks the world to do. Every action names the decision that produced it. */
export type Action =
  | { type: 'start' | 'stop' | 'restart'; id: string; decision: string; resource: string; node: string }
  | { type: 'reboot-vm' | 'reset-vm'; id: string; decision: string; resource: string; node: string }
  | { type: 'suspend' | 'resume'; id: string; decision: string; resource: string; node: string }
  /** Live migration of a running vm: no downtime; the agent on `node` moves it to `to`. */
  | { type: 'migrate'; id: string; decision: string; resource: string; node: string; to: string }
  | {
      type: 'fence'
      id: string
      decision: string
      node: string
      level: number
      devices: string[]
      timeoutMs: number
    }
  | {
      type: 'alert'
      id: string
      decision: string
      severity: 'warning' | 'critical'
      subject: string
      message: string
    }

export interface ChannelEvidence {
  channel: 'hub' | 'peers' | 'disk' | 'power' | 'guest' | 'nic'
  /** What this channel says, in words: "silent for 1.2 s (phi 9.3)", "heard by node2". */
  says: string
  alive: boolean | null
}

export interface Candidate {
  node: string
  score: number
  /** Why this node could not be chosen, or null if it was eligible. */
  eliminated: string | null
}

/** Why the engine did (or refused to do) something. Every action and refusal has one. */
export interface DecisionRecord {
  id: string
  at: number
  kind:
    | 'node-condition'
    | 'fence'
    | 'fence-result'
    | 'resource-phase'
    | 'start'
    | 'stop'
    | 'restart'
    | 'recover-vm'
    | 'place'
    | 'migrate'
    | 'refuse'
    | 'blocked'
    | 'freeze'
    | 'operator'
  node?: string
  resource?: string
  /** One human sentence; the simulator's log is made of these. */
  summary: string
  /** The rule that chose, e.g. "ladder.restart", "fence.level-failed", "safety.copy-may-run". */
  rule: string
  classification?: NodeCondition
  evidence?: ChannelEvidence[]
  /** Best first, at most 25; `candidatesOmitted` counts the rest. */
  candidates?: Candidate[]
  candidatesOmitted?: number
  policyVersion: string
  correlationId: string
  /** Set by the hub, not the engine: the OpenTelemetry trace of this decision's incident. */
  traceId?: string
}

/** The engine's only window on the world besides its inputs. */
export interface EngineEnv {
  /** Milliseconds; the hub passes its monotonic clock, the simulator virtual time. */
  now(): number
  /** A fresh id; deterministic in the simulator. */
  newId(kind: 'action' | 'decision'): string
  /**
   * Check the engine's own bookkeeping at every step (the visit index: visits.ts), throwing on a
   * miss. For tests and the simulator: it asks every resource every step.
   */
  selfCheck?: boolean
}

export interface StepResult {
  state: EngineState
  actions: Action[]
  records: DecisionRecord[]
}
