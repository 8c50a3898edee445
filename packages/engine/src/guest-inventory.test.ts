import { expect, test } from 'vitest'
import { initialState, step } from './engine.js'
import { clusterSpecSchema } from './spec.js'
import type { EngineEnv, EngineState, Input } from './types.js'

// The hub turns an agent's complete observation batch into an `inventory`. A guest agent's node is
// its vm's id, not a cluster node: its inventories must still reach the guest applications (found
// in the lab: they were dropped, and a guest application waited forever for a first report).
const spec = clusterSpecSchema.parse({
  nodes: [{ id: 'h1' }],
  resources: [
    { id: 'vm1', kind: 'vm' },
    { id: 'app', kind: 'guest-app', vm: 'vm1' },
    { id: 'other', kind: 'guest-app', vm: 'vm1' },
  ],
})

function run(inventories: Record<string, 'running' | 'failed'>[]): EngineState {
  let now = 1000
  let ids = 0
  const env: EngineEnv = { now: () => now, newId: (kind) => `${kind}-${ids++}`, selfCheck: true }
  let state = initialState(spec, now)
  for (const resources of inventories) {
    now += 100
    const inputs: Input[] = [{ type: 'inventory', node: 'vm1', resources }]
    state = step(spec, state, inputs, env).state
  }
  return state
}

test.each([
  ['listed running', [{ app: 'running' }], { app: 'running', other: undefined }],
  ['listed failed', [{ app: 'failed' }], { app: 'failed', other: undefined }],
  ['listed, then no longer listed: stopped', [{ app: 'running' }, {}], { app: 'stopped', other: undefined }],
  ['never listed: nothing concluded', [{}, {}], { app: undefined, other: undefined }],
] as const)('a guest agent inventory, %s', (_, inventories, expected) => {
  const state = run(inventories.map((i) => ({ ...i })))
  for (const [id, observed] of Object.entries(expected))
    expect(state.resources[id]?.observed.vm1?.state, id).toBe(observed)
})

test('an inventory from a node that is neither a cluster node nor a vm is ignored', () => {
  let state = initialState(spec, 0)
  state = step(spec, state, [{ type: 'inventory', node: 'ghost', resources: { app: 'running' } }], {
    now: () => 100,
    newId: (kind) => kind,
  }).state
  expect(state.resources.app?.observed).toEqual({})
})

// A failure's detail rides with the inventory (a check vouching for the resource, a crash): it is
// the failure's why in the decision record, as it is for a single resource report (found live: a
// complete batch dropped it, and `vigil why` said only "failed").
test("an inventory's reason for a failure is in the ladder's decision", () => {
  const appSpec = clusterSpecSchema.parse({ nodes: [{ id: 'h1' }], resources: [{ id: 'web' }] })
  let now = 1000
  const env: EngineEnv = { now: () => now, newId: (kind) => `${kind}-${now}`, selfCheck: true }
  let state = initialState(appSpec, now)
  const feed = (inputs: Input[]) => {
    now += 100
    const out = step(appSpec, state, inputs, env)
    state = out.state
    return out
  }
  feed([
    { type: 'heartbeat', node: 'h1' },
    { type: 'inventory', node: 'h1', resources: { web: 'running' } },
  ])
  for (let i = 0; i < 5 && state.resources.web?.phase !== 'running'; i++)
    feed([
      { type: 'heartbeat', node: 'h1' },
      { type: 'inventory', node: 'h1', resources: { web: 'running' } },
    ])
  expect(state.resources.web?.phase).toBe('running')
  const out = feed([
    { type: 'heartbeat', node: 'h1' },
    {
      type: 'inventory',
      node: 'h1',
      resources: { web: 'failed' },
      reasons: { web: 'web-http (check) failed: connection refused' },
    },
  ])
  const ladder = out.records.find((r) => r.rule === 'ladder.restart')
  expect(ladder?.summary).toContain('(web-http (check) failed: connection refused)')
})

// At startup an agent may report its resources before the hub hears its first heartbeat (it
// heartbeats once its command subscription is confirmed; its first batches, with monitors still
// unknown, arrive as single reports): its node is still unknown, in its startup grace. A resource that prefers it waits for it rather than starting on a worse node, where
// stickiness would keep it (seen in the lab: db lost its preferred host for good).
test('a resource waits within the startup grace for a preferred node that reported but is not heard yet', () => {
  const twoNodes = clusterSpecSchema.parse({
    nodes: [{ id: 'h1' }, { id: 'h2' }],
    resources: [
      { id: 'web', preferred: { h1: 10 } },
      { id: 'db', preferred: { h2: 10 } },
    ],
  })
  let now = 1000
  const env: EngineEnv = {
    now: () => now,
    newId: (kind) => `${kind}-${now}-${Math.random()}`,
    selfCheck: true,
  }
  let state = initialState(twoNodes, now)
  const feed = (inputs: Input[]) => {
    now += 100
    state = step(twoNodes, state, inputs, env).state
  }
  feed([
    { type: 'heartbeat', node: 'h1' },
    { type: 'inventory', node: 'h1', resources: {} },
    { type: 'resource-state', node: 'h2', resource: 'web', state: 'stopped' },
    { type: 'resource-state', node: 'h2', resource: 'db', state: 'stopped' },
  ])
  feed([{ type: 'heartbeat', node: 'h1' }])
  expect(state.resources.web?.phase).toBe('starting') // its preferred node is here: at once
  expect(state.resources.db?.phase).toBe('waiting')
  expect(state.resources.db?.node).toBeNull()
  feed([
    { type: 'heartbeat', node: 'h1' },
    { type: 'heartbeat', node: 'h2' },
  ])
  feed([
    { type: 'heartbeat', node: 'h1' },
    { type: 'heartbeat', node: 'h2' },
  ])
  expect(state.resources.db).toMatchObject({ phase: 'starting', node: 'h2' })
})
