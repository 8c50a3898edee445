import {
  type ActionContext,
  type Driver,
  DriverError,
  type DriverErrorKind,
  type MonitorResult,
} from '@vigil/driver-kit'
import { nameSchema } from '@vigil/protocol'
import {
  connect,
  type MoRef,
  readDatastore,
  readHost,
  readVm,
  refOf,
  refXml,
  textXml,
  type Vim25Client,
  type VmView,
  VsphereError,
  vsphereConnectionFields,
} from '@vigil/vsphere'
import { z } from 'zod'

const esxHostName = z.string().min(1).max(255)
const nodeName = nameSchema

export const vsphereVmConfigSchema = z.strictObject({
  ...vsphereConnectionFields,
  /** The VM's name in vCenter's inventory. */
  vm: z.string().min(1).max(80),
  /** The ESX host this node stands for: its name in vCenter. The VM runs "here" when it runs on it. */
  host: esxHostName,
  /**
   * The ESX host of each other node, for placing and migrating the VM there: node name -> host
   * name in vCenter. A node missing here is taken to be named as its ESX host.
   */
  nodeHosts: z.record(nodeName, esxHostName).default({}),
  /** stop asks the guest to shut down through VMware Tools, then powers it off after this long. */
  shutdownTimeoutMs: z.number().int().min(0).max(600_000).default(60_000),
  /** A vMotion copies the guest's memory while it runs: allow for its size and the link. */
  migrateTimeoutMs: z.number().int().min(1000).max(3_600_000).default(600_000),
  /**
   * Report VMware Tools' guest heartbeat as the `guestHeartbeats` counter (one per monitor that
   * finds it green), the way vSphere HA's VM monitoring uses it: the hub calls the guest hung
   * when the count stops while vCenter still says powered on.
   */
  guestHeartbeat: z.boolean().default(true),
})
export type VsphereVmConfig = z.output<typeof vsphereVmConfigSchema>

/** vSphere faults that mean "not on this host, maybe on another" (OCF's local scope). */
const LOCAL_FAULTS = new Set([
  'InsufficientResourcesFault',
  'NotEnoughLicenses',
  'HostNotConnected',
  'InvalidHostState',
  'InvalidHostConnectionState',
  'NoCompatibleHost',
  'DisallowedMigrationDeviceAttached',
  'MigrationFault',
])

/** A vSphere error as a driver error whose kind says the recovery scope. */
export function driverErrorOf(err: unknown, what: string): DriverError {
  if (err instanceof DriverError) return err
  if (!(err instanceof VsphereError))
    return new DriverError('transient', `${what}: ${String(err)}`, { cause: err })
  const kind: DriverErrorKind =
    err.kind === 'auth' || err.kind === 'config'
      ? 'config'
      : err.kind === 'fault' && err.fault && LOCAL_FAULTS.has(err.fault)
        ? 'local'
        : err.kind === 'not-found'
          ? 'local'
          : 'transient'
  return new DriverError(kind, `${what}: ${err.message}`, { cause: err })
}

/** The vSphere fault type behind a driver error (InvalidPowerState), if any. */
function faultOf(err: unknown): string | null {
  const cause = err instanceof DriverError ? err.cause : err
  return cause instanceof VsphereError ? cause.fault : null
}

/**
 * A vSphere VM as a resource, seen from one node: the node stands for one ESX host, and the VM
 * runs "here" when vCenter says it is powered on on that host. Registered on another host it is
 * stopped here, so the hub sees at most one node running it. After VCS's VMwareDisks/vSphere HA
 * and ExpressCluster's VM resource:
 * - monitor: power state on this host; a VM vCenter cannot vouch for (its host not responding,
 *   the VM disconnected) is failed, never running; a datastore of the VM this host cannot reach
 *   (all paths down) is failed: the guest's I/O stalls; powered off behind Vigil's back is failed;
 * - start: powers it on here; registered on another host, it is moved here first (a cold
 *   migration, or re-registered from its .vmx when its old host is lost, which the hub orders only
 *   after that host's fence is confirmed); never while it runs on another host that answers;
 * - stop: guest shutdown through VMware Tools, power-off after `shutdownTimeoutMs`;
 * - reset, suspend, resume; migrate: vMotion to the target node's host.
 */
export class VsphereVmDriver implements Driver {
  readonly capabilities = ['start', 'stop', 'restart', 'reset', 'suspend', 'resume', 'migrate'] as const
  readonly hypervisor = 'vsphere'
  readonly timeouts
  private readonly client: Vim25Client
  private vmRef: MoRef | null = null
  private readonly hostRefs = new Map<string, MoRef>()
  /** Vigil started it (or found it running) and has not stopped it: off now means it failed. */
  private expectRunning = false
  private beats = 0
  private toolsSeen = false

