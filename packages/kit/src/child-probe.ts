import { spawn } from 'node:child_process'

export interface ChildProbeResult {
  ok: boolean
  /** `<what> done`, or why not: failed (its last stderr line), timed out, cancelled, not started. */
  detail: string
  ms: number
  stdout: string
}

/**
 * Runs a program in a child process and resolves at its exit or at `timeoutMs`, whichever is
 * first (the child is then SIGKILLed). For anything that touches storage: a call into a hung
 * filesystem (a dead SAN path, a hard NFS mount, a stopped FUSE server) blocks until it answers,
 * and in the agent it would hold one of libuv's four threads, which every file operation of the
 * agent shares, for that long. A child stuck in the kernel may even outlive its SIGKILL; the caller
 * never waits for it.
 */
export function childProbe(
  argv: readonly string[],
  what: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<ChildProbeResult> {
  const started = performance.now()
  return new Promise((resolve) => {
    const [program, ...args] = argv as [string, ...string[]]
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    let stdout = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d
    })
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
    })
    let settled = false
    const finish = (ok: boolean, detail: string) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      resolve({ ok, detail, ms: performance.now() - started, stdout })
    }
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      finish(false, `${what} did not finish within ${timeoutMs} ms`)
    }, timeoutMs)
    const onAbort = () => {
      child.kill('SIGKILL')
      finish(false, `${what} cancelled`)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    if (signal?.aborted) onAbort()
    child.once('error', (err) => finish(false, `cannot run ${program}: ${err.message}`))
    child.once('close', (code) => {
      if (code === 0) finish(true, `${what} done`)
      else if (code !== null)
        finish(false, `${what} failed: ${stderr.trim().split('\n').pop() ?? `exit ${code}`}`)
    })
  })
}

export interface FilesystemStats {
  /** Blocks of `blockSize` bytes: in all, free, and free to unprivileged users. */
  blocks: number
  bfree: number
  bavail: number
  blockSize: number
  files: number
  ffree: number
}

/**
 * statfs(2) of `path` in a child (`stat -f`), never in the calling process (see childProbe): a
 * statfs in the agent of a filesystem hung under it held the agent's file threads until every file
 * operation of the agent waited (found twice by the lab's shared-disk hang: the disk driver's
 * check, then the agent's facts, which stalled a guest's heartbeat reads and reset a healthy guest).
 * Rejects with the reason when it fails or times out.
 */
export async function statfsInChild(
  path: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<FilesystemStats> {
  const r = await childProbe(['stat', '-f', '-c', '%b %f %a %S %c %d', path], 'statfs', timeoutMs, signal)
  if (!r.ok) throw new Error(r.detail)
  const numbers = r.stdout.trim().split(/\s+/).map(Number)
  if (numbers.length !== 6 || numbers.some((n) => !Number.isFinite(n)))
    throw new Error(`statfs: unexpected output "${r.stdout.trim()}"`)
  const [blocks, bfree, bavail, blockSize, files, ffree] = numbers as [
    number,
    number,
    number,
    number,
    number,
    number,
  ]
  return { blocks, bfree, bavail, blockSize, files, ffree }
}
