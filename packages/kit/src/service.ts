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
  /**
   * Starts every part, or throws having closed what it had opened: a failed start must leave
   * nothing behind (no port held, no timer) so that the process ends at once.
   */
  start(config: C, log: Logger): Promise<R>
  /** Logs the "ready" line (with whatever URLs the service bound). */
  ready(running: R, config: C, log: Logger): void
  /**
   * Resolves with one plain line when a part the service cannot run without has died (the
   * embedded broker's listener, say): the process then stops and exits 1, so that its supervisor
   * restarts it rather than leave it up and useless.
   */
  fatal?(running: R): Promise<string>
  stop(running: R): Promise<void>
}

/** How long a stop may take before the process exits anyway (systemd's default is 90 s: far less). */
const STOP_DEADLINE_MS = 10_000

/**
 * Runs a long-lived Vigil process from its command line until SIGINT or SIGTERM.
 * Exit codes: 0 clean stop; 2 bad configuration (file, line and key on stderr); 1 the environment
 * (an address in use, a database that cannot be opened) or a fatal failure at run time. Every
 * failure is one plain line per problem on stderr, never a stack trace.
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
    return startupFailure(spec.name, err)
  }
  const log = createLogger(spec.name, config.log.level)
  let running: R
  try {
    running = await spec.start(config, log)
  } catch (err) {
    return startupFailure(spec.name, err)
  }
  spec.ready(running, config, log)
  const ended = await new Promise<{ fatal: string | null }>((resolve) => {
    process.once('SIGINT', () => resolve({ fatal: null }))
    process.once('SIGTERM', () => resolve({ fatal: null }))
    spec.fatal?.(running).then((reason) => resolve({ fatal: reason }))
  })
  if (ended.fatal) {
    log.fatal({ reason: ended.fatal }, `${spec.name} cannot go on: stopping`)
    console.error(`vigil ${spec.name}: ${ended.fatal}`)
  } else log.info(`${spec.name} stopping`)
  const deadline = new Promise<'late'>((resolve) =>
    setTimeout(() => resolve('late'), STOP_DEADLINE_MS).unref(),
  )
  const stopped = await Promise.race([
    spec.stop(running).then(
      () => 'stopped' as const,
      (err: unknown) => {
        log.error({ err }, 'stop failed')
        return 'failed' as const
      },
    ),
    deadline,
  ])
  if (stopped === 'late') log.warn({ afterMs: STOP_DEADLINE_MS }, 'stop took too long: exiting anyway')
  return ended.fatal || stopped !== 'stopped' ? 1 : 0
}
