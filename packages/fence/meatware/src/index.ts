import {
  type FenceContext,
  type FenceDevice,
  type FenceDriverFactory,
  FenceError,
  type Outlet,
  type PowerState,
} from '@vigil/fence-kit'
import { z } from 'zod'

export const meatwareConfigSchema = z.strictObject({
  /** What the operator is asked to do, shown with every request ("pull both power cords of ..."). */
  instructions: z
    .string()
    .default('power the host off by hand, then confirm it with `vigil fence confirm <node>`'),
})
export type MeatwareConfig = z.output<typeof meatwareConfigSchema>

export interface MeatwareRequest {
  plug: string
  requestedAt: number
  confirmedAt: number | null
  confirmedBy: string | null
}

/**
 * A person is the fence device: `off` asks an operator to power the host off, and the host reads
 * off only once the operator confirms it (CLI or API). It never times out into "confirmed": an
 * unconfirmed request reads `pending`, and the hub's fence level fails when its time is up.
 * The plug is the host's name. A host nobody asked about reads on (the safe assumption).
 */
export class MeatwareDevice implements FenceDevice {
  readonly needsPlug = true
  readonly canPowerOn = true
  readonly timeouts = { status: 1000, off: 1000, on: 1000, reboot: 1000, list: 1000, monitor: 1000 }
  private readonly requests = new Map<string, MeatwareRequest>()
  /** Every host this device was asked about: what `list` reports. */
  private readonly known = new Set<string>()

  constructor(
    readonly config: MeatwareConfig,
    private readonly now: () => number = Date.now,
  ) {}

  private plugOf(plug: string | null): string {
    if (plug === null) throw new FenceError('config', 'meatware needs the host name as its plug')
    this.known.add(plug)
    return plug
  }

  async status(plug: string | null): Promise<PowerState> {
    const r = this.requests.get(this.plugOf(plug))
    if (!r) return 'on'
    if (r.confirmedAt === null)
      throw new FenceError('pending', `waiting for an operator to confirm ${r.plug} is off`)
    return 'off'
  }

  async off(plug: string | null, ctx: FenceContext): Promise<void> {
    const p = this.plugOf(plug)
    if (this.requests.has(p)) return
    this.requests.set(p, { plug: p, requestedAt: this.now(), confirmedAt: null, confirmedBy: null })
    ctx.log.warn({ node: p }, `operator action needed: ${this.config.instructions.replaceAll('<node>', p)}`)
  }

  /** The host was powered on again (by the person): forget the request and its confirmation. */
  async on(plug: string | null): Promise<void> {
    this.requests.delete(this.plugOf(plug))
  }

  async reboot(plug: string | null): Promise<void> {
    this.requests.delete(this.plugOf(plug))
  }

  async list(): Promise<Outlet[]> {
    return [...this.known].map((plug) => ({ plug, name: plug }))
  }

  async monitor(): Promise<void> {}

  /**
   * An operator says the host is off. Only an outstanding request can be confirmed: a confirmation
   * given before Vigil asked could be about an earlier outage.
   */
  confirm(plug: string, by: string): boolean {
    const r = this.requests.get(plug)
    if (!r || r.confirmedAt !== null) return false
    r.confirmedAt = this.now()
    r.confirmedBy = by
    return true
  }

  pending(): MeatwareRequest[] {
    return [...this.requests.values()].map((r) => ({ ...r }))
  }
}

export const meatwareDriver: FenceDriverFactory<typeof meatwareConfigSchema> = {
  name: 'meatware',
  description: 'An operator powers the host off by hand and confirms it; never times out into "confirmed"',
  configSchema: meatwareConfigSchema,
  create: (config) => new MeatwareDevice(config),
}
