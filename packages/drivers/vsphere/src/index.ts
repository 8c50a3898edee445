import type { DriverFactory } from '@vigil/driver-kit'
import { VsphereHostWatch, vsphereHostConfigSchema } from './host.js'
import { VsphereVmDriver, vsphereVmConfigSchema } from './vm.js'

export { type VsphereHostConfig, vsphereHostConfigSchema } from './host.js'
export { driverErrorOf, type VsphereVmConfig, vsphereVmConfigSchema } from './vm.js'

export const vsphereVmDriver: DriverFactory<typeof vsphereVmConfigSchema> = {
  name: 'vsphere',
  description:
    'A vSphere VM through vCenter: power on here (moving it from another host), guest shutdown then power-off, reset, suspend, vMotion; VMware Tools heartbeat; datastore reachability',
  configSchema: vsphereVmConfigSchema,
  create: (config) => new VsphereVmDriver(config),
}

export const vsphereHostDriver: DriverFactory<typeof vsphereHostConfigSchema> = {
  name: 'vsphere-host',
  description: "An ESX host as vCenter sees it: connection, power, maintenance, its datastores' reachability",
  configSchema: vsphereHostConfigSchema,
  create: (config) => new VsphereHostWatch(config),
}
