import { clusterSpecSchema } from '@vigil/engine'
import { ConfigError, parseConfig } from '@vigil/kit'
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { stringify } from 'yaml'
import { hubConfigSchema } from './config.js'

/**
 * The config loader under fuzzing, with the hub's own schemas: any text yields a config or a
 * ConfigError whose every problem has a message (and, for a schema problem, the key and its line);
 * never another exception. Fixed seed in CI; FUZZ_RUNS=100000 for a long run.
 */
const params = {
  numRuns: Number(process.env.FUZZ_RUNS ?? 300),
  seed: Number(process.env.FUZZ_SEED ?? 20261122),
}

const validHub = {
  cluster: 'prod',
  http: { listen: '127.0.0.1:7470' },
  broker: { listen: '127.0.0.1:1883', allowAnonymous: false },
  engine: { tickMs: 100 },
  api: { anonymous: 'viewer', rateLimit: { perSecond: 5, burst: 20 } },
  tracing: { serviceName: 'vigil-hub', incidentIdleMs: 30000 },
}
const validCluster = {
  nodes: [{ id: 'n1', fencing: [{ devices: ['ipmi-n1'], timeoutMs: 5000 }] }, { id: 'n2' }],
  resources: [{ id: 'web', preferred: { n1: 10 }, priority: 5 }],
}

function mutated(base: unknown): fc.Arbitrary<string> {
  const paths: string[][] = []
  const walk = (v: unknown, path: string[]) => {
    if (path.length > 0) paths.push(path)
    if (v && typeof v === 'object') for (const [k, c] of Object.entries(v)) walk(c, [...path, k])
  }
  walk(base, [])
  return fc
    .tuple(fc.constantFrom(...paths), fc.jsonValue(), fc.constantFrom('replace', 'delete', 'add'))
    .map(([path, value, how]) => {
      const copy = structuredClone(base) as Record<string, unknown>
      let target = copy
      for (const k of path.slice(0, -1)) target = target[k] as Record<string, unknown>
      const last = path[path.length - 1] as string
      if (how === 'add') target[`${last}x`] = value
      else if (how === 'delete') delete target[last]
      else target[last] = value
      return stringify(copy)
    })
}

/** Random YAML-ish text: fragments YAML cares about, joined at random. */
const yamlish = fc
  .array(
    fc.oneof(
      fc.string({ maxLength: 20 }),
      fc.constantFrom(
        ':',
        ': ',
        '- ',
        '\n',
        '  ',
        '{',
        '}',
        '[',
        ']',
        '&a ',
        '*a',
        '!!binary ',
        '---\n',
        '? ',
        '|',
        '"',
        "'",
        '#',
      ),
    ),
    { maxLength: 40 },
  )
  .map((parts) => parts.join(''))

function check(schema: Parameters<typeof parseConfig>[0], text: string) {
  try {
    parseConfig(schema, text, { file: 'fuzz.yaml' })
  } catch (err) {
    expect(err, String(err)).toBeInstanceOf(ConfigError)
    const problems = (err as ConfigError).problems
    expect(problems.length).toBeGreaterThan(0)
    for (const p of problems) {
      expect(p.message.length).toBeGreaterThan(0)
      expect(p.file).toBe('fuzz.yaml')
    }
  }
}

describe.each([
  ['hub config', hubConfigSchema, validHub],
  ['cluster file', clusterSpecSchema, validCluster],
] as const)('%s under fuzzing', (_name, schema, valid) => {
  test('the valid sample loads', () => {
    expect(() => parseConfig(schema, stringify(valid))).not.toThrow()
  })
  test('random YAML-ish text', () => {
    fc.assert(
      fc.property(yamlish, (text) => check(schema, text)),
      params,
    )
  })
  test('random values as YAML', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => check(schema, stringify(v))),
      params,
    )
  })
  test('a valid file with one key changed, removed or added', () => {
    fc.assert(
      fc.property(mutated(valid), (text) => {
        check(schema, text)
        // An unknown key is named and located at its line.
        try {
          parseConfig(schema, text, { file: 'fuzz.yaml' })
        } catch (err) {
          for (const p of (err as ConfigError).problems)
            if (p.message.startsWith('unknown key')) expect(p.line, p.key).toBeGreaterThan(0)
        }
      }),
      params,
    )
  })
})

test('an alias bomb is a config error, not a crash', () => {
  const bomb = [
    'a: &a [x, x, x, x, x, x, x, x, x]',
    ...'bcdefghij'
      .split('')
      .map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcdefghij'[i]}`).join(', ')}]`),
  ].join('\n')
  check(hubConfigSchema, bomb)
})
