export { VigilError, toVigilError, type VigilErrorCode } from './errors.js'
export { systemClock, type Clock } from './clock.js'
export { createLogger, RateLimitedLog, type Logger, type LogLevel } from './log.js'
export {
  ConfigError,
  formatProblem,
  loadConfigFile,
  parseConfig,
  type ConfigProblem,
  type Override,
} from './config.js'
export { BoundedQueue } from './bounded-queue.js'
export { describeFlags, parseFlags, type FlagSpec, type ParsedFlags } from './cli.js'
