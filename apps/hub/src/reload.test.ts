import { clusterSpecSchema } from '@vigil/engine'
import { describe, expect, test } from 'vitest'
import { reloadRefusal, specChanges } from './reload.js'

const base = {
  nodes: [{ id: 'n1' }, { id: 'n2' }],
  resources: [{ id: 'web', preferred: { n1: 10 } }, { id: 'db' }],
}
const spec = (x: object) => clusterSpecSchema.parse(x)

test.each([
  ['nothing', base, []],
  ['a resource added', { ...base, resources: [...base.resources, { id: 'cache' }] }, ['+ resource cache']],
  ['a resource removed', { ...base, resources: [base.resources[0]] }, ['- resource db']],
  [
    'a preference changed',
    { ...base, resources: [{ id: 'web', preferred: { n2: 10 } }, { id: 'db' }] },
    ['~ resource web: preferred'],
  ],
  ['a node added', { ...base, nodes: [...base.nodes, { id: 'n3' }] }, ['+ node n3']],
  ['a cluster-wide key', { ...base, governor: { maxFences: 5 } }, ['~ governor']],
] as const)('%s', (_, after, expected) => {
  expect(specChanges(spec(base), spec(after))).toEqual(expected)
})

describe('what may not leave the file while in use', () => {
  const engine = (
    fences: Record<string, string>,
    resources: { id: string; node: string | null; phase: string }[],
  ) => ({
    fencePhase: (node: string) => fences[node] ?? 'idle',
    resources: () => resources,
  })
  const webOnN1 = [{ id: 'web', node: 'n1', phase: 'running' }]

  test.each([
    ['a change with nothing in the way', base, engine({}, webOnN1), null],
    [
      'a fence under way on any node',
      base,
      engine({ n2: 'verifying' }, webOnN1),
      'a fence of n2 is under way',
    ],
    [
      'a node leaving while home to a resource',
      { ...base, nodes: [{ id: 'n2' }], resources: [{ id: 'web' }, { id: 'db' }] },
      engine({}, webOnN1),
      'node n1 leaves the file but runs web: vigil evacuate n1 first',
    ],
    ['an empty node leaving', { ...base, nodes: [{ id: 'n1' }] }, engine({}, webOnN1), null],
    [
      'a resource leaving while running',
      { ...base, resources: [{ id: 'db' }] },
      engine({}, webOnN1),
      'resource web leaves the file but is running: vigil resource stop web first',
    ],
    [
      'a stopped resource leaving',
      { ...base, resources: [{ id: 'db' }] },
      engine({}, [{ id: 'web', node: null, phase: 'stopped' }]),
      null,
    ],
  ] as const)('%s', (_, after, view, refusal) => {
    const why = reloadRefusal(spec(base), spec(after), view)
    if (refusal === null) expect(why).toBeNull()
    else expect(why).toContain(refusal)
  })
})
