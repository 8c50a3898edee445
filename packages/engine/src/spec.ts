import { idSchema } from '@vigil/protocol/vocabulary'
import { z } from 'zod'

const id = idSchema
const ms = z.number().int().nonnegative()

/**
 * A phi detector's settings, each key defaulting on its own to the channel's default: a cluster
 * file that sets one key (`guest: { acceptablePauseMs: 500 }`) keeps the channel's other defaults.
 */
function detectorSchema(defaults: {
  firstIntervalMs: number
  minStdDevMs: number
  acceptablePauseMs: number
}) {
  return z
    .strictObject({
      /** phi at which a channel counts as silent. */
      threshold: z.number().positive().default(8),
      firstIntervalMs: z.number().int().positive().default(defaults.firstIntervalMs),
      minStdDevMs: z.number().int().positive().default(defaults.minStdDevMs),
      acceptablePauseMs: ms.default(defaults.acceptablePauseMs),
      window: z.number().int().min(2).max(1000).default(100),
    })
    .prefault({})
}
export type DetectorSpec = z.output<ReturnType<typeof detectorSchema>>

const ladderStep = z.enum(['restart', 'reboot-vm', 'reset-vm', 'relocate'])
export type LadderStep = z.infer<typeof ladderStep>

/** Policy fields without defaults: the shape of a resource's overrides. */
const policyFields = {
  /** Failures tolerated in `windowMs` at one ladder step before moving to the next. */
  maxRestarts: z.number().int().nonnegative(),
  windowMs: ms,
  /** A failure is forgotten this long after it happened (fail counts decay by themselves). */
  failureTimeoutMs: ms,
  /** Recovery steps in order; after the last one the resource is blocked (visible, alerted). */
  ladder: z.array(ladderStep).min(1),
  /**
   * What a blocked resource's last failure also does (ExpressCluster's final action): notify only
   * (left as it is, alerted); stop it where it runs (and what depends on it); or fence its node
   * (a host that fails everything it is given is taken out, its other resources recover elsewhere).
   */
  finalAction: z.enum(['notify', 'stop', 'fence-node']),
  /**
   * The deadline of an action whose driver declares no timeout (an agent that does not advertise
   * one): no result within it is a failure. An action whose driver declares a timeout has that
   * one's deadline, plus `actionMarginMs` (docs/engine.md, "Which clock governs each action").
   */
  actionTimeoutMs: ms,
  /** Added to a driver's declared timeout: delivery, queueing at the agent and the result's way back. */
  actionMarginMs: ms,
  /** Bonus for staying where it runs, against moving to a higher-scored node (failback). */
  stickiness: z.number().int(),
  /**
   * A failback waits until the preferred node has been healthy this long: a host that flaps
   * (back, down, back) never pulls its resources over and back each time.
   */
  failbackStableMs: ms,
}

/** Cluster-wide defaults, every field filled in. */
const resourcePolicySchema = z.strictObject({
  maxRestarts: policyFields.maxRestarts.default(3),
  windowMs: policyFields.windowMs.default(600_000),
  failureTimeoutMs: policyFields.failureTimeoutMs.default(600_000),
  ladder: policyFields.ladder.default(['restart', 'relocate']),
  finalAction: policyFields.finalAction.default('notify'),
  actionTimeoutMs: policyFields.actionTimeoutMs.default(30_000),
  actionMarginMs: policyFields.actionMarginMs.default(10_000),
  stickiness: policyFields.stickiness.default(100),
  failbackStableMs: policyFields.failbackStableMs.default(30_000),
})

/** A resource's overrides: only the keys it sets replace the cluster defaults. */
const resourcePolicyOverridesSchema = z.strictObject(policyFields).partial()
export type ResourcePolicy = z.output<typeof resourcePolicySchema>

export const resourceSpecSchema = z.strictObject({
  id,
  kind: z.enum(['app', 'vm', 'guest-app']).default('app'),
  /** For a guest-app: the vm resource it runs inside (its ladder can reboot or reset that vm). */
  vm: id.optional(),
  requires: z.strictObject({ memoryMb: ms.default(0), vcpus: ms.default(0) }).prefault({}),
  /** Nodes it may run on (default: all). */
  allowedNodes: z.array(id).optional(),
  /** Placement preference: node -> score (higher wins). */
  preferred: z.record(id, z.number().int()).default({}),
  /** Higher is placed first when capacity is short. */
  priority: z.number().int().default(0),
  /** Started only after these are running (colocated with them when `colocate`), stopped before them. */
  dependsOn: z.array(id).default([]),
  colocate: z.boolean().default(false),
  /** Never on the same node as these. */
  antiAffinity: z.array(id).default([]),
  policy: resourcePolicyOverridesSchema.default({}),
  /** Observe only: Vigil never starts, stops or moves it. */
  unmanaged: z.boolean().default(false),
  /** A vm that may be live-migrated (evacuation for maintenance moves it without downtime). */
  liveMigrate: z.boolean().default(false),
  /**
   * A vm whose guest agent sends heartbeats: none within this long after the vm started (or was
   * reset) means its guest hung while booting, handled as a hung guest (reset, then the ladder).
   * Unset: the guest heartbeat is watched only once it has begun.
   */
  bootAllowanceMs: ms.optional(),
})
export type ResourceSpec = z.output<typeof resourceSpecSchema>

