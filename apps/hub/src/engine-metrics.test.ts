import { clusterSpecSchema, initialState } from '@vigil/engine'
import { Registry } from 'prom-client'
import { expect, test } from 'vitest'
import { EngineMetrics } from './engine-metrics.js'

// Nothing waits in silence (issue #24): every resource not settled is exported with how long it
// has waited and the rule it waits on, which the alert rules VigilResourceWaiting and
// VigilResourceWaitsOnOperator read; settled resources are not exported at all.
test('vigil_resource_waiting_seconds names each unsettled resource with its rule and wait', async () => {
  const spec = clusterSpecSchema.parse({
    nodes: [{ id: 'n1' }, { id: 'n2' }],
    resources: [{ id: 'db' }, { id: 'app', dependsOn: ['db'] }, { id: 'web' }, { id: 'old' }],
  })
  const now = 1_000_000
  const state = initialState(spec, now - 600_000)
  const set = (id: string, phase: 'waiting' | 'running' | 'stopping', since: number, rule?: string) => {
    const r = state.resources[id]
    if (!r) throw new Error(id)
    r.phase = phase
    r.phaseSince = since
    if (rule) r.reason = { rule, why: `because of ${rule}` }
  }
  set('db', 'waiting', now - 90_000, 'wait.fence-held')
  set('app', 'waiting', now - 30_000, 'order.depends-on')
  set('web', 'running', now - 500_000, 'observed.running')
  set('old', 'stopping', now - 5_000) // saved before reasons existed
  const registry = new Registry()
  new EngineMetrics(registry, { state: () => state, spec: () => spec, now: () => now, whatIf: () => [] })
  const text = await registry.getSingleMetricAsString('vigil_resource_waiting_seconds')
  const series = text.split('\n').filter((l) => !l.startsWith('#'))
  expect(series.sort()).toEqual([
    'vigil_resource_waiting_seconds{resource="app",phase="waiting",rule="order.depends-on"} 30',
    'vigil_resource_waiting_seconds{resource="db",phase="waiting",rule="wait.fence-held"} 90',
    'vigil_resource_waiting_seconds{resource="old",phase="stopping",rule="unknown"} 5',
  ])
})