  constructor(private readonly config: VsphereVmConfig) {
    this.client = connect(config)
    const call = config.callTimeoutMs
    this.timeouts = {
      monitor: call * 4,
      start: call * 8,
      stop: config.shutdownTimeoutMs + call * 4,
      restart: config.shutdownTimeoutMs + call * 12,
      reset: call * 4,
      suspend: call * 4,
      resume: call * 4,
      migrate: config.migrateTimeoutMs + call * 4,
    }
  }

  private async vm(ctx: ActionContext): Promise<VmView | null> {
    try {
      if (this.vmRef) return await readVm(this.client, this.vmRef, ctx.signal)
    } catch (err) {
      if (!(err instanceof VsphereError) || err.kind !== 'not-found') throw driverErrorOf(err, this.config.vm)
      this.vmRef = null // registered again elsewhere: a new moref
    }
    try {
      this.vmRef = await this.client.find('VirtualMachine', this.config.vm, ctx.signal)
      return this.vmRef ? await readVm(this.client, this.vmRef, ctx.signal) : null
    } catch (err) {
      throw driverErrorOf(err, this.config.vm)
    }
  }

  private async hostRef(name: string, ctx: ActionContext): Promise<MoRef> {
    const known = this.hostRefs.get(name)
    if (known) return known
    const ref = await this.client.find('HostSystem', name, ctx.signal).catch((err: unknown) => {
      throw driverErrorOf(err, name)
    })
    if (!ref) throw new DriverError('config', `host: vCenter has no ESX host named "${name}"`)
    this.hostRefs.set(name, ref)
    return ref
  }

  async monitor(ctx: ActionContext): Promise<MonitorResult> {
    const vm = await this.vm(ctx)
    if (!vm) return { state: 'stopped', detail: `${this.config.vm} is not in vCenter's inventory` }
    const here = await this.hostRef(this.config.host, ctx)
    if (vm.host?.value !== here.value) {
      this.expectRunning = false
      return { state: 'stopped', detail: `registered on another host (${vm.host?.value ?? 'none'})` }
    }
    if (vm.connectionState !== 'connected') {
      const host = await readHost(this.client, here, ctx.signal).catch(() => null)
      return {
        state: 'failed',
        detail: `vCenter cannot vouch for it: vm ${vm.connectionState}, host ${host?.connectionState ?? 'unknown'} (last known ${vm.powerState})`,
      }
    }
    // Only an explicit suspend (an operator's, or Vigil's for one) puts a vSphere vm in this state.
    if (vm.powerState === 'suspended') return { state: 'suspended', detail: 'suspended' }
    if (vm.powerState !== 'poweredOn') {
      if (this.expectRunning) return { state: 'failed', detail: `${vm.powerState} behind Vigil's back` }
      return { state: 'stopped', detail: vm.powerState }
    }
    this.expectRunning = true
    const lost = await this.unreachableDatastores(vm, here, ctx)
    if (lost.length > 0)
      return {
        state: 'failed',
        detail: `this host cannot reach its datastore ${lost.join(', ')}: its I/O stalls`,
      }
    return { state: 'running', detail: this.toolsDetail(vm), ...this.heartbeatMetrics(vm) }
  }

  private toolsDetail(vm: VmView): string {
    return `poweredOn; tools ${vm.toolsRunningStatus ?? 'unknown'}, heartbeat ${vm.heartbeat ?? 'unknown'}`
  }

  /** One beat per monitor that finds Tools' heartbeat green; none until Tools were first seen. */
  private heartbeatMetrics(vm: VmView): { metrics?: Record<string, number> } {
    if (!this.config.guestHeartbeat) return {}
    if (vm.heartbeat === 'green') {
      this.toolsSeen = true
      this.beats += 1
    }
    return this.toolsSeen ? { metrics: { guestHeartbeats: this.beats } } : {}
  }

  /** Names of the VM's datastores that `host` has mounted but cannot reach. */
  private async unreachableDatastores(vm: VmView, host: MoRef, ctx: ActionContext): Promise<string[]> {
    const lost: string[] = []
    for (const ref of vm.datastores) {
      const ds = await readDatastore(this.client, ref, ctx.signal).catch((err: unknown) => {
        throw driverErrorOf(err, this.config.vm)
      })
      if (ds.mounts[host.value]?.accessible === false || !ds.accessible) lost.push(ds.name)
    }
    return lost
  }

