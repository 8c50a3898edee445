import { clusterSpecSchema, initialState, step } from '@vigil/engine'
import { expect, test } from 'vitest'
import { jsonInSlices } from './json-slices.js'

/** A clock that moves 1 ms per look: with a 4 ms slice, a yield every few looks. */
function steppingClock() {
  let now = 0
  let yields = 0
  return {
    clock: {
      monoMs: () => now++,
      yieldNow: async () => {
        yields++
      },
    },
    yields: () => yields,
  }
}

/** An engine state after a few steps: detectors, conditions, fence records and resources. */
function engineState(nodes: number, resources: number) {
  const spec = clusterSpecSchema.parse({
    nodes: Array.from({ length: nodes }, (_, i) => ({ id: `h${i}` })),
    resources: Array.from({ length: resources }, (_, i) => ({ id: `r${i}`, kind: 'app' })),
  })
  let now = 0
  const env = { now: () => now, newId: (kind: string) => `${kind}-${now}` }
  let state = initialState(spec, now)
  for (let t = 1; t <= 30; t++) {
    now = t * 100
    const heard = spec.nodes.filter((_, i) => i !== 0 || t < 5) // h0 goes silent
    state = step(
      spec,
      state,
      heard.map((n) => ({ type: 'heartbeat' as const, node: n.id })),
      env,
    ).state
  }
  return state
}

test.each([
  ['an engine state', engineState(200, 300)],
  [
    'members left undefined, empty records, arrays and scalars',
    { a: undefined, b: {}, c: [1, { d: undefined }], e: 'x', f: null, g: { h: undefined, i: 2 } },
  ],
  ['keys that need escaping', { 'a"b': { 'c\\d': { '\u2028': 1 } }, n: 0 }],
  ['an empty object', {}],
])('%s: the text is JSON.stringify of it', async (_, value) => {
  const { clock } = steppingClock()
  const { text } = await jsonInSlices(value as Record<string, unknown>, 4, clock)
  expect(text).toBe(JSON.stringify(value))
})

test('a large record is written over several slices, each giving the event loop back', async () => {
  const { clock, yields } = steppingClock()
  const { slices } = await jsonInSlices(engineState(500, 500) as unknown as Record<string, unknown>, 4, clock)
  expect(slices).toBeGreaterThan(5)
  expect(yields()).toBe(slices - 1)
})
