/**
 * Rejects if `promise` has not settled within `ms`. The underlying work is not cancelled (use an
 * AbortSignal for that); this bounds how long the caller waits, e.g. for a statfs of a hung mount.
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
