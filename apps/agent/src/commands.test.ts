import { randomUUID } from 'node:crypto'
import { DriverError } from '@vigil/driver-kit'
import { createLogger } from '@vigil/kit'
import { type Command, type CommandResult, encode } from '@vigil/protocol'
import { afterEach, beforeEach, expect, test, vi } from 'vitest'
import { type CommandDeps, CommandHandler } from './commands.js'
import { type ResourceEntry, resourceEntrySchema } from './drivers.js'
import type { EventInput } from './event-outbox.js'
import type { Refusal } from './executor.js'
import { ResourceRunner } from './resources.js'

const log = createLogger('test', 'silent')
const clock = { monoMs: () => Date.now(), wallMs: () => Date.now() }
const T0 = 1_700_000_000_000
/** How long the fake driver takes over an action. */
const ACTION_MS = 5000
/** The deadline the fake runner gives an action on its one resource, `web`. */
const DEADLINE_MS = 30_000

const cleanups: (() => Promise<void>)[] = []
beforeEach(() => {
  vi.useFakeTimers()
  vi.setSystemTime(T0)
})
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
  vi.useRealTimers()
})

let seq = 0
function cmd(action: Command['action'], args: Command['args'] = {}, over: Partial<Command> = {}): Command {
  return {
    v: 1,
    id: randomUUID(),
    issuer: { hub: 'hub', epoch: 1 },
    seq: ++seq,
    issuedAt: T0,
    expiresAt: T0 + 60_000,
    target: 'n1',
    action,
    args,
    ...over,
  }
}

/**
 * A handler whose seams the test holds: `replies` is what it published, `events` what it emitted,
 * `runs` the driver actions it asked for. By default the gate lets everything through, signatures
 * are not required, and the runner knows one resource, `web`, whose actions take ACTION_MS.
 */
function setup(over: Partial<CommandDeps> = {}) {
  const replies: CommandResult[] = []
  const events: EventInput[] = []
  const runs: unknown[][] = []
  const gate = vi.fn((_cmd: Command, _at: number): Refusal | null => null)
  const refreshFacts = vi.fn(async () => {})
  const handler = new CommandHandler(
    { node: 'n1', incarnation: 7 },
    {
      clock,
      log,
      reply: (result) => replies.push(result),
      emit: (event) => events.push(event),
      verify: null,
      gate,
      refreshFacts,
      resources: {
        deadlineMs: (id) => (id === 'web' ? DEADLINE_MS : null),
        run: async (...call) => {
          runs.push(call)
          await new Promise((resolve) => setTimeout(resolve, ACTION_MS))
        },
      },
      ...over,
    },
  )
  return {
    replies,
    events,
    runs,
    gate,
    refreshFacts,
    send: (c: Command) => handler.receive(Buffer.from(encode('cmd', c))),
    receive: (payload: Buffer) => handler.receive(payload),
  }
}

test('a resource command is answered accepted at once, with its deadline, then with its result', async () => {
  const s = setup()
  const c = cmd('start', { resource: 'web', action: 'act-1' })
  s.send(c)
  const base = { v: 1, id: c.id, node: 'n1', incarnation: 7, receivedAt: T0 }
  expect(s.replies).toEqual([
    { ...base, status: 'accepted', finishedAt: T0, result: { timeoutMs: DEADLINE_MS } },
  ])
  await vi.advanceTimersByTimeAsync(ACTION_MS - 1)
  expect(s.replies).toHaveLength(1)
  await vi.advanceTimersByTimeAsync(1)
  expect(s.replies.slice(1)).toEqual([
    // The hub engine's action id is echoed, so whichever hub hears the result knows what it answers.
    { ...base, status: 'ok', finishedAt: T0 + ACTION_MS, result: { resource: 'web', action: 'act-1' } },
  ])
  expect(s.runs).toEqual([['web', 'start', {}]])
  expect(s.gate).toHaveBeenCalledWith(c, T0)
})

