/**
 * JSON text of a large plain object built in slices, giving the event loop back between them: the
 * hub's engine state at 10,000 nodes is about 8 MB of JSON, and `JSON.stringify` of it in one go
 * held ingest for 60-100 ms on a loaded machine (issue #21).
 *
 * Contract: the text equals `JSON.stringify(value)` for plain data (no `toJSON`, functions or
 * symbols), provided nothing changes `value` until the promise settles; the caller guarantees that
 * (the engine loop runs no step meanwhile). Each top-level member that is a plain object (a record:
 * nodes, resources) is written entry by entry; every other member whole.
 */
export interface SliceClock {
  /** Monotonic milliseconds. */
  monoMs(): number
  /** Gives the event loop back; resolves when the next slice may run. */
  yieldNow(): Promise<void>
}

/** How many entries are written between looks at the clock (a look costs more than an entry). */
const ENTRIES_PER_LOOK = 32

export async function jsonInSlices(
  value: Record<string, unknown>,
  sliceMs: number,
  clock: SliceClock,
): Promise<{ text: string; slices: number }> {
  const parts: string[] = []
  let sliceStart = clock.monoMs()
  let slices = 1
  let sinceLook = 0
  /** Whether this slice has had its time (looked at every few entries, never awaited otherwise). */
  const sliceDone = (): boolean => {
    if (++sinceLook < ENTRIES_PER_LOOK) return false
    sinceLook = 0
    return clock.monoMs() - sliceStart >= sliceMs
  }
  const nextSlice = async (): Promise<void> => {
    await clock.yieldNow()
    slices++
    sliceStart = clock.monoMs()
  }
  parts.push('{')
  let firstMember = true
  for (const key of Object.keys(value)) {
    const member = value[key]
    if (member === undefined) continue
    parts.push(`${firstMember ? '' : ','}${JSON.stringify(key)}:`)
    firstMember = false
    if (!isRecord(member)) {
      parts.push(JSON.stringify(member))
      if (sliceDone()) await nextSlice()
      continue
    }
    parts.push('{')
    let firstEntry = true
    for (const id of Object.keys(member)) {
      const entry = member[id]
      if (entry === undefined) continue
      parts.push(`${firstEntry ? '' : ','}${JSON.stringify(id)}:${JSON.stringify(entry)}`)
      firstEntry = false
      if (sliceDone()) await nextSlice()
    }
    parts.push('}')
  }
  parts.push('}')
  return { text: parts.join(''), slices }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
