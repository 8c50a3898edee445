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

/**
 * Turns a failure to start into plain lines on stderr (never a stack trace) and an exit code:
 * 2 for configuration problems, 1 for the environment (an address in use, a file the process
 * cannot open, anything unforeseen).
 */
export function startupFailure(component: string, err: unknown): number {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number }
  if (e?.code === 'EADDRINUSE' || e?.code === 'EADDRNOTAVAIL' || e?.code === 'EACCES') {
    if (e.address !== undefined || e.port !== undefined) {
      const what =
        e.code === 'EADDRINUSE'
          ? 'address already in use'
          : e.code === 'EACCES'
            ? 'permission denied'
            : 'address not available'
      console.error(
        `vigil ${component}: cannot listen on ${e.address ?? '?'}:${e.port ?? '?'}: ${what} (${e.code})`,
      )
      return 1
    }
  }
  if (err instanceof VigilError) {
    console.error(`vigil ${component}: ${err.message}`)
    return err.code === 'config_unreadable' || err.code === 'config_invalid' ? 2 : 1
  }
  const message = err instanceof Error ? err.message : String(err)
  console.error(`vigil ${component}: cannot start: ${firstLine(message)}`)
  return 1
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0] ?? text
}
