import { expect, test } from 'vitest'
import { initialState, step } from './engine.js'
import { clusterSpecSchema } from './spec.js'
import type { EngineEnv, Input, NodeCondition } from './types.js'

// A node whose agent said it alone was stopping (a restart, an upgrade) is held, not judged by its
// silence: never fenced for it (issue #24, graceful node shutdown). Heartbeats every 100 ms while
// n1 beats; n2 beats throughout (so no hub-side freeze). Conditions read at the end.
function conditionOf(opts: {
  beats: [from: number, to: number][]
  events: [at: number, input: Input][]
  until: number
  holdMs?: number
}): NodeCondition {
  const spec = clusterSpecSchema.parse({
    nodes: [{ id: 'n1' }, { id: 'n2' }, { id: 'n3' }],
    resources: [],
    detection: opts.holdMs === undefined ? {} : { agentStoppedHoldMs: opts.holdMs },
  })
  let now = 0
  const env: EngineEnv = { now: () => now, newId: (kind) => `${kind}-${now}`, selfCheck: true }
  let state = initialState(spec, now)
  for (now = 0; now <= opts.until; now += 50) {
    const inputs: Input[] = opts.events.filter(([at]) => at === now).map(([, input]) => input)
    if (now % 100 === 0) {
      inputs.push({ type: 'heartbeat', node: 'n2' }, { type: 'heartbeat', node: 'n3' })
      if (opts.beats.some(([from, to]) => now >= from && now <= to))
        inputs.push({ type: 'heartbeat', node: 'n1' })
    }
    state = step(spec, state, inputs, env).state
  }
  return state.nodes.n1?.condition as NodeCondition
}

const stopped: Input = { type: 'agent-stopped', node: 'n1', hostShutdown: false }
const restarted: Input = { type: 'agent-restarted', node: 'n1' }

test.each([
  ['silent without a word: dead', { beats: [[0, 2000]], events: [], until: 5000 }, 'dead'],
  [
    'its agent said it was stopping: held',
    { beats: [[0, 2000]], events: [[2000, stopped]], until: 60_000 },
    'agent-stopped',
  ],
  [
    'a heartbeat of the stopping run just after its word: a straggler, still held',
    { beats: [[0, 2100]], events: [[2000, stopped]], until: 5000 },
    'agent-stopped',
  ],
  [
    "a new run's first word, then 1 s before its first heartbeat: held throughout, then healthy",
    {
      beats: [
        [0, 2000],
        [6000, 8000],
      ],
      events: [
        [2000, stopped],
        [5000, restarted],
      ],
      until: 8000,
    },
    'healthy',
  ],
  [
    "a new run's first word, and it never beats: still held",
    {
      beats: [[0, 2000]],
      events: [
        [2000, stopped],
        [5000, restarted],
      ],
      until: 8000,
    },
    'agent-stopped',
  ],
  [
    'back, then silent without a word: dead (the hold ended with its return)',
    {
      beats: [
        [0, 2000],
        [4000, 6000],
      ],
      events: [
        [2000, stopped],
        [4000, restarted],
      ],
      until: 9000,
    },
    'dead',
  ],
  [
    'the stopping run beats on past 2 s (its stop hung), then falls silent: dead',
    { beats: [[0, 5000]], events: [[2000, stopped]], until: 9000 },
    'dead',
  ],
  [
    'stopping with its host: judged as usual',
    { beats: [[0, 2000]], events: [[2000, { ...stopped, hostShutdown: true }]], until: 5000 },
    'dead',
  ],
  [
    'held for agentStoppedHoldMs only',
    { beats: [[0, 2000]], events: [[2000, stopped]], until: 5000, holdMs: 2000 },
    'dead',
  ],
  [
    'within agentStoppedHoldMs',
    { beats: [[0, 2000]], events: [[2000, stopped]], until: 3500, holdMs: 2000 },
    'agent-stopped',
  ],
] as [string, Parameters<typeof conditionOf>[0], NodeCondition][])('%s', (_, timeline, expected) => {
  expect(conditionOf(timeline)).toBe(expected)
})
