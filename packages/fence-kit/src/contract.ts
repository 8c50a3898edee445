import type { Logger } from '@vigil/kit'
import type { z } from 'zod'

/**
 * The fence driver contract, after the fence-agents API (status, off, on, reboot, list, monitor):
 * - every operation is idempotent: off of an off plug succeeds, on of an on plug succeeds;
 * - off returning is not proof: the caller reads the power state back (see `fenceNode`);
 * - every operation has a declared timeout and is cancelled (signal aborted) when it runs out;
 * - errors carry a kind that decides what the hub may do next (see FenceErrorKind).
 *
 * A "plug" is what the device switches for one host: a PDU outlet, a VM name. Devices that control
 * exactly one host (a BMC) take the plug `null`.
 */
export type PowerState = 'on' | 'off'

export type FenceOp = 'status' | 'off' | 'on' | 'reboot' | 'list' | 'monitor'

/**
 * unreachable: the device did not answer (down, hung, wrong address): try the next level;
 * auth: the device answered but refused the credentials: alert, never retry blindly;
 * config: the request cannot work (unknown plug, missing program): alert, never retry blindly;
 * still-on: the device ran the off but the target still reads on: failed, never confirmed;
 * pending: the device is waiting for a person (meatware): not an answer yet.
 */
export type FenceErrorKind = 'unreachable' | 'auth' | 'config' | 'still-on' | 'pending'

export class FenceError extends Error {
  override readonly name = 'FenceError'
  constructor(
    readonly kind: FenceErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

export interface FenceContext {
  /** Aborted when the operation's time is up or the hub stops. */
  signal: AbortSignal
  log: Logger
}

export interface Outlet {
  plug: string
  name: string
}

export interface FenceDevice {
  /** Default timeout per operation, in ms. */
  readonly timeouts: Readonly<Record<FenceOp, number>>
  /** True if the device switches several hosts and needs a plug for each (PDU, hypervisor). */
  readonly needsPlug: boolean
  /** False if the device can only take a host down (ssh): on and reboot then fail with `config`. */
  readonly canPowerOn: boolean
  status(plug: string | null, ctx: FenceContext): Promise<PowerState>
  off(plug: string | null, ctx: FenceContext): Promise<void>
  on(plug: string | null, ctx: FenceContext): Promise<void>
  reboot(plug: string | null, ctx: FenceContext): Promise<void>
  /** The plugs the device knows (empty for a device without plugs). */
  list(ctx: FenceContext): Promise<Outlet[]>
  /** Succeeds when the device answers and accepts the credentials; used for device health. */
  monitor(ctx: FenceContext): Promise<void>
  close?(): Promise<void>
}

/** One folder per fence driver exports one of these; the hub's registry maps names to them. */
export interface FenceDriverFactory<S extends z.ZodType = z.ZodType> {
  readonly name: string
  readonly description: string
  /** Strict schema of the device config (unknown keys are errors). */
  readonly configSchema: S
  create(config: z.output<S>, env: { deviceId: string; log: Logger }): FenceDevice
}
