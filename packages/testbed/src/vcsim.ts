import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Daemon, waitFor } from './daemon.js'

/** Built by scripts/vcsim.sh (bootstrap runs it). */
export const VCSIM_PATH = process.env.VIGIL_VCSIM ?? '/var/cache/vigil/vcsim/vigil-vcsim'

export interface Vcsim {
  /** The SOAP endpoint, http://127.0.0.1:<port>/sdk (https with `tls`). */
  sdkUrl: string
  /** The one user Login accepts, its password, and a file holding it (what a Vigil config names). */
  username: string
  password: string
  passwordFile: string
  /** Where the fault endpoints live: http://127.0.0.1:<port>. */
  base: string
  /** ESX host names of the cluster (DC0_C0_H0, ...), in order. */
  hosts: string[]
  /** VM names (DC0_C0_RP0_VM0, ...), in order; they start powered off. */
  vms: string[]
  /** The cluster's shared datastore. */
  datastore: string
  /** A vSphere client's options for this simulator (as @vigil/vsphere's Vim25Client takes them). */
  clientOptions(): {
    url: string
    username: string
    password: string
    insecure: boolean
    timeoutMs: number
    apiVersion: string
  }
  daemon: Daemon
  /** An ESX host loses power (vCenter sees it stop answering) or comes back from a reboot. */
  hostPower(host: string, power: 'on' | 'off'): Promise<void>
  hostPowerStatus(host: string): Promise<'on' | 'off'>
  /** vCenter loses the host's management network while the host runs on. */
  hostConnection(host: string, state: 'connected' | 'notResponding'): Promise<void>
  /** A guest hangs (its VMware Tools heartbeat goes red until its next power-on), or recovers. */
  guest(vm: string, state: 'hung' | 'ok'): Promise<void>
  /** The datastore as one host (or every host) sees it. */
  datastoreAccess(accessible: boolean, host?: string): Promise<void>
  stop(): Promise<void>
}

/**
 * VMware's vSphere API simulator (govmomi's vcsim) on loopback: one datacenter, one cluster of
 * ESX hosts sharing a datastore, VMs powered off, VMware Tools playing in each running guest, and
 * fault endpoints for what the vSphere API cannot do to itself (packages/testbed/vcsim/main.go).
 */
export async function startVcsim(opts: { hosts?: number; vms?: number; tls?: boolean } = {}): Promise<Vcsim> {
  if (!existsSync(VCSIM_PATH))
    throw new Error(`testbed: ${VCSIM_PATH} is missing: run scripts/vcsim.sh (bootstrap does)`)
  const hosts = opts.hosts ?? 2
  const vms = opts.vms ?? 2
  const dir = mkdtempSync(join(tmpdir(), 'vigil-vcsim-'))
  const logFile = join(dir, 'vcsim.log')
  const daemon = Daemon.start(
    'vcsim',
    [VCSIM_PATH, `-hosts=${hosts}`, `-vms=${vms}`, ...(opts.tls ? ['-tls'] : [])],
    // vcsim keeps its datastores' files under TMPDIR: one directory per instance, removed at stop.
    { logFile, env: { TMPDIR: dir }, cwd: dir },
  )
  const passwordFile = join(dir, 'password')
  writeFileSync(passwordFile, 'vigil\n', { mode: 0o600 })
  let url = ''
  await waitFor(
    'vcsim',
    () => {
      url = daemon.log().split('\n')[0] ?? ''
      if (!daemon.alive) throw new Error(`testbed: vcsim exited: ${daemon.log()}`)
      return /^https?:\/\//.test(url)
    },
    30_000,
  )
  const u = new URL(url)
  u.username = ''
  u.password = ''
  const sdkUrl = u.toString()
  // The fault endpoints share vcsim's port (and its scheme).
  const base = `${u.protocol}//${u.host}`
  const fault = async (path: string): Promise<string> => {
    if (opts.tls) throw new Error('testbed: the fault endpoints are for a vcsim without tls')
    const res = await fetch(`${base}${path}`, { method: 'POST' })
    const text = (await res.text()).trim()
    if (!res.ok) throw new Error(`testbed: vcsim ${path}: ${text}`)
    return text
  }
  const q = encodeURIComponent
  return {
    sdkUrl,
    username: 'vigil',
    password: 'vigil',
    passwordFile,
    base,
    hosts: Array.from({ length: hosts }, (_, i) => `DC0_C0_H${i}`),
    vms: Array.from({ length: vms }, (_, i) => `DC0_C0_RP0_VM${i}`),
    datastore: 'LocalDS_0',
    clientOptions: () => ({
      url: sdkUrl,
      username: 'vigil',
      password: 'vigil',
      insecure: Boolean(opts.tls),
      timeoutMs: 5000,
      apiVersion: '7.0',
    }),
    daemon,
    hostPower: async (host, power) => {
      await fault(`/vigil/host?name=${q(host)}&power=${power}`)
    },
    hostPowerStatus: async (host) =>
      (await fault(`/vigil/host?name=${q(host)}&power=status`)) === 'off' ? 'off' : 'on',
    hostConnection: async (host, state) => {
      await fault(`/vigil/host?name=${q(host)}&connection=${state}`)
    },
    guest: async (vm, state) => {
      await fault(`/vigil/vm?name=${q(vm)}&guest=${state}`)
    },
    datastoreAccess: async (accessible, host) => {
      await fault(`/vigil/datastore?name=LocalDS_0&accessible=${accessible}${host ? `&host=${q(host)}` : ''}`)
    },
    stop: async () => {
      await daemon.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * An agent config's `vsphere` resource entry (YAML lines under `resources:`) for a VM of this
 * simulator: `host` is the ESX host the agent's node stands for, `nodeHosts` the other nodes'.
 */
export function vsphereResourceLines(
  vcsim: Vcsim,
  opts: {
    id: string
    vm: string
    host: string
    nodeHosts: Record<string, string>
    shutdownTimeoutMs: number
  },
): string[] {
  return [
    `  - id: ${opts.id}`,
    '    driver: vsphere',
    '    monitorIntervalMs: 500',
    '    config:',
    `      url: ${vcsim.sdkUrl}`,
    `      username: ${vcsim.username}`,
    `      passwordFile: ${vcsim.passwordFile}`,
    `      vm: ${opts.vm}`,
    `      host: ${opts.host}`,
    `      nodeHosts: { ${Object.entries(opts.nodeHosts)
      .map(([n, h]) => `${n}: ${h}`)
      .join(', ')} }`,
    `      shutdownTimeoutMs: ${opts.shutdownTimeoutMs}`,
  ]
}

/**
 * A BMC's `hostCtl` program (see startBmc) for a simulated ESX host: its power is the vcsim host's,
 * so an IPMI power-off through ipmi_sim powers the ESX host off in vCenter's eyes. `pidFile` names
 * a process that lives on that host (its Vigil agent, as in a service VM pinned to it): off kills it.
 */
export function vcsimHostPowerControl(file: string, vcsim: Vcsim, host: string, pidFile?: string): string {
  const url = `${vcsim.base}/vigil/host?name=${encodeURIComponent(host)}&power=`
  writeFileSync(
    file,
    `#!/bin/sh
case "$1" in
  status) curl -sf -X POST '${url}status' ;;
  on) curl -sf -X POST '${url}on' >/dev/null ;;
  off)
    curl -sf -X POST '${url}off' >/dev/null
    ${pidFile ? `[ -s '${pidFile}' ] && kill -9 "$(cat '${pidFile}')" 2>/dev/null` : ''}
    true ;;
esac
`,
  )
  chmodSync(file, 0o755)
  return file
}
