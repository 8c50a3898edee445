import { expect, test } from 'vitest'
import { initialState, step } from './engine.js'
import { clusterSpecSchema } from './spec.js'
import type { Action, EngineEnv, EngineState, Input, ObservedState } from './types.js'

// A vm an administrator live-migrates with the hypervisor's own tools shows up on its new node a
// report before its old node says it stopped. Seen running on a second node, it waits (at most
// OUTSIDE_MIGRATION_SETTLE_MS, 2 s) for its home to report it stopped: then it is adopted where it
// runs; still running at home after that, it is a second copy, and the extra one is stopped.
const spec = clusterSpecSchema.parse({
  nodes: [{ id: 'h1' }, { id: 'h2' }],
  resources: [{ id: 'vm1', kind: 'vm', preferred: { h1: 10 } }],
})

function cluster() {
  let now = 1000
  let ids = 0
  const env: EngineEnv = { now: () => now, newId: (kind) => `${kind}-${ids++}`, selfCheck: true }
  let state: EngineState = initialState(spec, now)
  const actions: Action[] = []
  const feed = (inputs: Input[], ms = 100) => {
    now += ms
    const result = step(
      spec,
      state,
      [{ type: 'heartbeat', node: 'h1' }, { type: 'heartbeat', node: 'h2' }, ...inputs],
      env,
    )
    state = result.state
    actions.push(...result.actions)
  }
  const report = (node: string, vm: 'running' | 'stopped'): Input => {
    const resources: Record<string, ObservedState> = vm === 'running' ? { vm1: 'running' } : {}
    return { type: 'inventory', node, resources }
  }
  for (let i = 0; i < 5; i++) feed([report('h1', 'running'), report('h2', 'stopped')])
  return { feed, report, state: () => state, actions }
}

test('a vm seen on a second node whose home then reports it stopped is adopted where it runs', () => {
  const c = cluster()
  expect(c.state().resources.vm1?.node).toBe('h1')
  c.feed([c.report('h2', 'running')]) // the new node's report comes first
  c.feed([c.report('h1', 'running')])
  expect(c.actions.filter((a) => a.type === 'stop')).toEqual([]) // within the settle time
  c.feed([c.report('h1', 'stopped')], 500)
  expect(c.state().resources.vm1?.node).toBe('h2')
  expect(c.state().resources.vm1?.failures).toEqual([])
  expect(c.actions.filter((a) => a.type === 'stop' || a.type === 'start')).toEqual([])
})

test('a vm still reported running at home past the settle time is a second copy: the extra one is stopped', () => {
  const c = cluster()
  c.feed([c.report('h2', 'running')])
  c.feed([c.report('h1', 'running')], 1000)
  expect(c.actions.filter((a) => a.type === 'stop')).toEqual([])
  c.feed([c.report('h1', 'running')], 1500)
  expect(c.actions.filter((a) => a.type === 'stop').map((a) => ('node' in a ? a.node : ''))).toEqual(['h2'])
  expect(c.state().resources.vm1?.node).toBe('h1')
})
