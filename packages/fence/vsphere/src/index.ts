import {
  type FenceContext,
  type FenceDevice,
  type FenceDriverFactory,
  FenceError,
  type FenceErrorKind,
  type Outlet,
  type PowerState,
} from '@vigil/fence-kit'
import {
  connect,
  type MoRef,
  readVm,
  textOf,
  type Vim25Client,
  VsphereError,
  vsphereConnectionFields,
} from '@vigil/vsphere'
import { z } from 'zod'

export const vsphereFenceConfigSchema = z.strictObject({ ...vsphereConnectionFields })
export type VsphereFenceConfig = z.output<typeof vsphereFenceConfigSchema>

function fenceErrorOf(err: unknown, what: string): FenceError {
  if (err instanceof FenceError) return err
  if (!(err instanceof VsphereError))
    return new FenceError('unreachable', `${what}: ${String(err)}`, { cause: err })
  const kind: FenceErrorKind =
    err.kind === 'auth'
      ? 'auth'
      : err.kind === 'config' || err.kind === 'not-found'
        ? 'config'
        : 'unreachable'
  return new FenceError(kind, `${what}: ${err.message}`, { cause: err })
}

/**
 * Fencing a node that is itself a VM (guest clusters on ESX, as in LifeKeeper's and ExpressCluster's
 * guides), like fence_vmware_soap: power-off through vCenter (or the ESX host's own SDK endpoint),
 * read back from vCenter. The plug is the VM's name in the inventory. A VM vCenter cannot vouch for
 * (its ESX host not responding) has no power state to read: that is `unreachable`, never `off`,
 * so the next fence level (the ESX host's BMC) must act. A suspended VM is powered off too: it could
 * be resumed.
 */
class VsphereFenceDevice implements FenceDevice {
  readonly needsPlug = true
  readonly canPowerOn = true
  readonly timeouts
  private readonly client: Vim25Client
  private readonly refs = new Map<string, MoRef>()

  constructor(config: VsphereFenceConfig) {
    this.client = connect(config)
    const t = config.callTimeoutMs * 3
    this.timeouts = { status: t, off: t * 2, on: t * 2, reboot: t * 4, list: t, monitor: t }
  }

  private async vmRef(plug: string | null, ctx: FenceContext): Promise<MoRef> {
    if (plug === null) throw new FenceError('config', 'vSphere fencing needs the VM name as its plug')
    const known = this.refs.get(plug)
    if (known) return known
    const ref = await this.client.find('VirtualMachine', plug, ctx.signal).catch((err: unknown) => {
      throw fenceErrorOf(err, plug)
    })
    if (!ref) throw new FenceError('config', `vCenter has no VM named "${plug}"`)
    this.refs.set(plug, ref)
    return ref
  }

  /** The VM's power, only from a vCenter that can vouch for it. */
  private async power(plug: string | null, ctx: FenceContext): Promise<{ ref: MoRef; state: string }> {
    const ref = await this.vmRef(plug, ctx)
    try {
      const vm = await readVm(this.client, ref, ctx.signal)
      if (vm.connectionState !== 'connected')
        throw new FenceError(
          'unreachable',
          `${plug}: vCenter cannot vouch for its power (vm ${vm.connectionState}, last known ${vm.powerState})`,
        )
      return { ref, state: vm.powerState }
    } catch (err) {
      if (err instanceof VsphereError && err.kind === 'not-found') this.refs.delete(plug as string)
      throw fenceErrorOf(err, plug as string)
    }
  }

  async status(plug: string | null, ctx: FenceContext): Promise<PowerState> {
    return (await this.power(plug, ctx)).state === 'poweredOff' ? 'off' : 'on'
  }

  async off(plug: string | null, ctx: FenceContext): Promise<void> {
    const { ref, state } = await this.power(plug, ctx)
    if (state === 'poweredOff') return
    await this.client.task('PowerOffVM_Task', ref, '', ctx.signal).catch((err: unknown) => {
      if (err instanceof VsphereError && err.fault === 'InvalidPowerState') return // off meanwhile
      throw fenceErrorOf(err, `${plug}: power off`)
    })
  }

  async on(plug: string | null, ctx: FenceContext): Promise<void> {
    const { ref, state } = await this.power(plug, ctx)
    if (state === 'poweredOn') return
    await this.client.task('PowerOnVM_Task', ref, '', ctx.signal).catch((err: unknown) => {
      if (err instanceof VsphereError && err.fault === 'InvalidPowerState') return
      throw fenceErrorOf(err, `${plug}: power on`)
    })
  }

  async reboot(plug: string | null, ctx: FenceContext): Promise<void> {
    await this.off(plug, ctx)
    await this.on(plug, ctx)
  }

  async list(ctx: FenceContext): Promise<Outlet[]> {
    const vms = await this.client.all('VirtualMachine', ['name'], ctx.signal).catch((err: unknown) => {
      throw fenceErrorOf(err, 'list')
    })
    return vms
      .map((v) => textOf(v.props.name))
      .filter((n): n is string => n !== undefined)
      .sort()
      .map((name) => ({ plug: name, name }))
  }

  async monitor(ctx: FenceContext): Promise<void> {
    await this.client.session(ctx.signal).catch((err: unknown) => {
      throw fenceErrorOf(err, 'monitor')
    })
  }

  async close(): Promise<void> {
    await this.client.logout()
  }
}

export const vsphereFenceDriver: FenceDriverFactory<typeof vsphereFenceConfigSchema> = {
  name: 'vsphere',
  description:
    'VM power-off through vCenter or an ESX host (vim25 SOAP), read back from vCenter; the plug is the VM name',
  configSchema: vsphereFenceConfigSchema,
  create: (config) => new VsphereFenceDevice(config),
}
