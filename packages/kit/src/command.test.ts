import { describe, expect, test } from 'vitest'
import { runCommand } from './command.js'

describe('runCommand', () => {
  test('a killed command returns at once even if a grandchild holds its output open', async () => {
    const started = performance.now()
    const r = await runCommand(['sh', '-c', 'sleep 30; true'], { timeoutMs: 200 })
    expect(r.killed).toBe(true)
    expect(performance.now() - started).toBeLessThan(10_000)
  })

  test.each([
    [
      ['sh', '-c', 'echo out; echo err >&2; exit 3'],
      { code: 3, stdout: 'out\n', stderr: 'err\n', notStarted: false },
    ],
    [['/nonexistent/program'], { code: null, notStarted: true }],
  ])('%j', async (argv, expected) => {
    expect(await runCommand(argv, { timeoutMs: 5000 })).toMatchObject(expected)
  })

  test('input reaches the program on stdin', async () => {
    expect((await runCommand(['cat'], { input: 'a=1\n', timeoutMs: 5000 })).stdout).toBe('a=1\n')
  })
})
