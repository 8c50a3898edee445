/**
 * Which resources a step visits. A settled resource that nothing touched needs no visit (`steady`),
 * but finding the others by asking every resource made each step O(resources): 70 of a 100 ms step
 * at 5,000 hosts and 50,000 resources, with nothing changing. The visit index keeps, per state,
 * the resources found unsteady when last looked at, and each resource's node then; a step looks
 * only at those, at what its inputs touched, at what it marked on the way (an action issued or a
 * phase set, on any resource: `StepContext.mark`), and at what a node-level change can matter to.
 * It then asks each of them the same question as before, so the visits, their order and the
 * decisions are the same as a scan of every resource.
 *
 * The contract: a resource that stops being steady without a mark is a bug. `EngineEnv.selfCheck`
 * (the simulator sets it, so every golden scenario runs with it) asks every resource and throws on
 * one the index missed. In the hub a sweep re-asks a slice of the resources each step, so a missed
 * mark would delay a visit by at most SWEEP_STEPS steps, never lose it.
 */

import type { StepContext } from './context.js'
import type { NodeLoad } from './placement.js'
import type { ClusterSpec, ResourceSpec } from './spec.js'
import type { ResourceState } from './types.js'

/** Every resource is re-asked once per this many steps (about 5 s at the hub's 100 ms step). */
const SWEEP_STEPS = 50

/**
 * A resource that is settled and that nothing touched this step needs no visit: its decisions only
 * change with an input about it, a node-level change, or its own timers (pending actions,
 * relocations, moves, decaying failures, maintenance expiry, guest hang detection), and a resource
 * with any of those is not steady.
 */
export function steady(r: ResourceState): boolean {
  return (
    (r.phase === 'running' || r.phase === 'unmanaged' || r.phase === 'blocked') &&
    r.pending === null &&
    r.relocating === null &&
    (r.restartAfterDependents ?? null) === null &&
    r.move === null &&
    (r.failbackDue ?? null) === null &&
    r.failures.length === 0 &&
    r.maintenance === null &&
    r.guest === null &&
    (r.bootWaitFrom ?? null) === null &&
    !hasCopyElsewhere(r)
  )
}

/** A copy reported anywhere but its home is a standing condition: it keeps the resource visited. */
function hasCopyElsewhere(r: ResourceState): boolean {
  for (const node in r.observed) {
    if (node !== r.node && r.observed[node]?.state !== 'stopped') return true
  }
  return false
}

/** Whether this step visits the resource: the question asked of each candidate. */
export function needsVisit(ctx: StepContext, spec: ResourceSpec, r: ResourceState): boolean {
  return ctx.allDirty || ctx.touched.has(spec.id) || !steady(r) || affectedByNodes(ctx, spec, r)
}

/**
 * A settled resource is revisited after a node-level change only if that node can matter to it:
 * it runs there, it prefers that node (failback), or (a guest application) its vm is unsettled,
 * since a dead host sends no reports from inside the guest.
 */
function affectedByNodes(ctx: StepContext, spec: ResourceSpec, r: ResourceState): boolean {
  if (spec.kind === 'guest-app' && spec.vm) {
    const vm = ctx.state.resources[spec.vm]
    if (vm && !steady(vm)) return true
  }
  if (ctx.dirtyNodes.size === 0) return false
  if (r.node !== null && ctx.dirtyNodes.has(r.node)) return true
  for (const node in spec.preferred) if (ctx.dirtyNodes.has(node)) return true
  return false
}

/** Static per spec: positions in `resourceSpecs` order and the links a visit follows. */
export interface VisitMap {
  position: Map<string, number>
  /** Positions of the resources that prefer a node. */
  preferring: Map<string, number[]>
  /** Positions of a vm's guest applications, by the vm's position. */
  guestApps: Map<number, number[]>
}

const visitMaps = new WeakMap<ClusterSpec, VisitMap>()

