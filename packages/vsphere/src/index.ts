import { readConfigFile, readSecretFile } from '@vigil/kit'
import { z } from 'zod'
import { Vim25Client } from './client.js'

export {
  escapeXml,
  type MoRef,
  refOf,
  refsOf,
  refXml,
  textOf,
  textXml,
  Vim25Client,
  type VsphereConnection,
  VsphereError,
  type VsphereErrorKind,
  type XmlValue,
  xsiType,
} from './client.js'
export {
  type DatastoreView,
  datastoreView,
  type HostView,
  hostView,
  readDatastore,
  readHost,
  readVm,
  type VmView,
} from './inventory.js'

/** How a vSphere driver reaches vCenter (or an ESX host): the keys every vSphere config shares. */
export const vsphereConnectionFields = {
  /** The SDK endpoint: https://vcenter.example.com/sdk. */
  url: z
    .string()
    .regex(
      /^https?:\/\/[^\s/]+(\/[^\s]*)?$/,
      'must be an http(s) URL such as https://vcenter.example.com/sdk',
    ),
  username: z.string().min(1),
  /** File holding the password (never put the password itself in the config). */
  passwordFile: z.string().min(1),
  /** PEM file of the CA (or self-signed certificate) to trust for https. */
  caFile: z.string().min(1).optional(),
  /** Accept any certificate: a lab's self-signed vCenter only. */
  insecure: z.boolean().default(false),
  /** Per SOAP call. */
  callTimeoutMs: z.number().int().min(500).max(120_000).default(10_000),
  /** The vim25 version asked for (vCenter answers older clients in their version). */
  apiVersion: z
    .string()
    .regex(/^\d+\.\d+(\.\d+)*$/, 'must be a vSphere API version such as 7.0')
    .default('7.0'),
}

export interface VsphereConnectionConfig {
  url: string
  username: string
  passwordFile: string
  caFile?: string | undefined
  insecure: boolean
  callTimeoutMs: number
  apiVersion: string
}

/** A client for a validated config; reads the password and CA files now (errors name the key). */
export function connect(config: VsphereConnectionConfig): Vim25Client {
  return new Vim25Client({
    url: config.url,
    username: config.username,
    password: readSecretFile(config.passwordFile, 'passwordFile'),
    ca: config.caFile ? readConfigFile(config.caFile, 'caFile').toString('utf8') : undefined,
    insecure: config.insecure,
    timeoutMs: config.callTimeoutMs,
    apiVersion: config.apiVersion,
  })
}
