/**
 * The status page's recent history: a bounded ring of samples taken every `everyMs`, kept in
 * memory only (a newcomer without Grafana still sees a trend; Prometheus keeps the real history).
 * Each sample holds, per node, its health score and the worst heartbeat delay seen since the
 * previous sample, and how many resources ran.
 */
export interface HistorySample {
  at: number
  resourcesRunning: number
  resourcesTotal: number
  nodes: Record<string, { health: number | null; heartbeatDelayMs: number | null }>
}

export interface HistoryView {
  everyMs: number
  windowMs: number
  samples: HistorySample[]
}

export class HistoryRing {
  private readonly samples: HistorySample[] = []
  private readonly capacity: number
  /** Worst heartbeat delay per node since the last sample. */
  private delays = new Map<string, number>()

  constructor(
    readonly everyMs = 10_000,
    readonly windowMs = 15 * 60_000,
  ) {
    this.capacity = Math.max(1, Math.ceil(windowMs / everyMs))
  }

  noteHeartbeat(node: string, delayMs: number): void {
    const worst = this.delays.get(node)
    if (worst === undefined || delayMs > worst) this.delays.set(node, delayMs)
  }

  sample(
    at: number,
    nodes: { id: string; health: number | null }[],
    resources: { running: number; total: number },
  ): HistorySample {
    const sample: HistorySample = {
      at,
      resourcesRunning: resources.running,
      resourcesTotal: resources.total,
      nodes: Object.fromEntries(
        nodes.map((n) => [n.id, { health: n.health, heartbeatDelayMs: this.delays.get(n.id) ?? null }]),
      ),
    }
    this.delays = new Map()
    this.samples.push(sample)
    if (this.samples.length > this.capacity) this.samples.splice(0, this.samples.length - this.capacity)
    return sample
  }

  view(): HistoryView {
    return { everyMs: this.everyMs, windowMs: this.windowMs, samples: [...this.samples] }
  }
}
