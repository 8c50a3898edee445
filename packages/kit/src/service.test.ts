import { afterEach, describe, expect, test, vi } from 'vitest'
import { z } from 'zod'
import { ConfigError } from './config.js'
import { VigilError } from './errors.js'
import { runService, type ServiceSpec } from './service.js'

type Config = { log: { level: 'silent' } }

function spec(
  overrides: Partial<ServiceSpec<Config, { stopped: boolean }>>,
): ServiceSpec<Config, { stopped: boolean }> {
  return {
    name: 'thing',
    usage: 'usage',
    flags: {},
    envConfigFile: undefined,
    load: () => ({ log: { level: 'silent' } }),
    start: async () => ({ stopped: false }),
    ready: () => {},
    stop: async (r) => {
      r.stopped = true
    },
    ...overrides,
  }
}

describe('runService', () => {
  const errors: string[] = []
  afterEach(() => {
    errors.length = 0
    vi.restoreAllMocks()
  })
  const captureStderr = () =>
    vi.spyOn(console, 'error').mockImplementation((line: unknown) => {
      errors.push(String(line))
    })

  test('a part that dies at run time: the service stops and exits 1 with one line', async () => {
    captureStderr()
    const running = { stopped: false }
    const code = await runService(
      [],
      spec({ start: async () => running, fatal: async () => 'the listener died' }),
    )
    expect(code).toBe(1)
    expect(running.stopped).toBe(true)
    expect(errors).toEqual(['vigil thing: the listener died'])
  })

  test.each([
    [
      'a configuration problem',
      new ConfigError([{ key: 'x.y', message: 'bad', file: 'f.yaml', line: 2 }]),
      2,
      'vigil thing: f.yaml:2:1: x.y: bad',
    ],
    [
      'an environment problem',
      new VigilError('unavailable', 'cannot open the database d (store.path)'),
      1,
      'vigil thing: cannot open the database d (store.path)',
    ],
    [
      'an address in use',
      Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE', address: '127.0.0.1', port: 7470 }),
      1,
      'vigil thing: cannot listen on 127.0.0.1:7470: address already in use (EADDRINUSE)',
    ],
    [
      'anything unforeseen',
      new TypeError('x is not a function\n    at somewhere'),
      1,
      'vigil thing: cannot start: x is not a function',
    ],
  ] as const)('a failed start (%s): one line, exit %i', async (_what, err, exitCode, line) => {
    captureStderr()
    const code = await runService(
      [],
      spec({
        start: async () => {
          throw err
        },
      }),
    )
    expect(code).toBe(exitCode)
    expect(errors).toEqual([line])
  })

  test('an invalid configuration file: exit 2 before anything starts', async () => {
    captureStderr()
    const start = vi.fn()
    const code = await runService(
      [],
      spec({
        load: () => {
          throw new ConfigError([
            { key: 'a', message: z.string().safeParse(1).error?.issues[0]?.message ?? '' },
          ])
        },
        start,
      }),
    )
    expect(code).toBe(2)
    expect(start).not.toHaveBeenCalled()
    expect(errors[0]).toMatch(/^vigil thing: invalid configuration\na: /)
  })
})