export const fenceLevelSchema = z.strictObject({
  /** Every device of a level must confirm the node off (e.g. both PDU outlets of a dual PSU). */
  devices: z.array(id).min(1),
  timeoutMs: ms.default(10_000),
  /**
   * A device that does not answer (unreachable, timed out) or answers the node still on is tried
   * again this many times, after `retryBackoffMs`, doubled each time, before the next level
   * (Pacemaker's pcmk_reboot_retries). A refusal of the credentials is never retried.
   */
  retries: z.number().int().min(0).max(10).default(1),
  retryBackoffMs: ms.default(1000),
})

export const nodeSpecSchema = z.strictObject({
  id,
  capacity: z.strictObject({ memoryMb: ms.default(1_000_000), vcpus: ms.default(1_000) }).prefault({}),
  /** Ordered fence levels: the next is tried when one fails. No levels: the node cannot be fenced. */
  fencing: z.array(fenceLevelSchema).default([]),
  /** Wait this long before fencing this node (two-node races: the delayed node loses). */
  fenceDelayMs: ms.default(0),
  failureDomain: z.string().default('default'),
})
export type NodeSpec = z.output<typeof nodeSpecSchema>

export const clusterSpecSchema = z.strictObject({
  /** Recorded in every decision so a record says which rules produced it. */
  policyVersion: z.string().default('1'),
  detection: z
    .strictObject({
      // Tuned for the agent's defaults (heartbeat every 250 ms, disk heartbeat every 250 ms): a
      // crashed host is silent on every channel within ~0.7 s. Network blips cannot fence because a
      // host whose disk heartbeat still advances is `isolated`, fenced only after `isolationGraceMs`.
      hub: detectorSchema({ firstIntervalMs: 250, minStdDevMs: 50, acceptablePauseMs: 100 }),
      disk: detectorSchema({ firstIntervalMs: 250, minStdDevMs: 50, acceptablePauseMs: 50 }),
      guest: detectorSchema({ firstIntervalMs: 500, minStdDevMs: 200, acceptablePauseMs: 1000 }),
      /**
       * How far past a vm monitor's latest answer a guest's silence is still counted (a monitor
       * answers about once a second). Past it, a monitor that stopped answering (a hung libvirtd,
       * hung storage under the agent) would make a beating guest look hung.
       */
      monitorLagMs: ms.default(1500),
      /** A vm monitor that has not answered for this long is stale: recorded and alerted, once. */
      monitorStaleMs: ms.default(5000),
      /** A peer's report that it hears a node counts for this long. */
      peerReportTtlMs: ms.default(1500),
      /** All channels must agree a node is silent for this long before it is declared dead. */
      confirmMs: ms.default(200),
      /**
       * A node the hub and its peers cannot hear but whose disk heartbeat advances is alive and cut
       * off (`isolated`): it is fenced only once it has been silent this long, so a link flap or a
       * burst of packet loss shorter than this never fences. Its resources wait (they are not started
       * elsewhere before the fence is confirmed).
       */
      isolationGraceMs: ms.default(4000),
      /**
       * A node never heard since the engine started stays `unknown` this long before it can be
       * suspected (Pacemaker's startup fencing waits for dc-deadtime too): agents connecting after
       * the hub are not fenced for being slower to start.
       */
      startupGraceMs: ms.default(10_000),
      /**
       * The startup grace ends early for a node whose silence is witnessed this long on the channels
       * that do not depend on its agent reconnecting: its disk heartbeat still while other nodes'
       * disk beats arrive, and no fresh peer report hearing it. A host that crashed while the hub
       * restarted is then failed over in seconds, not after the grace; a slow agent still beats
       * on the disk and is heard by its peers, so it keeps its grace.
       */
      restartWitnessMs: ms.default(1000),
      /**
       * A node whose agent announced a clean stop (not its host's shutdown) is not judged by its
       * silence for this long: an agent restarted or upgraded is not a dead host. Its resources run
       * unwatched meanwhile; a power reading of off still ends the wait. Null (the default): until
       * a new run of its agent is heard, as Pacemaker and VCS never fence a node that left cleanly.
       */
      agentStoppedHoldMs: ms.nullable().default(null),
      /** After a device reports a live node off: no heartbeat for this long confirms it. */
      fenceVerifyMs: ms.default(500),
      /** Health hysteresis: consecutive bad evaluations before critical, good ones before passing. */
      failuresBeforeCritical: z.number().int().positive().default(3),
      successesBeforePassing: z.number().int().positive().default(3),
    })
    .prefault({}),
  governor: z
    .strictObject({
      windowMs: ms.default(600_000),
      maxFences: z.number().int().nonnegative().default(3),
      maxRestarts: z.number().int().nonnegative().default(50),
      /** More than this share of a failure domain going silent at once: freeze instead of fencing. */
      freezeShare: z.number().min(0).max(1).default(0.5),
      /** "At once": nodes that went silent within this window of each other. */
      freezeWindowMs: ms.default(30_000),
    })
    .prefault({}),
  defaults: resourcePolicySchema.prefault({}),
  /** Placement bonus per reachable ping target (pingd's multiplier): prefer better-connected hosts. */
  connectivityWeight: z.number().int().nonnegative().default(10),
  nodes: z.array(nodeSpecSchema).min(1),
  resources: z.array(resourceSpecSchema).default([]),
})
export type ClusterSpec = z.output<typeof clusterSpecSchema>

