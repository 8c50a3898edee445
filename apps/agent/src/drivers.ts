import { checkDriver } from '@vigil/driver-check'
import { diskDriver } from '@vigil/driver-disk'
import { libvirtDriver } from '@vigil/driver-libvirt'
import { nicDriver } from '@vigil/driver-nic'
import { ocfDriver } from '@vigil/driver-ocf'
import { pingDriver } from '@vigil/driver-ping'
import { processDriver } from '@vigil/driver-process'
import { vsphereHostDriver, vsphereVmDriver } from '@vigil/driver-vsphere'
import { xlDriver } from '@vigil/driver-xl'
import { idSchema } from '@vigil/protocol'
import { z } from 'zod'

/** The explicit registry: driver name -> factory. One line per driver folder. */
export const DRIVERS = {
  check: checkDriver,
  disk: diskDriver,
  libvirt: libvirtDriver,
  nic: nicDriver,
  ocf: ocfDriver,
  ping: pingDriver,
  process: processDriver,
  vsphere: vsphereVmDriver,
  'vsphere-host': vsphereHostDriver,
  xl: xlDriver,
} as const

export type DriverName = keyof typeof DRIVERS

/** Drivers that only watch (no actions): what may vouch for another resource. */
export const MONITOR_ONLY: ReadonlySet<string> = new Set(['check', 'disk', 'nic', 'ping', 'vsphere-host'])

const resourceId = idSchema

/** One resource entry per driver, each with that driver's own strict config schema. */
export const resourceEntrySchema = z.discriminatedUnion(
  'driver',
  Object.entries(DRIVERS).map(([name, factory]) =>
    z.strictObject({
      id: resourceId,
      driver: z.literal(name),
      config: factory.configSchema,
      /** Monitor at least this often (event-driven drivers also report changes at once). */
      monitorIntervalMs: z.number().int().min(100).max(3_600_000).default(1000),
      /**
       * A watch (a driver without actions: check, disk, nic, ping) that vouches for another
       * resource of this agent: while that resource runs here and this watch is failed, the
       * resource is reported failed, so the hub's recovery ladder acts on it (restart in place,
       * then what its ladder says). The watch is probed only while the resource runs here, and
       * starts over (a fresh grace of `failuresBeforeCritical` probes) each time it is started.
       */
      vouchesFor: resourceId.optional(),
    }),
  ) as unknown as [z.ZodObject, ...z.ZodObject[]],
)
export type ResourceEntry = {
  id: string
  driver: DriverName
  config: unknown
  monitorIntervalMs: number
  vouchesFor?: string | undefined
}
