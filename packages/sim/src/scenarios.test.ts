import { existsSync, readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { describe, expect, test } from 'vitest'
import { checkScenario, listScenarios } from './scenario.js'

// The golden scenarios are the specification of the engine's behaviour. A changed log is a
// changed behaviour: review the diff, then rewrite expectations explicitly with
//   VIGIL_UPDATE_SCENARIOS=1 pnpm --filter @vigil/sim test
const root = join(import.meta.dirname, '../../../test/scenarios')
const update = process.env.VIGIL_UPDATE_SCENARIOS === '1'
const dirs = listScenarios(root)

describe('golden scenarios', () => {
  test('there are at least 40, each with a one-sentence README and a script', () => {
    expect(dirs.length).toBeGreaterThanOrEqual(40)
    for (const dir of dirs) {
      const readme = readFileSync(join(dir, 'README.md'), 'utf8').trim()
      expect(readme.split('\n')).toHaveLength(1)
      expect(existsSync(join(dir, 'script'))).toBe(true)
    }
  })

  test.each(dirs.map((d) => [basename(d), d]))('%s', (_name, dir) => {
    const outcome = checkScenario(dir, update)
    expect(outcome.violations).toEqual([])
    expect(
      outcome.expected,
      'log.expect is missing: run with VIGIL_UPDATE_SCENARIOS=1 and review it',
    ).not.toBeNull()
    expect(outcome.actual).toBe(outcome.expected)
  })
})
