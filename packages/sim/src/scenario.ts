import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { checkClusterSpec, clusterSpecSchema } from '@vigil/engine'
import { parseConfig } from '@vigil/kit'
import { z } from 'zod'
import { type SimResult, Simulation } from './runner.js'
import { parseScript } from './script.js'
import { worldSchema } from './world.js'

/**
 * A scenario folder: README.md (one sentence), cluster.yaml (`spec:` the engine's cluster spec,
 * `world:` the simulated world), script (faults), log.expect (the expected log, human-readable).
 */
export const scenarioFileSchema = z.strictObject({ spec: clusterSpecSchema, world: worldSchema.prefault({}) })

export function loadScenario(dir: string) {
  const file = join(dir, 'cluster.yaml')
  const { spec, world } = parseConfig(scenarioFileSchema, readFileSync(file, 'utf8'), { file })
  const problems = checkClusterSpec(spec)
  if (problems.length > 0) throw new Error(`${file}: ${problems.join('; ')}`)
  const script = parseScript(readFileSync(join(dir, 'script'), 'utf8'), join(dir, 'script'))
  return { spec, world, script }
}

export function runScenario(dir: string): SimResult {
  const { spec, world, script } = loadScenario(dir)
  return new Simulation(spec, world).run(script)
}

export interface ScenarioOutcome {
  name: string
  dir: string
  actual: string
  expected: string | null
  violations: string[]
}

/** Runs a scenario and compares with log.expect; with `update`, rewrites log.expect instead. */
export function checkScenario(dir: string, update = false): ScenarioOutcome {
  const result = runScenario(dir)
  const actual = `${result.log.join('\n')}\n`
  const expectFile = join(dir, 'log.expect')
  if (update) writeFileSync(expectFile, actual)
  const expected = existsSync(expectFile) ? readFileSync(expectFile, 'utf8') : null
  return { name: dir.split('/').pop() ?? dir, dir, actual, expected, violations: result.violations }
}

export function listScenarios(root: string): string[] {
  return readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(root, d.name, 'cluster.yaml')))
    .map((d) => join(root, d.name))
    .sort()
}
