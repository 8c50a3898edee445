import { createLogger } from '@vigil/kit'
import type { AgentEvent } from '@vigil/protocol'
import { expect, test } from 'vitest'
import { EventOutbox } from './event-outbox.js'

const log = createLogger('test', 'silent')
const clock = { monoMs: () => 0, wallMs: () => 5000 }

type Done = (err?: Error) => void

/**
 * An outbox whose publish function the test answers: `taken` is what a broker took, `pending` the
 * sends not answered yet (answered by the test with `ok` or `fail`).
 */
function setup(capacity = 10) {
  let connected = true
  const taken: AgentEvent[] = []
  const pending: { event: AgentEvent; done: Done }[] = []
  const outbox = new EventOutbox({ node: 'n1', incarnation: 7 }, capacity, {
    clock,
    log,
    connected: () => connected,
    publish: (event, done) => pending.push({ event, done }),
  })
  const answer = (seq: number, err?: Error) => {
    const i = pending.findIndex((p) => p.event.seq === seq)
    const [p] = pending.splice(i, 1)
    if (!p) throw new Error(`no send of ${seq} pending`)
    if (!err) taken.push(p.event)
    p.done(err)
  }
  return {
    outbox,
    taken,
    pending,
    setConnected: (c: boolean) => {
      connected = c
    },
    ok: (seq: number) => answer(seq),
    fail: (seq: number) => answer(seq, new Error('no broker connected')),
    /** Answers every send (and those they lead to) with success. */
    okAll: () => {
      while (pending.length > 0) answer(pending[0]?.event.seq as number)
    },
    emit: (kind: string) => outbox.emit({ kind, severity: 'info', message: kind }),
  }
}

test('connected and nothing waiting: each event is published at once, numbered from 0', () => {
  const s = setup()
  s.outbox.emit({ kind: 'test.a', severity: 'warning', message: 'a', attrs: { x: 1 } })
  s.emit('test.b')
  s.okAll()
  expect(s.taken).toEqual([
    {
      v: 1,
      node: 'n1',
      incarnation: 7,
      seq: 0,
      at: 5000,
      kind: 'test.a',
      severity: 'warning',
      message: 'a',
      attrs: { x: 1 },
    },
    {
      v: 1,
      node: 'n1',
      incarnation: 7,
      seq: 1,
      at: 5000,
      kind: 'test.b',
      severity: 'info',
      message: 'test.b',
    },
  ])
  expect(s.outbox.size).toBe(0)
})

test.each([
  { name: 'a send taken stays sent', answer: 'ok', waiting: 0 },
  { name: 'a send that failed is put back', answer: 'fail', waiting: 1 },
] as const)('$name', ({ answer, waiting }) => {
  const s = setup()
  s.emit('test.a')
  s[answer](0)
  expect(s.outbox.size).toBe(waiting)
})

test('while something waits, a new event waits behind it even when connected (order is kept)', () => {
  const s = setup()
  s.emit('test.a')
  s.fail(0)
  s.emit('test.b')
  expect(s.pending).toEqual([])
  expect(s.outbox.size).toBe(2)
  s.outbox.flush()
  s.okAll()
  expect(s.taken.map((e) => [e.seq, e.kind])).toEqual([
    [0, 'test.a'],
    [1, 'test.b'],
  ])
})

test('events raised while away are buffered and flushed in order on connection, without a drop report', () => {
  const s = setup()
  s.setConnected(false)
  for (const k of ['test.a', 'test.b', 'test.c']) s.emit(k)
  expect(s.pending).toEqual([])
  s.setConnected(true)
  s.outbox.flush()
  s.okAll()
  expect(s.taken.map((e) => e.kind)).toEqual(['test.a', 'test.b', 'test.c'])
})

test('sends that fail in any order are replayed in seq order', () => {
  const s = setup()
  s.setConnected(false)
  for (const k of ['test.a', 'test.b', 'test.c']) s.emit(k)
  s.setConnected(true)
  s.outbox.flush()
  // The broker went away again with all three in flight; they fail newest first.
  s.fail(2)
  s.fail(0)
  s.fail(1)
  s.outbox.flush()
  expect(s.pending.map((p) => p.event.seq)).toEqual([0, 1, 2])
})

test.each([
  { name: 'within capacity nothing is dropped', capacity: 5, raised: 3, kept: 3, dropped: 0 },
  { name: 'at capacity nothing is dropped', capacity: 3, raised: 3, kept: 3, dropped: 0 },
  { name: 'past capacity the oldest are dropped', capacity: 3, raised: 5, kept: 3, dropped: 2 },
  { name: 'a buffer of one keeps the newest', capacity: 1, raised: 4, kept: 1, dropped: 3 },
])('$name, and the drops are reported once, after the replay', ({ capacity, raised, kept, dropped }) => {
  const s = setup(capacity)
  s.setConnected(false)
  for (let i = 1; i <= raised; i++) s.emit(`test.e${i}`)
  s.setConnected(true)
  s.outbox.flush()
  s.okAll()
  const replayed = Array.from({ length: kept }, (_, i) => `test.e${raised - kept + i + 1}`)
  const report = dropped > 0 ? ['agent.events_dropped'] : []
  expect(s.taken.map((e) => e.kind)).toEqual([...replayed, ...report])
  if (dropped > 0) {
    const last = s.taken.at(-1)
    expect(last?.attrs).toEqual({ dropped })
    expect(last?.severity).toBe('warning')
    expect(last?.message).toBe(
      `${dropped} events were dropped while the broker was unreachable (buffer capacity ${capacity})`,
    )
  }
  // Seq numbers follow the order raised; the report comes after the replayed events.
  const seqs = s.taken.map((e) => e.seq)
  expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
  // The next connection reports nothing new.
  s.outbox.flush()
  s.okAll()
  expect(s.taken).toHaveLength(kept + report.length)
})
