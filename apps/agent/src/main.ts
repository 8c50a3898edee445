import { ConfigError, createLogger, describeFlags, parseFlags, startupFailure, VigilError } from '@vigil/kit'
import { startAgent } from './agent.js'
import { type AgentConfig, agentFlags, loadAgentConfig } from './config.js'
import { agentEnv } from './env.js'

export const AGENT_USAGE = `Usage: vigil agent [options]\n\nRuns the agent for this host (or guest).\n\n${describeFlags(agentFlags)}`

/** `vigil agent`: runs until SIGINT/SIGTERM. Exit codes: 0 clean stop, 2 bad config, 1 other failure. */
export async function runAgentCli(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(AGENT_USAGE)
    return 0
  }
  let config: AgentConfig
  try {
    const flags = parseFlags(argv, agentFlags)
    config = loadAgentConfig(flags.configFile ?? agentEnv.configFile, flags.overrides)
  } catch (err) {
    if (err instanceof ConfigError || (err instanceof VigilError && err.code === 'config_unreadable')) {
      console.error(`vigil agent: invalid configuration\n${err.message}`)
      return 2
    }
    throw err
  }
  const log = createLogger('agent', config.log.level)
  let agent: Awaited<ReturnType<typeof startAgent>>
  try {
    agent = await startAgent(config, {
      log,
      mqttPassword: agentEnv.mqttPassword,
      version: agentEnv.version,
    })
  } catch (err) {
    return startupFailure('agent', err)
  }
  log.info({ node: agent.node, incarnation: agent.incarnation, cluster: config.cluster }, 'agent running')
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve())
    process.once('SIGTERM', () => resolve())
  })
  await agent.stop()
  return 0
}
