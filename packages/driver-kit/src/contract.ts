import type { Logger } from '@vigil/kit'
import type { z } from 'zod'

/**
 * The driver contract, after the OCF resource agent API:
 * - monitor is three-state: running, stopped (cleanly), failed; plus a detail and metrics (a vm
 *   may also be `paused`: not serving, yet still holding its disks, so never "stopped"; or
 *   `suspended`: paused on purpose, by an operator's suspend, which the hypervisor tells apart from
 *   a pause of its own (an I/O error), and which is no failure);
 * - start of a running target and stop of a stopped one succeed (idempotent); stop is the force
 *   operation that must leave the target stopped;
 * - every action has a declared timeout and is cancelled (signal aborted) when it runs out;
 * - errors carry the recovery scope in their kind.
 */
export type MonitorState = 'running' | 'stopped' | 'failed' | 'paused' | 'suspended'

export interface MonitorResult {
  state: MonitorState
  detail?: string
  metrics?: Record<string, number>
}

/**
 * transient: retry here (a timeout, a busy daemon);
 * local: this host cannot do it, another might (binary missing here, port taken);
 * config: never retry anywhere (the configuration is wrong).
 */
export type DriverErrorKind = 'transient' | 'local' | 'config'

export class DriverError extends Error {
  override readonly name = 'DriverError'
  constructor(
    readonly kind: DriverErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/**
 * reset: hard reset (a vm's power button); reboot: a graceful reboot from inside; suspend and
 * resume: pause a vm in memory and continue it (a suspended vm is `paused`: it still holds its
 * disks); migrate: move the running target live to another node (`ActionContext.target`).
 * suspend, resume and migrate are idempotent like start and stop: suspending a paused vm, resuming
 * a running one, or migrating a vm that already runs on the target succeeds.
 */
export type Action =
  | 'monitor'
  | 'start'
  | 'stop'
  | 'restart'
  | 'reset'
  | 'reboot'
  | 'suspend'
  | 'resume'
  | 'migrate'

/** Actions with their own optional method on a driver (restart is stop then start). */
export type OptionalAction = 'reset' | 'reboot' | 'suspend' | 'resume' | 'migrate'

export interface ActionContext {
  /** Aborted when the action's timeout runs out or the agent stops. */
  signal: AbortSignal
  log: Logger
  /** migrate: the node to move to (its name in the cluster; the driver maps it to an address). */
  target?: string
}

/**
 * What runs a vm's guest: `kvm` (QEMU with hardware virtualization), `qemu` (QEMU emulating the CPU,
 * TCG: no /dev/kvm, much slower), `xen`, `vsphere` (VMware ESX through vCenter). The protocol's
 * observation carries the same closed set (a metric label at the hub).
 */
export type Hypervisor = 'kvm' | 'qemu' | 'xen' | 'vsphere'

export interface Driver {
  /** Actions this instance supports beyond monitor; advertised to the hub. */
  readonly capabilities: readonly Exclude<Action, 'monitor'>[]
  /**
   * Set by drivers that manage vms: what runs the guest. The agent sends it with every observation
   * (read each time: a driver may learn it only from its first monitor). Absent for anything else.
   */
  readonly hypervisor?: Hypervisor
  /** Default timeout per action, in ms (overridable per resource). */
  readonly timeouts: Readonly<Record<'monitor' | 'start' | 'stop' | 'restart', number>> &
    Readonly<Partial<Record<OptionalAction, number>>>
  monitor(ctx: ActionContext): Promise<MonitorResult>
  start?(ctx: ActionContext): Promise<void>
  stop?(ctx: ActionContext): Promise<void>
  reset?(ctx: ActionContext): Promise<void>
  reboot?(ctx: ActionContext): Promise<void>
  suspend?(ctx: ActionContext): Promise<void>
  resume?(ctx: ActionContext): Promise<void>
  migrate?(ctx: ActionContext): Promise<void>
  /** Called when the monitored state may have changed (event-driven drivers); optional. */
  onChange?(listener: () => void): void
  /** Releases what the driver holds (watchers, children it must not orphan). */
  close?(): Promise<void>
}

/** One folder per driver exports one of these; the registry maps names to them. */
export interface DriverFactory<S extends z.ZodType = z.ZodType> {
  readonly name: string
  readonly description: string
  /** Strict schema of the driver's config (unknown keys are errors). */
  readonly configSchema: S
  create(config: z.output<S>, env: { resourceId: string; log: Logger }): Driver
}
