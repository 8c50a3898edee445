/**
 * The resources' observations, in batches. Contract: `publish` (each second, and whenever a
 * resource's state changed) hands `send` one complete batch of every resource's latest observation,
 * numbered (`seq` from 0 with each incarnation, advancing only when a batch is sent), if `canSend`;
 * else it does nothing: a batch is superseded by the next one, so none is kept.
 */
import type { Clock } from '@vigil/kit'
import type { Observation, ObservationBatch } from '@vigil/protocol'

export interface ObservationDeps {
  clock: Clock
  /** Every resource's latest observation. */
  observations: () => Observation[]
  /** Whether a batch would be heard now. */
  canSend: () => boolean
  send: (batch: ObservationBatch) => void
}

export class ObservationSender {
  private seq = 0
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly source: { node: string; incarnation: number },
    private readonly deps: ObservationDeps,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.publish(), 1000)
  }

  close(): void {
    clearInterval(this.timer)
  }

  publish(): void {
    const { deps } = this
    if (!deps.canSend()) return
    // Sent even when empty: "this node runs none of the cluster's resources" is information too.
    const observations = deps.observations()
    deps.send({
      v: 1,
      node: this.source.node,
      incarnation: this.source.incarnation,
      seq: this.seq++,
      at: deps.clock.wallMs(),
      observations,
      complete: true,
    })
  }
}
