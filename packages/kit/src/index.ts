export { BoundedQueue } from './bounded-queue.js'
export { type ChildProbeResult, childProbe, type FilesystemStats, statfsInChild } from './child-probe.js'
export { describeFlags, type FlagSpec, type ParsedFlags, parseFlags } from './cli.js'
export { type Clock, systemClock } from './clock.js'
export { type CommandResult, runCommand } from './command.js'
export {
  ConfigError,
  type ConfigProblem,
  formatProblem,
  loadConfigFile,
  type Override,
  parseConfig,
} from './config.js'
export { brokerAndLogFlags, brokerAuthFields, logSectionSchema } from './config-fields.js'
export { startupFailure, toVigilError, VigilError, type VigilErrorCode } from './errors.js'
export { createLogger, type Logger, type LogLevel, RateLimitedLog } from './log.js'
export { rejectedKeys } from './schema.js'
export { brokerCredentials, readConfigFile, readSecretFile } from './secrets.js'
export { runService, type ServiceSpec } from './service.js'
export { runWithDeadline, withTimeout } from './timeout.js'
export { type LoopWatchdog, type LoopWatchdogOptions, startLoopWatchdog } from './watchdog.js'
