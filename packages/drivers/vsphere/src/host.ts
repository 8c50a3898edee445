import { type ActionContext, type Driver, DriverError, type MonitorResult } from '@vigil/driver-kit'
import {
  connect,
  type MoRef,
  readDatastore,
  readHost,
  refsOf,
  type Vim25Client,
  VsphereError,
  vsphereConnectionFields,
} from '@vigil/vsphere'
import { z } from 'zod'
import { driverErrorOf } from './vm.js'

export const vsphereHostConfigSchema = z.strictObject({
  ...vsphereConnectionFields,
  /** The ESX host to watch: its name in vCenter. */
  host: z.string().min(1).max(255),
  /** Datastores whose reachability from the host counts (default: every datastore it mounts). */
  datastores: z.array(z.string().min(1)).optional(),
  /** Consecutive bad monitors before `failed` (one sample never acts). */
  failuresBeforeCritical: z.number().int().min(1).max(100).default(2),
})
export type VsphereHostConfig = z.output<typeof vsphereHostConfigSchema>

/**
 * An ESX host as vCenter sees it, a channel for the hub to correlate (never a verdict alone: a
 * host "not responding" to vCenter may only have lost its management network). Running: connected,
 * powered on, and reaching its datastores. Failed after `failuresBeforeCritical` bad samples: not
 * responding or disconnected, powered off or in standby, or a datastore it mounts is unreachable
 * (all paths down). In maintenance mode it is running, with the mode in its detail.
 */
export class VsphereHostWatch implements Driver {
  readonly capabilities = [] as const
  readonly timeouts
  private readonly client: Vim25Client
  private ref: MoRef | null = null
  private bad = 0

  constructor(private readonly config: VsphereHostConfig) {
    this.client = connect(config)
    const t = config.callTimeoutMs * 4
    this.timeouts = { monitor: t, start: t, stop: t, restart: t }
  }

  async monitor(ctx: ActionContext): Promise<MonitorResult> {
    const problem = await this.problem(ctx)
    if (!problem.bad) {
      this.bad = 0
      return { state: 'running', detail: problem.detail, metrics: { datastoresUnreachable: 0 } }
    }
    this.bad += 1
    const metrics = { datastoresUnreachable: problem.unreachable }
    if (this.bad < this.config.failuresBeforeCritical)
      return {
        state: 'running',
        detail: `${problem.detail} (${this.bad} of ${this.config.failuresBeforeCritical})`,
        metrics,
      }
    return { state: 'failed', detail: problem.detail, metrics }
  }

  private async problem(ctx: ActionContext): Promise<{ bad: boolean; detail: string; unreachable: number }> {
    try {
      this.ref ??= await this.client.find('HostSystem', this.config.host, ctx.signal)
      if (!this.ref)
        throw new DriverError('config', `host: vCenter has no ESX host named "${this.config.host}"`)
      const host = await readHost(this.client, this.ref, ctx.signal)
      const mode = host.inMaintenanceMode ? ', in maintenance mode' : ''
      if (host.connectionState !== 'connected')
        return { bad: true, detail: `vCenter: host ${host.connectionState}`, unreachable: 0 }
      if (host.powerState !== 'poweredOn')
        return { bad: true, detail: `vCenter: host ${host.powerState}`, unreachable: 0 }
      const listed = refsOf((await this.client.props(this.ref, ['datastore'], ctx.signal)).datastore)
      const mounted = [...new Map(listed.map((r) => [r.value, r])).values()]
      const lost: string[] = []
      for (const ref of mounted) {
        const ds = await readDatastore(this.client, ref, ctx.signal)
        if (this.config.datastores && !this.config.datastores.includes(ds.name)) continue
        if (ds.mounts[this.ref.value]?.accessible === false) lost.push(ds.name)
      }
      if (lost.length > 0)
        return {
          bad: true,
          detail: `cannot reach datastore ${lost.join(', ')}${mode}`,
          unreachable: lost.length,
        }
      return { bad: false, detail: `connected${mode}`, unreachable: 0 }
    } catch (err) {
      if (err instanceof VsphereError && err.kind === 'not-found') this.ref = null
      throw driverErrorOf(err, this.config.host)
    }
  }

  async close(): Promise<void> {
    await this.client.logout()
  }
}
