import type { Input, OperatorOp } from '@vigil/engine'
import { createLogger } from '@vigil/kit'
import { describe, expect, test } from 'vitest'
import { OperatorRequests } from './operator-requests.js'
import type { NewEvent } from './store.js'

/** An engine that knows n1, n2, web (a vm that can live-migrate) and db; db cannot be suspended. */
function desk(options: { meatwareWaits?: boolean; n2?: 'healthy' | 'dead' } = {}) {
  const inputs: Input[] = []
  const audited: NewEvent[] = []
  const requests = new OperatorRequests({
    engine: {
      knows: (kind, id) => (kind === 'node' ? ['n1', 'n2'] : ['web', 'db']).includes(id),
      liveMigratable: (r) => r === 'web',
      suspendRefusal: (r) => (r === 'db' ? 'db is not a vm' : null),
      condition: (node) => (node === 'n2' ? ({ condition: options.n2 ?? 'healthy' } as never) : null),
      input: (i) => inputs.push(i),
    },
    confirmMeatware: () => options.meatwareWaits ?? false,
    audit: (e) => audited.push(e),
    now: () => 1000,
    log: createLogger('test', 'silent'),
  })
  return { requests, inputs, audited }
}

describe('a request', () => {
  test.each<[string, OperatorOp, unknown]>([
    ['naming an unknown resource', { op: 'cleanup', resource: 'nope' }, { unknown: 'resource' }],
    ['moving to an unknown node', { op: 'move', resource: 'web', node: 'n9', forMs: 0 }, { unknown: 'node' }],
    [
      'maintenance of an unknown node',
      { op: 'maintenance', scope: 'node', id: 'n9', on: true },
      { unknown: 'node' },
    ],
    [
      'live-migrating what cannot migrate',
      { op: 'move', resource: 'db', node: 'n2', forMs: 0, live: true },
      { refused: expect.stringContaining('cannot be live-migrated'), field: 'resource' },
    ],
    [
      'a suspend the engine refuses',
      { op: 'suspend', resource: 'db', on: true },
      { refused: 'db is not a vm', field: 'resource' },
    ],
  ])('%s is answered at once, never queued nor audited', (_, op, answer) => {
    const d = desk()
    expect(d.requests.request(op, 'alice', '10.0.0.5')).toEqual(answer)
    expect(d.inputs).toEqual([])
    expect(d.audited).toEqual([])
  })

  test.each<[string, OperatorOp, string | null]>([
    ['a move', { op: 'move', resource: 'web', node: 'n2', forMs: 0, live: true }, 'n2'],
    ['cluster maintenance', { op: 'maintenance', scope: 'cluster', on: true }, null],
    ['node maintenance', { op: 'maintenance', scope: 'node', id: 'n1', on: true }, 'n1'],
    ['an evacuation', { op: 'evacuate', node: 'n1' }, 'n1'],
  ])('%s accepted is audited (who, from where, what) before the engine hears it', (_, op, node) => {
    const d = desk()
    expect(d.requests.request(op, 'alice', '10.0.0.5')).toEqual({ accepted: true })
    expect(d.audited).toEqual([
      expect.objectContaining({
        at: 1000,
        node,
        source: 'operator',
        kind: `operator.${op.op}`,
        attrs: { by: 'alice', from: '10.0.0.5', op },
      }),
    ])
    expect(d.inputs).toEqual([{ type: 'operator', op }])
  })
})

describe('an operator says a node is off', () => {
  test.each([
    ['a meatware request waits for it', { meatwareWaits: true }, 'meatware-confirmed', []],
    ['a healthy node: refused', { n2: 'healthy' as const }, 'refused', []],
    [
      'a node the engine judges failed: an acknowledged fence',
      { n2: 'dead' as const },
      'acknowledged',
      [{ type: 'operator', op: { op: 'ack-fence', node: 'n2', by: 'bob' } }],
    ],
  ])('%s', (_, options, answer, inputs) => {
    const d = desk(options)
    expect(d.requests.confirmOff('n2', 'bob')).toBe(answer)
    expect(d.inputs).toEqual(inputs)
  })
})