export function visitMap(spec: ClusterSpec, sorted: readonly ResourceSpec[]): VisitMap {
  let map = visitMaps.get(spec)
  if (map) return map
  const position = new Map(sorted.map((s, i) => [s.id, i]))
  const preferring = new Map<string, number[]>()
  const guestApps = new Map<number, number[]>()
  sorted.forEach((s, i) => {
    for (const node in s.preferred) {
      const list = preferring.get(node)
      if (list) list.push(i)
      else preferring.set(node, [i])
    }
    const vm = s.kind === 'guest-app' && s.vm ? position.get(s.vm) : undefined
    if (vm !== undefined) guestApps.set(vm, [...(guestApps.get(vm) ?? []), i])
  })
  map = { position, preferring, guestApps }
  visitMaps.set(spec, map)
  return map
}

/** Per state: what each resource was when last asked. */
interface VisitIndex {
  spec: ClusterSpec
  unsteady: Uint8Array
  home: (string | null)[]
  byHome: Map<string, Set<number>>
  sweepAt: number
  /** Whether the resource counted in its home's load (placed, not stopped, not a guest app). */
  loaded: Uint8Array
  /** What each node carries, from the resources as last asked (the index's own entries). */
  load: Map<string, NodeLoad>
}

const indexes = new WeakMap<EngineStateKey, VisitIndex>()
type EngineStateKey = StepContext['state']

function setHome(index: VisitIndex, i: number, node: string | null): void {
  const was = index.home[i] ?? null
  if (was === node) return
  if (was !== null) index.byHome.get(was)?.delete(i)
  if (node !== null) {
    const set = index.byHome.get(node)
    if (set) set.add(i)
    else index.byHome.set(node, new Set([i]))
  }
  index.home[i] = node
}

/** Whether a resource counts in its node's load (as `nodeLoad` sums it). */
function carried(spec: ResourceSpec, r: ResourceState): boolean {
  return r.node !== null && r.phase !== 'stopped' && spec.kind !== 'guest-app'
}

function shift(load: Map<string, NodeLoad>, node: string, spec: ResourceSpec, sign: 1 | -1): void {
  let l = load.get(node)
  if (!l) {
    l = { memoryMb: 0, vcpus: 0, count: 0 }
    load.set(node, l)
  }
  l.memoryMb += sign * spec.requires.memoryMb
  l.vcpus += sign * spec.requires.vcpus
  l.count += sign
}

function look(ctx: StepContext, index: VisitIndex, i: number, r: ResourceState): void {
  const spec = ctx.resourceSpecs[i] as ResourceSpec
  index.unsteady[i] = steady(r) ? 0 : 1
  const was = index.home[i] ?? null
  if (index.loaded[i] === 1 && was !== null) shift(index.load, was, spec, -1)
  const now = carried(spec, r)
  index.loaded[i] = now ? 1 : 0
  if (now) shift(index.load, r.node as string, spec, 1)
  setHome(index, i, r.node)
}

/**
 * What each node carries now, from the index: its sums, corrected for the resources marked this
 * step (only those can have changed since they were last asked). Null without an index for this
 * state, or in a step that visits every resource. Entries are fresh objects: the caller may
 * replace them (`addLoad`).
 */
export function indexedLoad(ctx: StepContext): Map<string, NodeLoad> | null {
  const index = indexes.get(ctx.state)
  // A step that visits every resource does not mark them: its visits may have changed any.
  if (index?.spec !== ctx.spec || ctx.allDirty) return null
  const load = new Map<string, NodeLoad>()
  for (const [node, l] of index.load) if (l.count !== 0) load.set(node, { ...l })
  const states = ctx.resourceStates()
  const want = ctx.visits
  for (let i = 0; i < want.length; i++) {
    if (want[i] === 0) continue
    const spec = ctx.resourceSpecs[i] as ResourceSpec
    const r = states[i] as ResourceState
    const was = index.home[i] ?? null
    if (index.loaded[i] === 1 && was !== null) shift(load, was, spec, -1)
    if (carried(spec, r)) shift(load, r.node as string, spec, 1)
  }
  for (const [node, l] of load) if (l.count === 0) load.delete(node)
  return load
}

