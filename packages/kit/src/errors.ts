/**
 * Errors that cross a module boundary carry a closed `code` (so callers switch on it, never on
 * message text) and the underlying `cause`.
 *
 * @example
 *   throw new VigilError('config_invalid', 'hub.yaml:3:5: mqtt.urll: unknown key', { cause: err })
 */
export type VigilErrorCode =
  | 'config_invalid'
  | 'config_unreadable'
  | 'protocol_invalid'
  | 'command_timeout'
  | 'command_refused'
  | 'not_found'
  | 'unavailable'
  | 'internal'

export class VigilError extends Error {
  override readonly name = 'VigilError'
  constructor(
    readonly code: VigilErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/** Normalises anything thrown into a VigilError, keeping the original as `cause`. */
export function toVigilError(thrown: unknown, code: VigilErrorCode = 'internal'): VigilError {
  if (thrown instanceof VigilError) return thrown
  const message = thrown instanceof Error ? thrown.message : String(thrown)
  return new VigilError(code, message, { cause: thrown })
}
