import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger, VigilError } from '@vigil/kit'
import type { CommandResult } from '@vigil/protocol'
import { afterEach, beforeEach, expect, test, vi } from 'vitest'
import { CommandDispatcher, type LateResult } from './commands.js'
import { emptyHubMetrics } from './metrics.test-helper.js'
import { HubStore } from './store.js'

const dirs: string[] = []
beforeEach(() => {
  vi.useFakeTimers()
})
afterEach(() => {
  vi.useRealTimers()
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

const TIMEOUT_MS = 5000

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-commands-'))
  dirs.push(dir)
  const store = new HubStore(join(dir, 'hub.sqlite'))
  const { privateKey } = generateKeyPairSync('ed25519')
  const published: string[] = []
  const metrics = emptyHubMetrics()
  const make = () =>
    new CommandDispatcher(
      {
        cluster: 'c',
        hubName: 'hub',
        epoch: 1,
        ttlMs: 5000,
        timeoutMs: TIMEOUT_MS,
        signingKey: () => privateKey,
      },
      async (_topic, payload) => {
        published.push(payload)
      },
      store,
      metrics,
      { wallMs: () => Date.now(), monoMs: () => Date.now() },
      createLogger('test', 'silent'),
    )
  const dispatcher = make()
  const late: LateResult[] = []
  dispatcher.onLateResult((l) => late.push(l))
  const lastId = () => (JSON.parse(published.at(-1) as string) as { id: string }).id
  const answer = (
    id: string,
    status: CommandResult['status'],
    result?: CommandResult['result'],
  ): CommandResult => ({
    v: 1,
    id,
    node: 'node-a',
    incarnation: 1,
    status,
    receivedAt: Date.now(),
    finishedAt: Date.now(),
    ...(result ? { result } : {}),
  })
  return { store, dispatcher, late, lastId, answer, make }
}

/** Settles a promise into a value that can be checked synchronously under fake timers. */
function track<T>(p: Promise<T>) {
  const state: { value?: T; error?: { code?: string; message: string } } = {}
  p.then(
    (v) => {
      state.value = v
    },
    (e: { code?: string; message: string }) => {
      state.error = e
    },
  )
  return state
}

test('a command not accepted within the command timeout fails as undelivered', async () => {
  const { dispatcher, store, lastId } = setup()
  const outcome = track(dispatcher.send('node-a', 'start', { resource: 'web' }))
  await vi.advanceTimersByTimeAsync(TIMEOUT_MS + 1)
  expect(outcome.error?.code).toBe('command_timeout')
  expect(outcome.error?.message).toContain('not accepted by node-a within 5000 ms')
  expect(store.getCommand(lastId())?.status).toBe('timeout')
  store.close()
})

test('an accepted command is awaited for its declared deadline, however much longer than the command timeout', async () => {
  const { dispatcher, store, lastId, answer } = setup()
  const outcome = track(dispatcher.send('node-a', 'migrate', { resource: 'vm1', to: 'node-b' }))
  const id = lastId()
  await vi.advanceTimersByTimeAsync(50)
  dispatcher.handleResult(answer(id, 'accepted', { timeoutMs: 600_000 }))
  expect(store.getCommand(id)?.status).toBe('accepted')
  // A migration of five minutes: far past the 5 s command timeout, still waited for.
  await vi.advanceTimersByTimeAsync(300_000)
  expect(outcome.error).toBeUndefined()
  dispatcher.handleResult(answer(id, 'ok', { resource: 'vm1' }))
  await vi.advanceTimersByTimeAsync(0)
  expect(outcome.value?.result.status).toBe('ok')
  expect(store.getCommand(id)?.status).toBe('ok')
  store.close()
})

test('a result after the deadline is still recorded and handed on as late, with the command it answers', async () => {
  const { dispatcher, store, lastId, answer, late } = setup()
  const outcome = track(dispatcher.send('node-a', 'stop', { resource: 'web', action: 'a-1-7' }))
  const id = lastId()
  dispatcher.handleResult(answer(id, 'accepted', { timeoutMs: 20_000 }))
  await vi.advanceTimersByTimeAsync(20_000 + TIMEOUT_MS + 1)
  expect(outcome.error?.message).toContain('within its deadline of 20000 ms + 5000 ms')
  expect(store.getCommand(id)?.status).toBe('timeout')

  dispatcher.handleResult(answer(id, 'ok'))
  expect(store.getCommand(id)?.status).toBe('ok')
  expect(late.map((l) => [l.command.args.action, l.result.status])).toEqual([['a-1-7', 'ok']])
  // Recorded once: a redelivery of the same result changes nothing.
  dispatcher.handleResult(answer(id, 'failed'))
  expect(store.getCommand(id)?.status).toBe('ok')
  expect(late).toHaveLength(1)
  store.close()
})

test('a result for a command an earlier run of the hub sent reaches the late listener; others are ignored', async () => {
  const { dispatcher, store, lastId, answer, make } = setup()
  void dispatcher
    .send('node-a', 'migrate', { resource: 'vm1', to: 'node-b', action: 'a-1-3' })
    .catch(() => {})
  const id = lastId()
  dispatcher.handleResult(answer(id, 'accepted', { timeoutMs: 60_000 }))
  // The hub restarts: a new dispatcher on the same database.
  const restarted = make()
  const late: LateResult[] = []
  restarted.onLateResult((l) => late.push(l))
  restarted.handleResult({ ...answer(id, 'ok'), node: 'node-b' }) // not the node it was sent to
  restarted.handleResult(answer('6f1c2a52-4a8e-4b8e-9a55-0d8f6f1f2b11', 'ok')) // never sent
  restarted.handleResult(answer(id, 'accepted', { timeoutMs: 60_000 })) // an acceptance is no outcome
  expect(late).toEqual([])
  restarted.handleResult(answer(id, 'ok'))
  expect(late.map((l) => l.command.args.action)).toEqual(['a-1-3'])
  expect(store.getCommand(id)?.status).toBe('ok')
  dispatcher.close()
  store.close()
})

test('a result for a command another hub of the group sent reaches the foreign listener by its echoed action id', () => {
  const { dispatcher, answer, late } = setup()
  const foreign: [string, string][] = []
  dispatcher.onForeignResult((actionId, result) => foreign.push([actionId, result.status]))
  const id = '6f1d6a2e-8c1b-4a57-9a43-0b7d1e6f2c11'
  dispatcher.handleResult(answer(id, 'accepted', { timeoutMs: 1000 })) // an acceptance is not an outcome
  dispatcher.handleResult(answer(id, 'ok', { resource: 'web', action: 'a-57-3' }))
  dispatcher.handleResult(answer('0b7d1e6f-2c11-4a57-9a43-6f1d6a2e8c1b', 'ok', { resource: 'web' })) // no action id: dropped
  expect(foreign).toEqual([['a-57-3', 'ok']])
  expect(late).toEqual([])
})

test('a standby refuses to command, naming why', async () => {
  const { store } = setup()
  const standby = new CommandDispatcher(
    {
      cluster: 'c',
      hubName: 'hub-b',
      epoch: 0,
      ttlMs: 5000,
      timeoutMs: TIMEOUT_MS,
      signingKey: () => generateKeyPairSync('ed25519').privateKey,
      mayCommand: () =>
        new VigilError('unavailable', 'this hub (hub-b) is a standby: the leader is hub-a at http://a:7470'),
    },
    async () => {},
    store,
    emptyHubMetrics(0),
    { wallMs: () => Date.now(), monoMs: () => Date.now() },
    createLogger('test', 'silent'),
  )
  await expect(standby.send('node-a', 'ping')).rejects.toThrow(/standby: the leader is hub-a/)
})