const policyCache = new WeakMap<ResourceSpec, { defaults: ResourcePolicy; policy: ResourcePolicy }>()

/** A resource's effective policy: its own overrides on top of the cluster defaults (memoised). */
export function policyOf(spec: ClusterSpec, resource: ResourceSpec): ResourcePolicy {
  const cached = policyCache.get(resource)
  if (cached && cached.defaults === spec.defaults) return cached.policy
  const policy = { ...spec.defaults, ...resource.policy } as ResourcePolicy
  policyCache.set(resource, { defaults: spec.defaults, policy })
  return policy
}

/** Cross-reference checks zod cannot express per field; returns problems as `path: message`. */
export function checkClusterSpec(spec: ClusterSpec): string[] {
  const problems: string[] = []
  const nodes = new Set(spec.nodes.map((n) => n.id))
  const resources = new Set(spec.resources.map((r) => r.id))
  const dup = (list: string[]) => list.filter((x, i) => list.indexOf(x) !== i)
  for (const d of dup(spec.nodes.map((n) => n.id))) problems.push(`nodes: duplicate id "${d}"`)
  for (const d of dup(spec.resources.map((r) => r.id))) problems.push(`resources: duplicate id "${d}"`)
  spec.resources.forEach((r, i) => {
    for (const n of [...(r.allowedNodes ?? []), ...Object.keys(r.preferred)]) {
      if (!nodes.has(n)) problems.push(`resources.${i}: unknown node "${n}"`)
    }
    for (const dep of [...r.dependsOn, ...r.antiAffinity]) {
      if (!resources.has(dep)) problems.push(`resources.${i}: unknown resource "${dep}"`)
    }
    if (r.kind === 'guest-app' && (!r.vm || !resources.has(r.vm)))
      problems.push(`resources.${i}.vm: a guest-app needs the id of its vm resource`)
    if (r.kind === 'guest-app' && r.policy?.finalAction === 'fence-node')
      problems.push(
        `resources.${i}.policy.finalAction: a guest-app's node is its vm, never fenced; reset-vm in its ladder resets it`,
      )
  })
  problems.push(...unsatisfiable(spec))
  return problems
}

/**
 * Resources that could never run, whatever happens to the cluster: a dependency cycle (each waits
 * for the other to run first), a colocation with a dependency on nodes they do not share, an
 * anti-affinity with a resource it must be colocated with. Refused at load rather than found as a
 * resource waiting for ever.
 */
function unsatisfiable(spec: ClusterSpec): string[] {
  const problems: string[] = []
  const byId = new Map(spec.resources.map((r, i) => [r.id, { r, i }]))
  // What each resource waits for before it starts: its dependencies, and a guest-app its vm.
  const waitsFor = (r: ResourceSpec) => [...r.dependsOn, ...(r.kind === 'guest-app' && r.vm ? [r.vm] : [])]
  const state = new Map<string, 'visiting' | 'done'>()
  const reported = new Set<string>()
  const visit = (id: string, trail: string[]): void => {
    if (state.get(id) === 'done' || !byId.has(id)) return
    if (state.get(id) === 'visiting') {
      const cycle = [...trail.slice(trail.indexOf(id)), id]
      const key = [...new Set(cycle)].sort().join(',')
      if (reported.has(key)) return
      reported.add(key)
      const first = byId.get(cycle[0] as string) as { i: number }
      problems.push(
        `resources.${first.i}.dependsOn: a dependency cycle (${cycle.join(' -> ')}): each waits for the next to run first, so none can ever start`,
      )
      return
    }
    state.set(id, 'visiting')
    for (const dep of waitsFor((byId.get(id) as { r: ResourceSpec }).r)) visit(dep, [...trail, id])
    state.set(id, 'done')
  }
  for (const r of spec.resources) visit(r.id, [])

  const allNodes = spec.nodes.map((n) => n.id)
  const allowed = (r: ResourceSpec) => new Set(r.allowedNodes ?? allNodes)
  spec.resources.forEach((r, i) => {
    if (!r.colocate) return
    for (const dep of r.dependsOn) {
      const other = byId.get(dep)?.r
      if (!other) continue
      const mine = allowed(r)
      if (![...allowed(other)].some((n) => mine.has(n)))
        problems.push(
          `resources.${i}.colocate: ${r.id} must run on the node of ${dep}, but their allowedNodes share none`,
        )
      if (r.antiAffinity.includes(dep) || other.antiAffinity.includes(r.id))
        problems.push(
          `resources.${i}.antiAffinity: ${r.id} must run on the node of ${dep} (colocate) and never with it (antiAffinity)`,
        )
    }
  })
  return problems
}