/** The state's index, built by asking every resource when the state or the spec is new to it. */
function indexOf(ctx: StepContext, states: readonly ResourceState[]): VisitIndex {
  const known = indexes.get(ctx.state)
  if (known?.spec === ctx.spec) return known
  const index: VisitIndex = {
    spec: ctx.spec,
    unsteady: new Uint8Array(states.length),
    home: new Array(states.length).fill(null),
    byHome: new Map(),
    sweepAt: 0,
    loaded: new Uint8Array(states.length),
    load: new Map(),
  }
  for (let i = 0; i < states.length; i++) look(ctx, index, i, states[i] as ResourceState)
  indexes.set(ctx.state, index)
  return index
}

/**
 * Marks this step's candidates in `ctx.visits` and returns the index, to be brought up to date by
 * `settleVisits` once the visits are done.
 */
export function planVisits(ctx: StepContext, states: readonly ResourceState[]): VisitIndex {
  const index = indexOf(ctx, states)
  if (ctx.allDirty) return index // every resource is asked
  const want = ctx.visits
  const map = ctx.visitMap
  const n = states.length
  // The sweep: a slice re-asked every step (a mark missed in the code would otherwise hide a
  // resource until an input touches it).
  const slice = Math.ceil(n / SWEEP_STEPS)
  for (let k = 0; k < slice && n > 0; k++) {
    const i = (index.sweepAt + k) % n
    if (index.unsteady[i] === 1 || want[i] === 1 || steady(states[i] as ResourceState)) continue
    if (ctx.env.selfCheck)
      throw new Error(`engine visit index: ${ctx.resourceSpecs[i]?.id} became unsteady without a mark`)
    index.unsteady[i] = 1
  }
  index.sweepAt = n === 0 ? 0 : (index.sweepAt + slice) % n
  for (let i = 0; i < n; i++) {
    if (index.unsteady[i] === 0) continue
    want[i] = 1
    for (const g of map.guestApps.get(i) ?? []) want[g] = 1
  }
  for (const node of ctx.dirtyNodes) {
    for (const i of index.byHome.get(node) ?? []) want[i] = 1
    for (const i of map.preferring.get(node) ?? []) want[i] = 1
  }
  return index
}

/** After the visits: what each visited or marked resource is now. */
export function settleVisits(ctx: StepContext, states: readonly ResourceState[], index: VisitIndex): void {
  const want = ctx.visits
  for (let i = 0; i < states.length; i++)
    if (ctx.allDirty || want[i] === 1) look(ctx, index, i, states[i] as ResourceState)
  if (ctx.env.selfCheck)
    for (let i = 0; i < states.length; i++) {
      const r = states[i] as ResourceState
      if (index.home[i] !== r.node)
        throw new Error(
          `engine visit index: ${ctx.resourceSpecs[i]?.id} moved to ${r.node} from ${index.home[i]} without a mark`,
        )
    }
}

/**
 * Positions (ascending) of the resources with an action pending. Every such resource is unsteady,
 * so it is flagged in the index or marked this step (`issue` marks): only those are looked at (all
 * without an index for this state yet). Kept for the step until the next mark: asked per action
 * result and per node heard again (all 5,000 at a hub's start), a scan of every resource per
 * question made such steps take seconds at 50,000 resources.
 */
export function pendingCandidates(ctx: StepContext, states: readonly ResourceState[]): number[] {
  const cached = pendingCache.get(ctx)
  if (cached) return cached
  const index = indexes.get(ctx.state)
  const all = index?.spec !== ctx.spec
  const out: number[] = []
  for (let i = 0; i < states.length; i++)
    if (
      (all || index.unsteady[i] === 1 || ctx.visits[i] === 1) &&
      (states[i] as ResourceState).pending !== null
    )
      out.push(i)
  pendingCache.set(ctx, out)
  return out
}

/** A step's pending positions, until its next mark (`forgetPending`). */
const pendingCache = new WeakMap<StepContext, number[]>()

/** Called by `StepContext.mark`: a resource may have an action pending that the cache lacks. */
export function forgetPending(ctx: StepContext): void {
  pendingCache.delete(ctx)
}
