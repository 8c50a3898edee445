import { expect, test } from 'vitest'
import { type FlagSpec, parseFlags } from './cli.js'
import { ConfigError } from './config.js'

const table: Record<string, FlagSpec> = {
  'mqtt-url': { path: ['mqtt', 'url'], type: 'string', description: 'broker URL' },
  'heartbeat-interval': { path: ['heartbeat', 'intervalMs'], type: 'number', description: 'ms' },
  verbose: { path: ['log', 'verbose'], type: 'boolean', description: 'more logs' },
}

test('maps flags onto config paths and keeps positionals and extras', () => {
  const parsed = parseFlags(
    [
      '-c',
      'a.yaml',
      '--mqtt-url',
      'mqtt://x:1',
      '--heartbeat-interval',
      '100',
      '--verbose',
      'node-1',
      '--json',
    ],
    table,
    { json: { type: 'boolean' } },
  )
  expect(parsed.configFile).toBe('a.yaml')
  expect(parsed.positionals).toEqual(['node-1'])
  expect(parsed.extra).toEqual({ json: true })
  expect(parsed.overrides).toEqual([
    { path: ['mqtt', 'url'], value: 'mqtt://x:1' },
    { path: ['heartbeat', 'intervalMs'], value: 100 },
    { path: ['log', 'verbose'], value: true },
  ])
})

test.each([
  { argv: ['--heartbeat-interval', 'soon'], message: /heartbeat-interval expects a number/ },
  { argv: ['--no-such-flag'], message: /no-such-flag/ },
])('rejects $argv with a ConfigError naming the flag', ({ argv, message }) => {
  expect(() => parseFlags(argv, table)).toThrow(ConfigError)
  expect(() => parseFlags(argv, table)).toThrow(message)
})