test.each<{ command: Command['action']; args: Command['args']; runs: unknown[] }>([
  { command: 'start', args: {}, runs: ['web', 'start', {}] },
  { command: 'stop', args: {}, runs: ['web', 'stop', {}] },
  { command: 'restart', args: {}, runs: ['web', 'restart', {}] },
  { command: 'reset-vm', args: {}, runs: ['web', 'reset', {}] },
  { command: 'reboot-vm', args: {}, runs: ['web', 'reboot', {}] },
  { command: 'suspend', args: {}, runs: ['web', 'suspend', {}] },
  { command: 'resume', args: {}, runs: ['web', 'resume', {}] },
  { command: 'migrate', args: { to: 'n2' }, runs: ['web', 'migrate', { target: 'n2' }] },
])('$command runs the driver action $runs.1', async ({ command, args, runs }) => {
  const s = setup()
  s.send(cmd(command, { resource: 'web', ...args }))
  await vi.advanceTimersByTimeAsync(ACTION_MS)
  expect(s.runs).toEqual([runs])
  expect(s.replies.map((r) => r.status)).toEqual(['accepted', 'ok'])
})

test.each([
  {
    command: 'ping' as const,
    result: { pong: true, agentTime: T0 },
    facts: 0,
  },
  { command: 'refresh-facts' as const, result: { refreshed: true }, facts: 1 },
])(
  '$command is answered with its result alone (no accepted, no driver)',
  async ({ command, result, facts }) => {
    const s = setup()
    const c = cmd(command)
    s.send(c)
    await vi.advanceTimersByTimeAsync(0)
    expect(s.replies).toEqual([
      { v: 1, id: c.id, node: 'n1', incarnation: 7, status: 'ok', receivedAt: T0, finishedAt: T0, result },
    ])
    expect(s.refreshFacts).toHaveBeenCalledTimes(facts)
    expect(s.runs).toEqual([])
  },
)

test.each([
  { name: 'while the first still runs', gapMs: 1000 },
  { name: 'after the first finished', gapMs: 2 * ACTION_MS },
])('a repeat of an action id $name is answered from its record, not run again', async ({ gapMs }) => {
  const s = setup()
  const first = cmd('reset-vm', { resource: 'web', action: 'act-1' })
  s.send(first)
  await vi.advanceTimersByTimeAsync(gapMs)
  // The hub lost the answer and asks again: a new command (id, seq), the same action id.
  const again = cmd('reset-vm', { resource: 'web', action: 'act-1' })
  s.send(again)
  await vi.advanceTimersByTimeAsync(2 * ACTION_MS)
  expect(s.runs).toEqual([['web', 'reset', {}]])
  const answers = s.replies.filter((r) => r.id === again.id)
  expect(answers).toEqual([
    expect.objectContaining({ status: 'accepted', receivedAt: T0 + gapMs }),
    // The first's outcome, under the new command's id and time of receipt.
    expect.objectContaining({
      status: 'ok',
      receivedAt: T0 + gapMs,
      finishedAt: T0 + ACTION_MS,
      result: { resource: 'web', action: 'act-1' },
    }),
  ])
})

test.each<{ name: string; second: Command['args'] }>([
  { name: 'another action id', second: { resource: 'web', action: 'act-2' } },
  { name: 'no action id (an older hub)', second: { resource: 'web' } },
])('a command with $name is run again', async ({ second }) => {
  const s = setup()
  s.send(cmd('restart', { resource: 'web', action: 'act-1' }))
  await vi.advanceTimersByTimeAsync(ACTION_MS)
  s.send(cmd('restart', second))
  await vi.advanceTimersByTimeAsync(ACTION_MS)
  expect(s.runs).toHaveLength(2)
})

test('the same command heard through two brokers is handled once', async () => {
  const s = setup()
  const c = cmd('stop', { resource: 'web' })
  s.send(c)
  s.send(c)
  await vi.advanceTimersByTimeAsync(ACTION_MS)
  expect(s.replies.map((r) => r.status)).toEqual(['accepted', 'ok'])
  expect(s.runs).toHaveLength(1)
  expect(s.gate).toHaveBeenCalledTimes(1)
})

