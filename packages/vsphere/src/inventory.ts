import { type MoRef, refOf, refsOf, textOf, type Vim25Client, type XmlValue } from './client.js'

/** What Vigil reads of a VM (one property-collector call). */
export interface VmView {
  ref: MoRef
  /** poweredOn, poweredOff, suspended: as last known to vCenter (stale while disconnected). */
  powerState: string
  /** connected; disconnected, orphaned, inaccessible, invalid: vCenter cannot vouch for it. */
  connectionState: string
  host: MoRef | null
  pool: MoRef | null
  /** guestToolsRunning, guestToolsNotRunning, guestToolsExecutingScripts. */
  toolsRunningStatus: string | null
  /** VMware Tools' guest heartbeat: green, yellow, red, gray (none: Tools not running). */
  heartbeat: string | null
  datastores: MoRef[]
  bootTime: string | null
  /** The .vmx on its datastore ("[LocalDS_0] web/web.vmx"): what registering it elsewhere needs. */
  vmPathName: string | null
}

const VM_PATHS = [
  'runtime.powerState',
  'runtime.connectionState',
  'runtime.host',
  'runtime.bootTime',
  'resourcePool',
  'guest.toolsRunningStatus',
  'guestHeartbeatStatus',
  'datastore',
  'config.files.vmPathName',
]

export async function readVm(client: Vim25Client, ref: MoRef, signal: AbortSignal): Promise<VmView> {
  const p = await client.props(ref, VM_PATHS, signal)
  return {
    ref,
    powerState: textOf(p['runtime.powerState']) ?? 'unknown',
    connectionState: textOf(p['runtime.connectionState']) ?? 'unknown',
    host: refOf(p['runtime.host']) ?? null,
    pool: refOf(p.resourcePool) ?? null,
    toolsRunningStatus: textOf(p['guest.toolsRunningStatus']) ?? null,
    heartbeat: textOf(p.guestHeartbeatStatus) ?? null,
    datastores: refsOf(p.datastore),
    bootTime: textOf(p['runtime.bootTime']) ?? null,
    vmPathName: textOf(p['config.files.vmPathName']) ?? null,
  }
}

/** What Vigil reads of an ESX host. */
export interface HostView {
  ref: MoRef
  name: string
  /** connected; notResponding (vCenter lost it: dead, or cut from management), disconnected (by a person). */
  connectionState: string
  /** poweredOn, poweredOff, standBy, unknown. */
  powerState: string
  inMaintenanceMode: boolean
  /** The cluster (or standalone compute resource) it belongs to. */
  parent: MoRef | null
}

export async function readHost(client: Vim25Client, ref: MoRef, signal: AbortSignal): Promise<HostView> {
  const p = await client.props(
    ref,
    ['name', 'runtime.connectionState', 'runtime.powerState', 'runtime.inMaintenanceMode', 'parent'],
    signal,
  )
  return hostView(ref, p)
}

export function hostView(ref: MoRef, p: Record<string, XmlValue>): HostView {
  return {
    ref,
    name: textOf(p.name) ?? ref.value,
    connectionState: textOf(p['runtime.connectionState']) ?? 'unknown',
    powerState: textOf(p['runtime.powerState']) ?? 'unknown',
    inMaintenanceMode: textOf(p['runtime.inMaintenanceMode']) === 'true',
    parent: refOf(p.parent) ?? null,
  }
}

/** A datastore and whether each host that mounts it can reach it. */
export interface DatastoreView {
  ref: MoRef
  name: string
  /** Reachable from at least one host. */
  accessible: boolean
  /** Per host (by moref value): false while its paths are down (APD, PDL). */
  mounts: Record<string, { accessible: boolean; reason: string | null }>
}

export async function readDatastore(
  client: Vim25Client,
  ref: MoRef,
  signal: AbortSignal,
): Promise<DatastoreView> {
  const p = await client.props(ref, ['name', 'summary.accessible', 'host'], signal)
  return datastoreView(ref, p)
}

export function datastoreView(ref: MoRef, p: Record<string, XmlValue>): DatastoreView {
  const mounts: DatastoreView['mounts'] = {}
  for (const m of (p.host?.DatastoreHostMount ?? []) as XmlValue[]) {
    const host = refOf(m.key)
    if (!host) continue
    mounts[host.value] = {
      // Unset means vSphere has not said otherwise: reachable.
      accessible: textOf(m.mountInfo?.accessible) !== 'false',
      reason: textOf(m.mountInfo?.inaccessibleReason) || null,
    }
  }
  return {
    ref,
    name: textOf(p.name) ?? ref.value,
    accessible: textOf(p['summary.accessible']) !== 'false',
    mounts,
  }
}
