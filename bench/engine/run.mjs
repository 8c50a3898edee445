// bench/engine: the engine's step for 1,000 hosts and 10,000 resources, in steady state and after a
// host failure (detection, fence, placement of its resources), plus the what-if plan for every
// host, inline and on the hub's planner thread (the worst pause of the event loop while it is
// computed: what ingest would wait). Prints JSON, then a table.
//   node bench/engine/run.mjs [--hosts 1000] [--resources 10000] [--runs 3]
import { parseArgs } from 'node:util'
import { markdownTable, median, quantile } from '../lib.mjs'

const { values } = parseArgs({
  options: {
    hosts: { type: 'string', default: '1000' },
    resources: { type: 'string', default: '10000' },
    runs: { type: 'string', default: '3' },
    /** Virtual seconds of warm-up (JIT, first inventories), steady state, and after the failure. */
    warmup: { type: 'string', default: '10' },
    steady: { type: 'string', default: '30' },
    after: { type: 'string', default: '30' },
    /** spread: each host's inventory at its own phase (as agents send them); burst: all on one tick. */
    inventories: { type: 'string', default: 'spread' },
    /** Another build of the engine (its dist/index.js), to compare two versions on one machine. */
    engine: { type: 'string', default: '@vigil/engine' },
    /** `--plan no`: skip the what-if plan's timings (minutes at 5,000 hosts): steps only. */
    plan: { type: 'string', default: 'yes' },
  },
})
const { clusterSpecSchema, initialState, step, whatIfPlan } = await import(
  values.engine.startsWith('/') ? `file://${values.engine}` : values.engine
)
const H = Number(values.hosts)
const R = Number(values.resources)
const TICK = 100
const HB = 250

const { Planner } = await import(new URL('../../apps/hub/dist/planner.js', import.meta.url).href)

/**
 * The longest the event loop went without running a 1 ms timer while `work` ran: what a heartbeat
 * or a command arriving then would have waited.
 */
async function worstPause(work) {
  let last = performance.now()
  let worst = 0
  const timer = setInterval(() => {
    const t = performance.now()
    worst = Math.max(worst, t - last)
    last = t
  }, 1)
  await new Promise((r) => setTimeout(r, 5))
  last = performance.now()
  await work()
  worst = Math.max(worst, performance.now() - last)
  clearInterval(timer)
  return worst
}

