import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { decode, encode } from './codec.js'
import { valid } from './fixtures.test-helper.js'
import { NODE_CHANNELS, parseTopic } from './topics.js'

/**
 * Property-based fuzzing of everything an agent (or an attacker with a broker foothold) can send:
 * no input makes a decoder throw, every rejection names its reason (and its field when it has one),
 * and whatever is accepted survives a round trip. Fixed seed in CI; FUZZ_RUNS=100000 for a long run.
 */
const runs = Number(process.env.FUZZ_RUNS ?? 300)
const params = { numRuns: runs, seed: Number(process.env.FUZZ_SEED ?? 20261122) }

/** A valid payload with one field (at any depth) replaced, deleted, or a key added. */
function mutated(base: unknown): fc.Arbitrary<unknown> {
  const paths: string[][] = []
  const walk = (v: unknown, path: string[]) => {
    if (path.length > 0) paths.push(path)
    if (v && typeof v === 'object') for (const [k, c] of Object.entries(v)) walk(c, [...path, k])
  }
  walk(base, [])
  return fc
    .tuple(fc.constantFrom(...paths), fc.oneof(fc.jsonValue(), fc.constant(undefined)), fc.boolean())
    .map(([path, value, addKey]) => {
      const copy = structuredClone(base) as Record<string, unknown>
      let target = copy as Record<string, unknown>
      for (const k of path.slice(0, -1)) target = target[k] as Record<string, unknown>
      const last = path[path.length - 1] as string
      if (addKey) target[`${last}_extra`] = value ?? null
      else if (value === undefined) delete target[last]
      else target[last] = value
      return copy
    })
}

describe.each(NODE_CHANNELS)('decode(%s) under fuzzing', (channel) => {
  const check = (payload: string | Uint8Array) => {
    const r = decode(channel, payload, 'node-1')
    if (r.ok) {
      // Accepted: it must encode back and decode to the same value.
      const again = decode(channel, encode(channel, r.value), 'node-1')
      expect(again).toEqual(r)
    } else {
      expect(r.error.message.length).toBeGreaterThan(0)
      if (r.error.reason === 'schema' && r.error.field)
        expect(r.error.message.startsWith(r.error.field)).toBe(true)
    }
  }

  test('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => check(bytes)),
      params,
    )
  })

  test('random JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => check(JSON.stringify(v) ?? 'null')),
      params,
    )
  })

  test('a valid payload with one field changed, removed or added', () => {
    const base = valid[channel as keyof typeof valid]
    fc.assert(
      fc.property(mutated(base), (v) => {
        const text = JSON.stringify(v)
        check(text)
        // An unknown key is always refused (strict schemas), naming it.
        const r = decode(channel, text, 'node-1')
        if (!r.ok && r.error.message.includes('Unrecognized key')) expect(r.error.field).toBeDefined()
      }),
      params,
    )
  })
})

test('parseTopic never throws and accepts only well-formed topics', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (topic) => {
      const parsed = parseTopic(topic)
      if (parsed) expect(topic).toBe(`vigil/v1/${parsed.cluster}/node/${parsed.node}/${parsed.channel}`)
    }),
    params,
  )
})
