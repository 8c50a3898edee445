/**
 * A FIFO with a fixed capacity that drops the oldest entry when full and counts what it dropped.
 * Used where memory must stay bounded while a peer is away (agent events while the broker is down).
 */
export class BoundedQueue<T> {
  private items: T[] = []
  private droppedCount = 0

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError('capacity must be a positive integer')
  }

  push(item: T): void {
    if (this.items.length >= this.capacity) {
      this.items.shift()
      this.droppedCount++
    }
    this.items.push(item)
  }

  /** Removes and returns everything, oldest first. */
  drain(): T[] {
    const out = this.items
    this.items = []
    return out
  }

  /** Puts items back at the front (e.g. a flush that failed half-way), respecting capacity. */
  unshiftAll(items: T[]): void {
    const merged = [...items, ...this.items]
    const overflow = Math.max(0, merged.length - this.capacity)
    this.droppedCount += overflow
    this.items = merged.slice(overflow)
  }

  get size(): number {
    return this.items.length
  }

  get dropped(): number {
    return this.droppedCount
  }
}
