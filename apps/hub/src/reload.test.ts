import { clusterSpecSchema } from '@vigil/engine'
import { expect, test } from 'vitest'
import { specChanges } from './reload.js'

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
