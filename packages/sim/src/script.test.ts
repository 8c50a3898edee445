import { expect, test } from 'vitest'
import { parseScript } from './script.js'

test.each([
  ['x crash node1', 'script:1: "x" is not a time in seconds'],
  ['1 explode node1', 'script:1: unknown verb "explode"'],
  ['1 crash', 'script:1: "crash" takes 1 arguments'],
  ['1 hub-restart soon', 'script:1: hub-restart: "soon" is not a number of seconds'],
  ['1 hub-restart 2 -1', 'script:1: hub-restart: "-1" is not a number of seconds'],
])('a bad line is refused with its line and what is wrong: %s', (line, message) => {
  expect(() => parseScript(line)).toThrow(message)
})

test('hub-restart takes the age of the state it resumes from as an optional second argument', () => {
  expect(parseScript('7.5 hub-restart 1 1\n5 crash node1')).toEqual([
    { at: 5000, verb: 'crash', args: ['node1'], line: 2 },
    { at: 7500, verb: 'hub-restart', args: ['1', '1'], line: 1 },
  ])
})
