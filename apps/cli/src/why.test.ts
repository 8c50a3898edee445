import { expect, test } from 'vitest'
import { type Decision, renderPlan, renderWhy } from './why.js'

const d = (id: string, at: number, rule: string, extra: Partial<Decision> = {}): Decision => ({
  id,
  at,
  kind: 'fence',
  rule,
  summary: rule,
  policyVersion: '1',
  correlationId: 'd1',
  ...extra,
})

test('why: present state, the decision, where it started, the timeline with evidence, the candidates', () => {
  const chain = [
    d('d1', 0, 'classify.suspect', {
      node: 'n2',
      summary: 'healthy -> suspect',
      classification: 'suspect',
      evidence: [{ channel: 'hub', says: 'last heartbeat 900 ms ago', alive: false }],
    }),
    d('d2', 1000, 'placement.best-score', {
      kind: 'place',
      node: 'n1',
      resource: 'web',
      summary: 'starting on n1',
      candidates: [
        { node: 'n1', score: 5, eliminated: null },
        { node: 'n3', score: 1, eliminated: null },
        { node: 'n2', score: 10, eliminated: 'node is dead' },
      ],
      traceId: 'abc',
    }),
  ]
  const text = renderWhy('web', chain, { id: 'web', phase: 'running', node: 'n1', phaseSince: 2000 })
  expect(text).toContain('web is running on n1 since 00:00:02.000.')
  expect(text).toContain('Last decision: starting on n1 (rule placement.best-score).')
  expect(text).toContain('It started with: n2: healthy -> suspect (rule classify.suspect).')
  expect(text).toContain('Timeline (correlation d1, trace abc):')
  expect(text).toContain('evidence hub (silent): last heartbeat 900 ms ago')
  expect(text).toMatch(/n1 {4}5 {6}chosen/)
  expect(text).toMatch(/n3 {4}1 {6}eligible, lower score/)
  expect(text).toMatch(/n2 {4}- {6}eliminated: node is dead/)
})

test('why: nothing recorded says so', () => {
  expect(renderWhy('db', [], { id: 'db', phase: 'stopped', node: null, phaseSince: 0 })).toBe(
    'db is stopped since 00:00:00.000.\nNo decision about db is recorded.\n',
  )
})

test.each([
  [[], 'No node runs resources: nothing to plan.\n'],
  [
    [{ node: 'n1', moves: [{ resource: 'web', to: 'n2' }], unplaceable: [] }],
    'Every resource could be placed whichever node died.',
  ],
  [
    [{ node: 'n1', moves: [], unplaceable: [{ resource: 'db', why: 'no node has 64 GiB free' }] }],
    'Losing n1 would leave resources down',
  ],
])('plan %#', (plan, expected) => {
  expect(renderPlan(plan)).toContain(expected)
})
