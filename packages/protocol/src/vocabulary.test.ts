import { describe, expect, test } from 'vitest'
import { idSchema, isValidName, nameSchema } from './vocabulary.js'

describe('names (cluster, node, hub)', () => {
  test.each(['node-a', 'Node_1', 'n', 'db.example', '0', 'a'.repeat(63)])('accepts %j', (name) => {
    expect(isValidName(name)).toBe(true)
    expect(nameSchema.safeParse(name).success).toBe(true)
  })

  // ":" is an id's, not a name's: a name is a topic level, a metric label and a file name.
  test.each(['', '-a', '.a', '_a', 'a/b', 'a+b', 'a#', 'a b', 'vm:web', 'a'.repeat(64)])(
    'rejects %j',
    (name) => {
      expect(isValidName(name)).toBe(false)
      expect(nameSchema.safeParse(name).success).toBe(false)
    },
  )
})

describe('ids (nodes, resources, groups, fence devices)', () => {
  test.each(['vm:web-1', 'node-a', 'ipmi.rack1', 'a'.repeat(63)])('accepts %j', (id) => {
    expect(idSchema.parse(id)).toBe(id)
  })

  test.each(['', ':vm', 'a/b', 'a b', 'a'.repeat(64)])('rejects %j', (id) => {
    expect(idSchema.safeParse(id).success).toBe(false)
  })

  test('every name is an id', () => {
    for (const name of ['node-a', 'Node_1', 'db.example']) expect(idSchema.safeParse(name).success).toBe(true)
  })
})