test.each([
  { name: 'the gate says it expired', gate: 'expired', verify: null, sig: undefined, asked: true },
  { name: 'the gate says it is a replay', gate: 'replayed', verify: null, sig: undefined, asked: true },
  {
    name: 'the gate says its epoch is stale',
    gate: 'stale_epoch',
    verify: null,
    sig: undefined,
    asked: true,
  },
  {
    name: 'the gate says it is for another node',
    gate: 'wrong_target',
    verify: null,
    sig: undefined,
    asked: true,
  },
  // The signature first: an unverified command must not even move the replay floor.
  { name: 'unsigned, signatures required', gate: null, verify: () => true, sig: undefined, asked: false },
  { name: 'a signature that does not verify', gate: null, verify: () => false, sig: 'c2ln', asked: false },
] as const)('$name: answered refused with the code, never run', async ({ gate, verify, sig, asked }) => {
  const code = gate ?? (sig === undefined ? 'unsigned' : 'bad_signature')
  const s = setup({ verify })
  s.gate.mockReturnValue(gate)
  const c = cmd('start', { resource: 'web', action: 'act-1' }, sig === undefined ? {} : { sig })
  s.send(c)
  await vi.advanceTimersByTimeAsync(ACTION_MS)
  expect(s.replies).toEqual([
    {
      v: 1,
      id: c.id,
      node: 'n1',
      incarnation: 7,
      status: 'refused',
      receivedAt: T0,
      finishedAt: T0,
      error: { code, message: expect.any(String) },
    },
  ])
  expect(s.runs).toEqual([])
  expect(s.gate).toHaveBeenCalledTimes(asked ? 1 : 0)
  expect(s.events).toEqual([
    {
      kind: 'command.refused',
      severity: 'warning',
      message: `start refused: ${code}`,
      attrs: { command: c.id, reason: code },
    },
  ])
})

test('a signed command that verifies is run', async () => {
  const s = setup({ verify: (c) => c.sig === 'c2ln' })
  s.send(cmd('start', { resource: 'web' }, { sig: 'c2ln' }))
  await vi.advanceTimersByTimeAsync(ACTION_MS)
  expect(s.replies.map((r) => r.status)).toEqual(['accepted', 'ok'])
})

test('a malformed command is reported as an event, and neither answered nor run', async () => {
  const s = setup()
  s.receive(Buffer.from('{"v":1,"action":"start"}'))
  await vi.advanceTimersByTimeAsync(ACTION_MS)
  expect(s.replies).toEqual([])
  expect(s.events).toEqual([expect.objectContaining({ kind: 'command.malformed', severity: 'warning' })])
  expect(s.gate).not.toHaveBeenCalled()
})

test.each([
  { name: 'a driver error: its kind', error: new DriverError('local', 'no such binary'), code: 'local' },
  { name: 'a driver error: its kind', error: new DriverError('config', 'no such domain'), code: 'config' },
  { name: 'any other error: transient', error: new Error('boom'), code: 'transient' },
])('an action that fails is answered failed with $name ($code)', async ({ error, code }) => {
  const s = setup({
    resources: { deadlineMs: () => DEADLINE_MS, run: () => Promise.reject(error) },
  })
  const c = cmd('stop', { resource: 'web', action: 'act-1' })
  s.send(c)
  await vi.advanceTimersByTimeAsync(0)
  expect(s.replies[1]).toEqual({
    v: 1,
    id: c.id,
    node: 'n1',
    incarnation: 7,
    status: 'failed',
    receivedAt: T0,
    finishedAt: T0,
    result: { resource: 'web', action: 'act-1' },
    error: { code, message: error.message },
  })
})

// Through a real ResourceRunner: one watch (a process found by name), whose driver declares no action.
test.each<{ name: string; command: Command['action']; args: Command['args']; accepted: boolean }>([
  { name: 'an unknown resource', command: 'start', args: { resource: 'nope' }, accepted: false },
  {
    name: 'a stop the driver does not declare',
    command: 'stop',
    args: { resource: 'watch' },
    accepted: true,
  },
  {
    name: 'a reset the driver does not declare',
    command: 'reset-vm',
    args: { resource: 'watch' },
    accepted: true,
  },
  {
    name: 'a migration the driver does not declare',
    command: 'migrate',
    args: { resource: 'watch', to: 'n2' },
    accepted: true,
  },
])('$name is a config error', async ({ command, args, accepted }) => {
  const entry = { id: 'watch', driver: 'process', config: { match: { name: 'vigil-no-such' } } }
  const runner = new ResourceRunner([resourceEntrySchema.parse(entry) as ResourceEntry], log, () => {})
  cleanups.push(() => runner.close())
  const s = setup({ resources: runner })
  s.send(cmd(command, args))
  await vi.waitFor(() => expect(s.replies.at(-1)?.status).toBe('failed'))
  expect(s.replies.map((r) => r.status)).toEqual(accepted ? ['accepted', 'failed'] : ['failed'])
  expect(s.replies.at(-1)?.error?.code).toBe('config')
})
