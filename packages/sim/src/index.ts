export { prng } from './prng.js'
export { type SimOptions, type SimResult, Simulation } from './runner.js'
export {
  checkScenario,
  listScenarios,
  loadScenario,
  runScenario,
  type ScenarioOutcome,
  scenarioFileSchema,
} from './scenario.js'
export { parseScript, type ScriptEvent } from './script.js'
export { type WorldSpec, worldSchema } from './world.js'