  async start(ctx: ActionContext): Promise<void> {
    const here = await this.hostRef(this.config.host, ctx)
    let vm = await this.vm(ctx)
    if (!vm) throw new DriverError('config', `vm: vCenter has no VM named "${this.config.vm}"`)
    if (vm.host?.value !== here.value) {
      await this.moveHere(vm, here, ctx)
      vm = await this.settledHere(here, ctx)
    }
    if (vm.powerState === 'poweredOn' && vm.connectionState === 'connected') {
      this.expectRunning = true
      return
    }
    const lost = await this.unreachableDatastores(vm, here, ctx)
    if (lost.length > 0)
      throw new DriverError(
        'local',
        `${this.config.host} cannot reach datastore ${lost.join(', ')}: start elsewhere`,
      )
    // A suspended VM resumes on power-on: never a second copy.
    await this.task('PowerOnVM_Task', vm.ref, refXml('host', here), ctx)
    this.expectRunning = true
  }

  /** Waits for vCenter to report the VM moved here as connected (its new host took it up). */
  private async settledHere(here: MoRef, ctx: ActionContext): Promise<VmView> {
    const until = Date.now() + this.config.callTimeoutMs
    for (;;) {
      const vm = await this.vm(ctx)
      if (!vm) throw new DriverError('transient', `${this.config.vm} vanished while moving here`)
      if (vm.host?.value === here.value && vm.connectionState === 'connected') return vm
      if (Date.now() > until || ctx.signal.aborted)
        throw new DriverError(
          'transient',
          `${this.config.vm} moved here but vCenter says ${vm.connectionState}`,
        )
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  /**
   * Brings a VM registered on another host here, powered off or suspended. The other host answers:
   * a cold migration (RelocateVM). It is lost (not responding): the hub ordered this start after its
   * fence was confirmed, so the VM is taken from it: relocated if vCenter allows, else removed from
   * the inventory and registered here from its .vmx on the shared datastore (what vSphere HA's
   * agent does on the surviving host).
   */
  private async moveHere(vm: VmView, here: MoRef, ctx: ActionContext): Promise<void> {
    const other = vm.host ? await readHost(this.client, vm.host, ctx.signal).catch(() => null) : null
    const otherAnswers = other?.connectionState === 'connected'
    if (otherAnswers && vm.powerState === 'poweredOn')
      throw new DriverError(
        'local',
        `${this.config.vm} runs on ${other?.name}: stop it there first (never two copies)`,
      )
    const pool = await this.poolOf(here, ctx)
    const spec = `<spec>${refXml('pool', pool)}${refXml('host', here)}</spec>`
    try {
      await this.task('RelocateVM_Task', vm.ref, spec, ctx)
      return
    } catch (err) {
      if (otherAnswers || (err instanceof DriverError && err.kind === 'config')) throw err
      ctx.log.warn(
        { vm: this.config.vm, err: (err as Error).message },
        'relocation refused: registering it here',
      )
    }
    if (!vm.vmPathName)
      throw new DriverError('local', `${this.config.vm}: vCenter does not say where its .vmx is`)
    const folder = await this.client.props(vm.ref, ['parent'], ctx.signal).catch((err: unknown) => {
      throw driverErrorOf(err, this.config.vm)
    })
    const parent = refOf(folder.parent)
    if (!parent) throw new DriverError('local', `${this.config.vm}: no folder to register it in`)
    await this.client.call('UnregisterVM', vm.ref, '', ctx.signal).catch((err: unknown) => {
      throw driverErrorOf(err, `${this.config.vm}: unregister from its lost host`)
    })
    this.vmRef = null
    const result = await this.task(
      'RegisterVM_Task',
      parent,
      `${textXml('path', vm.vmPathName)}${textXml('name', this.config.vm)}${textXml('asTemplate', false)}${refXml('pool', pool)}${refXml('host', here)}`,
      ctx,
    )
    this.vmRef = refOf(result) ?? null
  }

  /** The resource pool VMs on `host` go to: the root pool of its cluster. */
  private async poolOf(host: MoRef, ctx: ActionContext): Promise<MoRef> {
    try {
      const view = await readHost(this.client, host, ctx.signal)
      const parent = view.parent ? await this.client.props(view.parent, ['resourcePool'], ctx.signal) : {}
      const pool = refOf(parent.resourcePool)
      if (!pool) throw new DriverError('config', `host: ${view.name} has no resource pool`)
      return pool
    } catch (err) {
      throw driverErrorOf(err, this.config.host)
    }
  }

  async stop(ctx: ActionContext): Promise<void> {
    const vm = await this.vm(ctx)
    const here = await this.hostRef(this.config.host, ctx)
    this.expectRunning = false
    if (!vm || vm.host?.value !== here.value) return // not here: stopped here
    if (vm.connectionState !== 'connected')
      throw new DriverError(
        'transient',
        `${this.config.vm}: vCenter cannot reach it (${vm.connectionState}): it may still run; only a fence of ${this.config.host} makes it safe`,
      )
    if (vm.powerState === 'poweredOff') return
    if (
      vm.powerState === 'poweredOn' &&
      vm.toolsRunningStatus === 'guestToolsRunning' &&
      this.config.shutdownTimeoutMs > 0
    ) {
      const asked = await this.client.call('ShutdownGuest', vm.ref, '', ctx.signal).then(
        () => true,
        () => false, // Tools gone meanwhile: power off below
      )
      const until = Date.now() + this.config.shutdownTimeoutMs
      while (asked && Date.now() < until && !ctx.signal.aborted) {
        if ((await this.vm(ctx))?.powerState === 'poweredOff') return
        await new Promise((r) => setTimeout(r, 250))
      }
    }
    await this.task('PowerOffVM_Task', vm.ref, '', ctx).catch((err: unknown) => {
      if (faultOf(err) === 'InvalidPowerState') return // off meanwhile
      throw err
    })
  }

  async reset(ctx: ActionContext): Promise<void> {
    const vm = await this.runningHere(ctx, 'reset')
    await this.task('ResetVM_Task', vm.ref, '', ctx)
  }

  async suspend(ctx: ActionContext): Promise<void> {
    const vm = await this.vm(ctx)
    if (vm?.powerState === 'suspended') return
    await this.task('SuspendVM_Task', (await this.runningHere(ctx, 'suspend')).ref, '', ctx)
  }

  async resume(ctx: ActionContext): Promise<void> {
    const vm = await this.vm(ctx)
    if (!vm) throw new DriverError('config', `vm: vCenter has no VM named "${this.config.vm}"`)
    if (vm.powerState === 'poweredOn') return
    if (vm.powerState !== 'suspended')
      throw new DriverError(
        'local',
        `${this.config.vm} is ${vm.powerState}, not suspended: nothing to resume`,
      )
    await this.task('PowerOnVM_Task', vm.ref, '', ctx)
    this.expectRunning = true
  }

  /**
   * vMotion to the target node's ESX host: the guest keeps running. Already there (a retried
   * command): done.
   */
  async migrate(ctx: ActionContext): Promise<void> {
    const target = ctx.target ?? ''
    if (!nodeName.safeParse(target).success)
      throw new DriverError('config', `migrate: "${target}" is not a node name`)
    const targetHost = await this.hostRef(this.config.nodeHosts[target] ?? target, ctx)
    const vm = await this.vm(ctx)
    if (!vm) throw new DriverError('config', `vm: vCenter has no VM named "${this.config.vm}"`)
    if (vm.host?.value === targetHost.value && vm.powerState === 'poweredOn') return
    const here = await this.hostRef(this.config.host, ctx)
    if (vm.host?.value !== here.value || vm.powerState !== 'poweredOn')
      throw new DriverError('local', `${this.config.vm} does not run here: nothing to migrate`)
    const pool = await this.poolOf(targetHost, ctx)
    await this.task(
      'MigrateVM_Task',
      vm.ref,
      `${refXml('pool', pool)}${refXml('host', targetHost)}<priority>defaultPriority</priority>`,
      ctx,
    ).catch(async (err: unknown) => {
      // vCenters (and vcsim) that answer RelocateVM but not MigrateVM: the same vMotion.
      if (!['MethodNotFound', 'NotImplemented', 'NotSupported'].includes(faultOf(err) ?? '')) throw err
      await this.task(
        'RelocateVM_Task',
        vm.ref,
        `<spec>${refXml('pool', pool)}${refXml('host', targetHost)}</spec>`,
        ctx,
      )
    })
    this.expectRunning = false
  }

  private async runningHere(ctx: ActionContext, action: string): Promise<VmView> {
    const vm = await this.vm(ctx)
    const here = await this.hostRef(this.config.host, ctx)
    if (!vm || vm.host?.value !== here.value || vm.powerState !== 'poweredOn')
      throw new DriverError('local', `${this.config.vm} does not run here: nothing to ${action}`)
    return vm
  }

  private async task(method: string, ref: MoRef, args: string, ctx: ActionContext) {
    try {
      return await this.client.task(method, ref, args, ctx.signal)
    } catch (err) {
      throw driverErrorOf(err, `${this.config.vm}: ${method}`)
    }
  }

  async close(): Promise<void> {
    await this.client.logout()
  }
}
