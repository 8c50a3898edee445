import { spawn } from 'node:child_process'

export interface CommandResult {
  /** Exit code, or null when killed by a signal. */
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** True when the command was killed because `timeoutMs` ran out or `signal` was aborted. */
  killed: boolean
  /** The program could not be started at all (ENOENT, EACCES); `stderr` holds why. */
  notStarted: boolean
}

/**
 * Runs a program (no shell) and collects its output. Never rejects: a missing binary, a timeout and
 * an abort are all reported in the result, so callers map them to their own error kinds. The child
 * is SIGKILLed on timeout or abort; a hung device must never hang its caller.
 */
export function runCommand(
  argv: readonly string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs: number; signal?: AbortSignal },
): Promise<CommandResult> {
  return new Promise((resolve) => {
    const [file, ...args] = argv
    let stdout = ''
    let stderr = ''
    let killed = false
    let settled = false
    const child = spawn(file as string, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
    })
    const kill = () => {
      killed = true
      child.kill('SIGKILL')
    }
    const timer = setTimeout(kill, opts.timeoutMs)
    opts.signal?.addEventListener('abort', kill, { once: true })
    const finish = (r: Omit<CommandResult, 'stdout' | 'stderr' | 'killed'>) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', kill)
      resolve({ ...r, stdout, stderr, killed })
    }
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d
    })
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
    })
    child.stdin.on('error', () => {}) // a program that exits without reading its input
    child.stdin.end(opts.input ?? '')
    child.once('error', (err) => {
      stderr += err.message
      finish({ code: null, signal: null, notStarted: true })
    })
    child.once('close', (code, signal) => finish({ code, signal, notStarted: false }))
    // Killed: do not wait for its output to close (a grandchild may hold the pipes for long).
    child.once('exit', (code, signal) => {
      if (killed) finish({ code, signal, notStarted: false })
    })
    if (opts.signal?.aborted) kill()
  })
}
