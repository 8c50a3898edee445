/**
 * The parts a hub needs, and the state of each: what /readyz and /healthz answer, what the
 * `vigil_hub_part_up` gauge shows, and what the hub acts on (a store it cannot write, say).
 */
export type HubPart = 'store' | 'broker' | 'engine' | 'group'

/** `starting`: not up yet (not ready, not unhealthy); `failed`: was up, is not now. */
export type PartState = 'starting' | 'up' | 'failed'

export interface PartView {
  part: HubPart
  state: PartState
  /** Why it is not up, in one line; null while up. */
  problem: string | null
  /** Wall ms of the last change of state. */
  since: number
}

export class HubHealth {
  private readonly parts = new Map<HubPart, PartView>()

  constructor(
    parts: readonly HubPart[],
    private readonly now: () => number,
    private readonly onChange: (view: PartView, before: PartState) => void = () => {},
  ) {
    for (const part of parts)
      this.parts.set(part, { part, state: 'starting', problem: 'starting', since: now() })
  }

  up(part: HubPart): void {
    this.set(part, 'up', null)
  }

  /** The part is down: `failed` if it had been up, still `starting` if it never was. */
  down(part: HubPart, problem: string): void {
    const view = this.parts.get(part)
    if (!view) return
    this.set(part, view.state === 'starting' ? 'starting' : 'failed', problem)
  }

  state(part: HubPart): PartState | null {
    return this.parts.get(part)?.state ?? null
  }

  problem(part: HubPart): string | null {
    return this.parts.get(part)?.problem ?? null
  }

  views(): PartView[] {
    return [...this.parts.values()]
  }

  /** Ready: every part is up. */
  ready(): boolean {
    return this.views().every((p) => p.state === 'up')
  }

  /** Healthy: no part that was up has failed (one still starting is not a failure). */
  healthy(): boolean {
    return this.views().every((p) => p.state !== 'failed')
  }

  private set(part: HubPart, state: PartState, problem: string | null): void {
    const view = this.parts.get(part)
    if (!view) return
    if (view.state === state && view.problem === problem) return
    const before = view.state
    const next = { part, state, problem, since: state === before ? view.since : this.now() }
    this.parts.set(part, next)
    if (state !== before) this.onChange(next, before)
  }
}
