import { describeFlags, runService } from '@vigil/kit'
import { startAgent } from './agent.js'
import { agentFlags, loadAgentConfig } from './config.js'
import { agentEnv } from './env.js'

export const AGENT_USAGE = `Usage: vigil agent [options]\n\nRuns the agent for this host (or guest).\n\n${describeFlags(agentFlags)}`

/** `vigil agent`: runs until SIGINT/SIGTERM. Exit codes: 0 clean stop, 2 bad config, 1 other failure. */
export function runAgentCli(argv: string[]): Promise<number> {
  return runService(argv, {
    name: 'agent',
    usage: AGENT_USAGE,
    flags: agentFlags,
    envConfigFile: agentEnv.configFile,
    load: loadAgentConfig,
    start: (config, log) =>
      startAgent(config, { log, mqttPassword: agentEnv.mqttPassword, version: agentEnv.version }),
    ready: (agent, config, log) =>
      log.info(
        { node: agent.node, incarnation: agent.incarnation, cluster: config.cluster },
        'agent running',
      ),
    stop: (agent) => agent.stop(),
  })
}
