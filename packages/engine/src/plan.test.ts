import { expect, test } from 'vitest'
import { StepContext } from './context.js'
import { initialState, step } from './engine.js'
import { addLoad, bestNode, candidatesFor, nodeLoad } from './placement.js'
import { whatIfPlan } from './plan.js'
import { planView, stateFromPlanView } from './plan-view.js'
import { type ClusterSpec, clusterSpecSchema } from './spec.js'
import type { EngineEnv, EngineState, NodeCondition } from './types.js'

// The what-if plan ranks the nodes a resource has no tie to once per plan instead of judging every
// node for every resource. It must give exactly the answer of judging every node (`bestNode` for
// each resource of each node, as the plan was first written): checked here against that, on
// clusters drawn at random with the cases that make a node's score or eligibility its own
// (preferences, stickiness, a move, degraded links, connectivity, capacity nearly spent,
// allowedNodes, anti-affinity, colocation, a node it was relocated away from, nodes out).

/** The plan by judging every node for every resource: the reference. */
function referencePlan(spec: ClusterSpec, state: EngineState, env: EngineEnv) {
  const ctx = new StepContext(spec, state, env)
  const baseLoad = nodeLoad(ctx)
  const out = []
  for (const node of ctx.nodeSpecs) {
    const moving = ctx.resourceSpecs.filter(
      (r) => r.kind !== 'guest-app' && state.resources[r.id]?.node === node.id,
    )
    if (moving.length === 0) continue
    const load = new Map(baseLoad)
    const unavailable = new Set([node.id])
    const plan = {
      node: node.id,
      moves: [] as { resource: string; to: string }[],
      unplaceable: [] as { resource: string; why: string }[],
    }
    for (const r of moving) {
      const best = bestNode(ctx, r, { load, unavailable })
      if (best) {
        plan.moves.push({ resource: r.id, to: best })
        addLoad(load, best, r)
      } else {
        const why = candidatesFor(ctx, r, { load, unavailable }).map((c) => `${c.node}: ${c.eliminated}`)
        plan.unplaceable.push({ resource: r.id, why: why.join('; ') })
      }
    }
    out.push(plan)
  }
  return out
}

/** A small deterministic generator (mulberry32). */
function random(seed: number) {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function drawCluster(seed: number) {
  const rnd = random(seed)
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)] as T
  const H = 4 + Math.floor(rnd() * 12)
  const R = 5 + Math.floor(rnd() * 40)
  const nodeIds = Array.from({ length: H }, (_, i) => `n${i}`)
  const nodes = nodeIds.map((id) => ({
    id,
    capacity: { memoryMb: pick([4096, 8192, 16384]), vcpus: pick([4, 8, 16]) },
  }))
  const ids = Array.from({ length: R }, (_, i) => `r${i}`)
  const resources = ids.map((id, i) => {
    const r: Record<string, unknown> = {
      id,
      kind: pick(['vm', 'app']),
      requires: { memoryMb: pick([512, 1024, 2048]), vcpus: pick([1, 2]) },
      priority: Math.floor(rnd() * 3),
      preferred: rnd() < 0.6 ? { [pick(nodeIds)]: pick([0, 5, 10, 50]) } : {},
    }
    if (rnd() < 0.15) r.allowedNodes = nodeIds.filter(() => rnd() < 0.5).concat(pick(nodeIds))
    if (i > 0 && rnd() < 0.1) r.antiAffinity = [pick(ids.slice(0, i))]
    return r
  })
  // A colocated pair: the second depends on the first and runs with it.
  if (R > 2 && rnd() < 0.5)
    Object.assign(resources[1] as object, {
      dependsOn: ['r0'],
      colocate: true,
      allowedNodes: undefined,
      antiAffinity: [],
    })
  for (const r of resources) if (r.allowedNodes === undefined) delete r.allowedNodes
  const spec = clusterSpecSchema.parse({ nodes, resources, connectivityWeight: pick([0, 10]) })

  let now = 1000
  const env: EngineEnv = { now: () => now, newId: (kind) => `${kind}-${now}` }
  let state = initialState(spec, now)
  const inventories = new Map(nodeIds.map((n) => [n, {} as Record<string, 'running'>]))
  for (const id of ids) {
    const home = (resources[ids.indexOf(id)]?.allowedNodes as string[] | undefined)?.[0] ?? pick(nodeIds)
    ;(inventories.get(home) as Record<string, 'running'>)[id] = 'running'
  }
  const colocated = spec.resources.find((r) => r.colocate)
  if (colocated) {
    const depHome = [...inventories].find(([, inv]) => 'r0' in inv)?.[0] as string
    for (const inv of inventories.values()) delete inv[colocated.id]
    ;(inventories.get(depHome) as Record<string, 'running'>)[colocated.id] = 'running'
  }
  state = step(
    spec,
    state,
    [
      ...nodeIds.map((node) => ({ type: 'heartbeat' as const, node })),
      ...nodeIds.map((node) => ({
        type: 'inventory' as const,
        node,
        resources: inventories.get(node) ?? {},
      })),
    ],
    env,
  ).state
  now += 100
  // What makes a node's judgement its own, drawn on the settled state.
  for (const id of nodeIds) {
    const n = state.nodes[id]
    if (!n) continue
    if (rnd() < 0.15) n.condition = pick<NodeCondition>(['dead', 'suspect', 'partitioned'])
    if (rnd() < 0.1) n.maintenance = { until: null }
    if (rnd() < 0.2) n.degraded = { since: now, detail: 'bond0: eth1 down' }
    if (rnd() < 0.5) n.connectivity = { reachable: Math.floor(rnd() * 3), total: 2, at: now, since: now }
  }
  for (const id of ids) {
    const r = state.resources[id]
    if (!r) continue
    if (rnd() < 0.15) r.avoid = pick(nodeIds)
    if (rnd() < 0.1) r.move = { node: pick(nodeIds), until: now + 60_000 }
    // A failure at the ladder's relocate step (the default ladder's second) on some node.
    if (rnd() < 0.1) r.failures = [{ at: now - 1000, step: 1, node: pick(nodeIds) }]
  }
  return { spec, state, env }
}

test.each(Array.from({ length: 300 }, (_, i) => i + 1))(
  'cluster %i: the plan is the one judging every node gives',
  (seed) => {
    const { spec, state, env } = drawCluster(seed)
    expect(whatIfPlan(spec, state, env)).toEqual(referencePlan(spec, state, env))
  },
)

test.each(Array.from({ length: 100 }, (_, i) => i + 1))(
  'cluster %i: the plan from the view sent to the planner thread is the plan from the state',
  (seed) => {
    const { spec, state, env } = drawCluster(seed)
    const view = structuredClone(planView(spec, state))
    expect(whatIfPlan(spec, stateFromPlanView(spec, view), env)).toEqual(whatIfPlan(spec, state, env))
  },
)

test('the drawn clusters do exercise moves and unplaceable resources', () => {
  let moves = 0
  let unplaceable = 0
  for (let seed = 1; seed <= 300; seed++) {
    const { spec, state, env } = drawCluster(seed)
    for (const p of whatIfPlan(spec, state, env)) {
      moves += p.moves.length
      unplaceable += p.unplaceable.length
    }
  }
  expect(moves).toBeGreaterThan(1000)
  expect(unplaceable).toBeGreaterThan(10)
})
