/**
 * Rejects if `promise` has not settled within `ms`. The underlying work is not cancelled (use an
 * AbortSignal for that); this bounds how long the caller waits. Not for calls into storage that may
 * hang (statfs, reads): the call keeps holding one of libuv's threads (use childProbe).
 */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
    promise.then(
      (v) => {
        clearTimeout(t)
        resolve(v)
      },
      (e) => {
        clearTimeout(t)
        reject(e)
      },
    )
  })
}

/**
 * Runs `work` with a signal that aborts when `timeoutMs` runs out or `outer` aborts. At the
 * deadline the caller gets `onTimeout()` at once, without waiting for work that ignores its signal
 * (a hung device, a driver stuck in a syscall); such work's later failure is swallowed.
 */
export async function runWithDeadline<T>(
  work: (signal: AbortSignal) => Promise<T>,
  opts: { timeoutMs: number; signal?: AbortSignal | undefined; onTimeout: () => Error },
): Promise<T> {
  const controller = new AbortController()
  const onOuterAbort = () => controller.abort(opts.signal?.reason)
  opts.signal?.addEventListener('abort', onOuterAbort, { once: true })
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort(new Error('timeout'))
      reject(opts.onTimeout())
    }, opts.timeoutMs)
  })
  const running = (async () => work(controller.signal))() // a synchronous throw becomes a rejection
  try {
    return await Promise.race([running, deadline])
  } finally {
    clearTimeout(timer)
    opts.signal?.removeEventListener('abort', onOuterAbort)
    running.catch(() => {})
  }
}
