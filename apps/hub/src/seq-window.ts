/**
 * Exactly-once filter for a per-sender sequence under at-least-once delivery (MQTT QoS 1 resends,
 * agent buffer replays), which may also reorder. Remembers the highest sequence seen and the
 * missing ones below it (at most `maxMissing`, oldest forgotten first), so memory stays bounded.
 */
export class SeqWindow {
  private highest = -1
  private readonly missing = new Set<number>()

  constructor(private readonly maxMissing = 1024) {}

  /** True the first time `seq` is offered; false for a duplicate (or a gap too old to remember). */
  accept(seq: number): boolean {
    if (this.highest === -1) {
      // The first sequence seen sets the floor: anything older was handled before this hub
      // (re)started, or is lost; accepting it could store an event twice.
      this.highest = seq
      return true
    }
    if (seq > this.highest) {
      for (let s = Math.max(this.highest + 1, seq - this.maxMissing); s < seq; s++) this.missing.add(s)
      for (const s of this.missing) {
        if (this.missing.size <= this.maxMissing) break
        this.missing.delete(s) // Sets iterate in insertion order: oldest gaps go first
      }
      this.highest = seq
      return true
    }
    return this.missing.delete(seq)
  }
}
