import { type Action, type ClusterSpec, clusterSpecSchema } from '@vigil/engine'
import { describe, expect, test } from 'vitest'
import { prng } from './prng.js'
import { Simulation } from './runner.js'
import type { ScriptEvent } from './script.js'
import { worldSchema } from './world.js'

/**
 * Seeded random faults against the real engine, with the safety invariants checked after every
 * simulated step (by the simulation, on its ground truth) and the recovery checked at the end.
 * A failing seed prints a script that reproduces it: paste it into a scenario folder.
 */
const SEEDS = Array.from({ length: 12 }, (_, i) => i + 1)
const FAULT_SECONDS = 50
const SETTLE_SECONDS = 25

function cluster(random: () => number): ClusterSpec {
  const nodes = ['node1', 'node2', 'node3', 'node4'].map((id) => ({
    id,
    fencing: [
      { devices: [`ipmi-${id}`], timeoutMs: 2000 },
      { devices: [`pdu-${id}`], timeoutMs: 2000 },
    ],
    capacity: { memoryMb: 8192 },
  }))
  const resources = [
    { id: 'web', preferred: { node1: 10 }, requires: { memoryMb: 1024 } },
    { id: 'api', dependsOn: ['db'], requires: { memoryMb: 1024 } },
    { id: 'db', priority: 10, requires: { memoryMb: 2048 }, antiAffinity: ['web'] },
    { id: 'vm1', kind: 'vm', requires: { memoryMb: 2048 }, policy: { actionTimeoutMs: 3000 } },
    {
      id: 'app1',
      kind: 'guest-app',
      vm: 'vm1',
      policy: { maxRestarts: 1, ladder: ['restart', 'reset-vm', 'relocate'] },
    },
  ]
  return clusterSpecSchema.parse({
    nodes,
    resources,
    defaults: { actionTimeoutMs: 3000, maxRestarts: 2, windowMs: 20_000, failureTimeoutMs: 20_000 },
    governor: { maxFences: 1000, maxRestarts: 1000, freezeShare: random() < 0.5 ? 0.5 : 0.75 },
  })
}

function randomScript(random: () => number): ScriptEvent[] {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)] as T
  const nodes = ['node1', 'node2', 'node3', 'node4']
  const events: ScriptEvent[] = []
  let line = 0
  const at = (s: number, verb: string, ...args: string[]) =>
    events.push({ at: Math.round(s * 1000), verb, args, line: ++line })
  for (let t = 2; t < FAULT_SECONDS; t += 0.5 + random() * 2.5) {
    const n = pick(nodes)
    const other = pick(nodes.filter((x) => x !== n))
    switch (
      pick([
        'crash',
        'power-off',
        'power-on',
        'power-on',
        'partition',
        'heal',
        'heal',
        'loss',
        'app',
        'guest',
        'pause',
        'device',
        'stop-fail',
        'hub',
        'takeover',
        'freeze',
      ] as const)
    ) {
      case 'crash':
        at(t, 'crash', n)
        break
      case 'power-off':
        at(t, 'power-off', n)
        break
      case 'power-on':
        at(t, 'power-on', n)
        break
      case 'partition':
        at(t, 'partition', n, pick(['hub', 'all', other]))
        break
      case 'heal':
        at(t, 'heal', n)
        break
      case 'loss':
        at(t, 'loss', n, String(pick([10, 30, 50])))
        at(t + 3, 'loss', n, '0')
        break
      case 'app':
        at(t, 'app-crash', pick(['web', 'api', 'db', 'app1']))
        break
      case 'guest':
        at(t, 'guest-hang', 'vm1')
        break
      case 'pause':
        at(t, 'vm-pause', 'vm1')
        at(t + 1 + random() * 4, 'vm-resume', 'vm1')
        break
      case 'device':
        at(t, 'device', `${pick(['ipmi', 'pdu'])}-${n}`, pick(['unreachable', 'lying', 'auth-fail']))
        break
      case 'stop-fail':
        at(t, 'stop-fail', pick(['web', 'api']))
        break
      case 'hub':
        at(t, 'hub-restart', String(pick([1, 2, 3])))
        break
      case 'takeover':
        at(t, 'hub-takeover', String(pick([1, 2, 3])))
        break
      case 'freeze':
        at(t, 'hub-pause', String(pick([2, 5, 20])))
        break
    }
  }
  // Heal everything, then let it settle: every resource must run again, exactly once.
  const end = FAULT_SECONDS
  for (const n of nodes) {
    at(end, 'power-on', n)
    at(end, 'heal', n)
    at(end, 'loss', n, '0')
    at(end, 'device', `ipmi-${n}`, 'ok')
    at(end, 'device', `pdu-${n}`, 'ok')
  }
  for (const r of ['web', 'api', 'db', 'vm1', 'app1']) at(end + 8, 'cleanup', r)
  at(end + SETTLE_SECONDS, 'end')
  return events.sort((a, b) => a.at - b.at || a.line - b.line)
}

function asScript(events: ScriptEvent[]): string {
  return events.map((e) => `${(e.at / 1000).toFixed(3)} ${[e.verb, ...e.args].join(' ')}`).join('\n')
}

describe('random faults keep the safety invariants', () => {
  let totalSteps = 0

  test.each(SEEDS)('seed %i', (seed) => {
    const random = prng(seed)
    const spec = cluster(random)
    const script = randomScript(random)
    // Stop failures are permanent in the world; clear them for the settle phase.
    const sim = new Simulation(spec, worldSchema.parse({ seed, isolationMs: 2000 }))
    let steps = 0
    const result = sim.run(script, {
      onStep: () => {
        steps++
      },
    })
    totalSteps += steps
    const context = `seed ${seed}; reproduce with this script:\n${asScript(script)}\n\nlog tail:\n${result.log.slice(-40).join('\n')}`
    expect(result.violations, context).toEqual([])

    // The governor's budget is never exceeded, and no resource is started on a node being fenced.
    const fencesAt = new Map<string, number[]>()
    for (const { at, action } of result.actions) {
      if (action.type === 'fence') fencesAt.set(action.node, [...(fencesAt.get(action.node) ?? []), at])
    }
    for (const { at, action } of result.actions as { at: number; action: Action }[]) {
      if (action.type !== 'start') continue
      const fenceStartedSameStep = (fencesAt.get(action.node) ?? []).includes(at)
      expect(fenceStartedSameStep, context).toBe(false)
    }

    // After healing: nothing is lost. Every managed resource runs exactly once (stop failures
    // injected during the run may legitimately leave a resource blocked on a fenced-and-back node).
    const state = result.state
    for (const r of spec.resources) {
      const s = state.resources[r.id]
      expect(s, context).toBeDefined()
      const living = [...(sim.instances.get(r.id)?.keys() ?? [])].filter((h) =>
        r.kind === 'guest-app' ? true : sim.nodes.get(h)?.power === 'on',
      )
      expect(living.length, `${r.id} instances: ${living.join(', ')}; ${context}`).toBeLessThanOrEqual(1)
      if (!['blocked'].includes(s?.phase ?? '')) {
        expect(s?.phase, `${r.id} should be running after the settle phase; ${context}`).toBe('running')
        expect(living.length, `${r.id} should run somewhere; ${context}`).toBe(1)
      }
    }
  })

  test('ran at least 10,000 simulated steps in all', () => {
    expect(totalSteps).toBeGreaterThanOrEqual(10_000)
  })
})
