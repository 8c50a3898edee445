import { describe, expect, test } from 'vitest'
import { z } from 'zod'
import { ConfigError, parseConfig } from './config.js'

const schema = z.strictObject({
  cluster: z.string().default('default'),
  mqtt: z
    .strictObject({
      url: z.string().url().default('mqtt://127.0.0.1:1883'),
      keepaliveSeconds: z.number().int().positive().default(10),
    })
    .prefault({}),
})

function problemsOf(text: string, overrides = [] as { path: string[]; value: unknown }[]) {
  try {
    parseConfig(schema, text, { file: 'hub.yaml', overrides })
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return (err as ConfigError).problems
  }
  throw new Error('expected a ConfigError')
}

describe('parseConfig', () => {
  test('an empty file yields the defaults', () => {
    expect(parseConfig(schema, '')).toEqual({
      cluster: 'default',
      mqtt: { url: 'mqtt://127.0.0.1:1883', keepaliveSeconds: 10 },
    })
  })

  test('overrides (flags) win over the file', () => {
    const cfg = parseConfig(schema, 'mqtt:\n  url: mqtt://a:1\n', {
      overrides: [{ path: ['mqtt', 'url'], value: 'mqtt://b:2' }],
    })
    expect(cfg.mqtt.url).toBe('mqtt://b:2')
  })

  test.each([
    {
      name: 'unknown nested key names the key and its line',
      text: 'cluster: c1\nmqtt:\n  urll: mqtt://x:1\n',
      expected: { key: 'mqtt.urll', line: 3, column: 3, file: 'hub.yaml' },
      message: /unknown key/,
    },
    {
      name: 'unknown top-level key',
      text: 'clustre: c1\n',
      expected: { key: 'clustre', line: 1, column: 1 },
      message: /unknown key/,
    },
    {
      name: 'wrong type names the key and its line',
      text: 'mqtt:\n  keepaliveSeconds: soon\n',
      expected: { key: 'mqtt.keepaliveSeconds', line: 2, column: 3 },
      message: /number/,
    },
    {
      name: 'YAML syntax error gives the line',
      text: 'mqtt:\n  url: [unclosed\n',
      expected: { key: '' },
      message: /YAML syntax/,
    },
    {
      name: 'a scalar document is rejected',
      text: 'just a string\n',
      expected: { key: '' },
      message: /mapping/,
    },
  ])('$name', ({ text, expected, message }) => {
    const problems = problemsOf(text)
    expect(problems[0]).toMatchObject(expected)
    expect(problems[0]?.message).toMatch(message)
  })

  test('the error message is file:line:column: key: message', () => {
    expect(() => parseConfig(schema, 'mqtt:\n  urll: x\n', { file: 'agent.yaml' })).toThrow(
      'agent.yaml:2:3: mqtt.urll: unknown key',
    )
  })

  test('a bad override is reported by key even though it has no line', () => {
    const problems = problemsOf('', [{ path: ['mqtt', 'keepaliveSeconds'], value: -1 }])
    expect(problems[0]).toMatchObject({ key: 'mqtt.keepaliveSeconds' })
  })
})

test.each([
  ['an alias to no anchor', 'a: *nowhere\n', 'YAML: Unresolved alias'],
  [
    'an alias bomb',
    [
      'a: &a [x, x, x, x, x, x, x, x, x]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]',
      'e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]',
      'f: [*e, *e, *e, *e, *e, *e, *e, *e, *e]',
    ].join('\n'),
    'YAML: Excessive alias count',
  ],
])('%s is a config error naming the file, not a crash', (_what, text, message) => {
  try {
    parseConfig(schema, text, { file: 'x.yaml' })
    expect.unreachable()
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).message).toContain(`x.yaml: (root): ${message}`)
  }
})
