import { type FlagSpec, parseFlags } from './cli.js'
import { ConfigError, type Override } from './config.js'
import { startupFailure, VigilError } from './errors.js'
import { createLogger, type Logger, type LogLevel } from './log.js'

export interface ServiceSpec<C extends { log: { level: LogLevel } }, R> {
  /** "hub", "agent": names the process in messages and logs. */
  name: string
  usage: string
  flags: Record<string, FlagSpec>
  /** The config file named by the environment when no --config is given. */
  envConfigFile: string | undefined
  load(file: string | undefined, overrides: Override[]): C
  start(config: C, log: Logger): Promise<R>
  /** Logs the "ready" line (with whatever URLs the service bound). */
  ready(running: R, config: C, log: Logger): void
  stop(running: R): Promise<void>
}

/**
 * Runs a long-lived Vigil process from its command line until SIGINT or SIGTERM.
 * Exit codes: 0 clean stop, 2 bad configuration (file, line and key on stderr), 1 failure to start.
 */
export async function runService<C extends { log: { level: LogLevel } }, R>(
  argv: string[],
  spec: ServiceSpec<C, R>,
): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(spec.usage)
    return 0
  }
  let config: C
  try {
    const flags = parseFlags(argv, spec.flags)
    config = spec.load(flags.configFile ?? spec.envConfigFile, flags.overrides)
  } catch (err) {
    if (err instanceof ConfigError || (err instanceof VigilError && err.code === 'config_unreadable')) {
      console.error(`vigil ${spec.name}: invalid configuration\n${err.message}`)
      return 2
    }
    throw err
  }
  const log = createLogger(spec.name, config.log.level)
  let running: R
  try {
    running = await spec.start(config, log)
  } catch (err) {
    return startupFailure(spec.name, err)
  }
  spec.ready(running, config, log)
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve())
    process.once('SIGTERM', () => resolve())
  })
  log.info(`${spec.name} stopping`)
  await spec.stop(running)
  return 0
}