async function once(run) {
  const nodes = Array.from({ length: H }, (_, i) => ({
    id: `h${i}`,
    fencing: [{ devices: [`ipmi-h${i}`] }],
    capacity: { memoryMb: 262_144, vcpus: 128 },
  }))
  const resources = Array.from({ length: R }, (_, i) => ({
    id: `r${i}`,
    kind: i % 2 ? 'vm' : 'app',
    requires: { memoryMb: 2048, vcpus: 2 },
    preferred: { [`h${(i * 7) % H}`]: 10 },
    priority: i % 5,
  }))
  const spec = clusterSpecSchema.parse({ nodes, resources })
  const home = (i) => `h${i % H}`
  let now = 0
  let ids = 0
  const env = { now: () => now, newId: (k) => `${k[0]}${++ids}` }
  let state = initialState(spec, 0)
  const dead = new Set()
  const pendingFences = []
  const pendingStarts = []

  const inputsFor = (t) => {
    const inputs = []
    for (let h = 0; h < H; h++) {
      const id = `h${h}`
      if (dead.has(id) || (t + h * 7) % HB >= TICK) continue // each host's heartbeat phase
      inputs.push({ type: 'heartbeat', node: id })
    }
    return inputs
  }
  // Each host's agent sends its complete inventory every second at its own phase, like its heartbeat.
  // What each host runs is taken from the state again only after a step that decided something:
  // rebuilding it from 50,000 resources at every tick made the bench's own garbage (and its
  // collections) part of the step times measured.
  let runsOn = null
  const inventoriesFor = (t) => {
    const due = spec.nodes.filter(
      (n, h) =>
        !dead.has(n.id) && (values.inventories === 'burst' ? t % 1000 === 0 : (t + h * 13) % 1000 < TICK),
    )
    if (due.length === 0) return []
    if (runsOn === null) {
      runsOn = new Map()
      for (const id in state.resources) {
        const node = state.resources[id].node
        if (node) runsOn.set(node, { ...runsOn.get(node), [id]: 'running' })
      }
    }
    return due.map((n) => ({ type: 'inventory', node: n.id, resources: { ...runsOn.get(n.id) } }))
  }

  // Bring the cluster up: every resource reported running on its home host and adopted.
  const boot = []
  for (let h = 0; h < H; h++) boot.push({ type: 'heartbeat', node: `h${h}` })
  const initial = new Map()
  for (let i = 0; i < R; i++) initial.set(home(i), { ...initial.get(home(i)), [`r${i}`]: 'running' })
  for (let h = 0; h < H; h++)
    boot.push({ type: 'inventory', node: `h${h}`, resources: initial.get(`h${h}`) ?? {} })
  state = step(spec, state, boot, env).state

  const steady = []
  const failure = []
  let failedAt = null
  let placedAt = null
  const warmupTicks = (Number(values.warmup) * 1000) / TICK
  const failTick = warmupTicks + (Number(values.steady) * 1000) / TICK
  const lastTick = failTick + (Number(values.after) * 1000) / TICK
  const slowest = []
  for (let tick = 1; tick <= lastTick; tick++) {
    now = tick * TICK
    const inputs = inputsFor(now)
    inputs.push(...inventoriesFor(now))
    if (tick === failTick) {
      dead.add('h0')
      failedAt = now
    }
    while (pendingFences.length && pendingFences[0].at <= now) {
      const f = pendingFences.shift()
      inputs.push({ type: 'fence-result', actionId: f.id, node: f.node, device: f.device, outcome: 'off' })
    }
    while (pendingStarts.length && pendingStarts[0].at <= now)
      inputs.push({ type: 'action-result', actionId: pendingStarts.shift().id, ok: true })
    const t0 = performance.now()
    const result = step(spec, state, inputs, env)
    const ms = performance.now() - t0
    state = result.state
    if (result.records.length > 0 || result.actions.length > 0) runsOn = null
    if (tick > warmupTicks) (failedAt === null ? steady : failure).push(ms)
    slowest.push({ tick, ms, inputs: inputs.length, actions: result.actions.length })
    for (const a of result.actions) {
      if (a.type === 'fence')
        pendingFences.push({ at: now + 300, id: a.id, node: a.node, device: a.devices[0] })
      if (a.type === 'start') {
        pendingStarts.push({ at: now + 300, id: a.id })
        placedAt ??= now
      }
    }
  }
  const moved = Object.values(state.resources).filter(
    (r) => r.node && r.node !== 'h0' && r.phase === 'running',
  ).length
  const t0 = performance.now()
  const plan = values.plan !== 'no' ? whatIfPlan(spec, state, env) : []
  const planMs = performance.now() - t0
  const inlinePauseMs = values.plan !== 'no' ? await worstPause(async () => whatIfPlan(spec, state, env)) : 0
  const planner = new Planner({ error: (o, m) => console.error(m, o) })
  let threadPlanMs = 0
  let planReadMs = 0
  const threadPauseMs = [0, 0]
  for (let i = 0; i < (values.plan !== 'no' ? 2 : 0); i++) {
    // The first includes starting the thread; the second is the hub's steady case.
    threadPauseMs[i] = await worstPause(async () => {
      const t = performance.now()
      planner.refresh(spec, state, now)
      await planner.settled()
      threadPlanMs = performance.now() - t
      // Its first reading parses it on the event loop (the API or a metrics scrape asks for it).
      const r0 = performance.now()
      planner.latest()
      planReadMs = performance.now() - r0
    })
  }
  await planner.close()
  return {
    run,
    hosts: H,
    resources: R,
    inventories: values.inventories,
    steadyStepMedianMs: round(median(steady)),
    steadyStepP99Ms: round(quantile(steady, 0.99)),
    failureStepMedianMs: round(median(failure)),
    failureStepP99Ms: round(quantile(failure, 0.99)),
    failureStepMaxMs: round(Math.max(...failure)),
    detectionToFirstPlacementMs: placedAt === null ? null : placedAt - failedAt,
    resourcesOfFailedHost: Object.values(state.resources).filter((r) => r.avoid === 'h0' || r.correlationId)
      .length,
    whatIfPlanAllHostsMs: round(planMs),
    planInlineWorstPauseMs: round(inlinePauseMs),
    planThreadMs: round(threadPlanMs),
    planThreadWorstPauseMs: round(threadPauseMs[1]),
    planFirstReadMs: round(planReadMs),
    planThreadFirstWorstPauseMs: round(threadPauseMs[0]),
    whatIfHosts: plan.length,
    steps: { steady: steady.length, failure: failure.length },
    slowestSteps: slowest
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 5)
      .map((x) => ({ ...x, ms: round(x.ms) })),
    runningResources: moved,
  }
}

function round(x) {
  return Math.round(x * 100) / 100
}

const results = []
for (let run = 1; run <= Number(values.runs); run++) results.push(await once(run))
const keys = [
  'steadyStepMedianMs',
  'steadyStepP99Ms',
  'failureStepMedianMs',
  'failureStepP99Ms',
  'whatIfPlanAllHostsMs',
  'planInlineWorstPauseMs',
  'planThreadWorstPauseMs',
  'planFirstReadMs',
]
console.log(
  JSON.stringify(
    {
      benchmark: 'engine',
      when: new Date().toISOString(),
      node: process.version,
      runs: results,
      median: Object.fromEntries(keys.map((k) => [k, median(results.map((r) => r[k]))])),
    },
    null,
    2,
  ),
)
console.log()
console.log(
  markdownTable(results, [
    'run',
    'hosts',
    'resources',
    ...keys,
    'failureStepMaxMs',
    'detectionToFirstPlacementMs',
  ]),
)
