/**
 * Polls `probe` until it returns a value other than undefined/false, or fails with the last
 * observation. Tests assert on states reached, never on how long they took; the timeout only
 * bounds a broken run.
 */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 20_000, intervalMs = 50 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await probe()
      if (value !== undefined && value !== false) return value
      last = value
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${String(last)}`)
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}
