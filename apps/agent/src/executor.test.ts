import type { Command } from '@vigil/protocol'
import { describe, expect, test } from 'vitest'
import { CommandGate } from './executor.js'

const cmd = (over: Partial<Command> & { epoch?: number } = {}): Command => {
  const { epoch = 2, ...rest } = over
  return {
    v: 1,
    id: '0b7a3c1e-8d5f-4a5e-9a1b-2c3d4e5f6a7b',
    issuer: { hub: 'hub', epoch },
    seq: 10,
    issuedAt: 1000,
    expiresAt: 6000,
    target: 'n1',
    action: 'ping',
    args: {},
    ...rest,
  }
}

describe('CommandGate', () => {
  test.each([
    { name: 'accepts a fresh command', steps: [cmd()], expected: [null] },
    { name: "refuses another node's command", steps: [cmd({ target: 'n2' })], expected: ['wrong_target'] },
    { name: 'refuses an expired command', steps: [cmd({ expiresAt: 1500 })], expected: ['expired'] },
    { name: 'refuses a replay of the same command', steps: [cmd(), cmd()], expected: [null, 'replayed'] },
    {
      name: 'refuses an older seq in the same epoch',
      steps: [cmd({ seq: 10 }), cmd({ seq: 9 })],
      expected: [null, 'replayed'],
    },
    { name: 'accepts increasing seqs', steps: [cmd({ seq: 10 }), cmd({ seq: 11 })], expected: [null, null] },
    {
      name: 'a newer epoch resets the seq',
      steps: [cmd({ seq: 10 }), cmd({ epoch: 3, seq: 1 })],
      expected: [null, null],
    },
    {
      name: 'refuses an older epoch after a newer one',
      steps: [cmd({ epoch: 3, seq: 1 }), cmd({ epoch: 2, seq: 99 })],
      expected: [null, 'stale_epoch'],
    },
    {
      name: 'a refused command does not advance the gate',
      steps: [cmd({ seq: 50, expiresAt: 1 }), cmd({ seq: 5 })],
      expected: ['expired', null],
    },
  ])('$name', ({ steps, expected }) => {
    const gate = new CommandGate('n1')
    expect(steps.map((c) => gate.check(c, 2000))).toEqual(expected)
  })
})

test('with a state file, the replay floor survives a restart (a captured command cannot run again)', async () => {
  const { mkdtempSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const file = join(mkdtempSync(join(tmpdir(), 'vigil-gate-')), 'commands.json')
  const before = new CommandGate('n1', file)
  expect(before.check(cmd({ seq: 10 }), 2000)).toBeNull()
  const after = new CommandGate('n1', file) // the agent restarted
  expect(after.check(cmd({ seq: 10 }), 2000)).toBe('replayed')
  expect(after.check(cmd({ epoch: 1, seq: 99 }), 2000)).toBe('stale_epoch')
  expect(after.check(cmd({ seq: 11 }), 2000)).toBeNull()
  expect(new CommandGate('n1').check(cmd({ seq: 10 }), 2000)).toBeNull() // without one: per run only
})

test('a state file that cannot be written at start stops the agent there, naming the key', async () => {
  const { VigilError } = await import('@vigil/kit')
  const err = (() => {
    try {
      new CommandGate('n1', '/nonexistent-vigil-dir/agent-floor.json')
    } catch (e) {
      return e
    }
  })()
  expect(err).toBeInstanceOf(VigilError)
  expect(err).toMatchObject({
    code: 'config_invalid',
    message: expect.stringMatching(/^commands\.stateFile: /),
  })
})

test('a state file that cannot be written later refuses the command, never throws, and keeps the floor in memory', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const dir = mkdtempSync(join(tmpdir(), 'vigil-gate-'))
  const gate = new CommandGate('n1', join(dir, 'commands.json'))
  rmSync(dir, { recursive: true }) // the directory is gone (a full or read-only file system alike)
  expect(gate.check(cmd({ seq: 10 }), 2000)).toBe('floor_unsaved')
  expect(gate.lastSaveError).toContain('ENOENT')
  expect(gate.check(cmd({ seq: 10 }), 2000)).toBe('replayed')
})
