import { readdir, readFile } from 'node:fs/promises'
import os from 'node:os'
import { statfsInChild } from '@vigil/kit'
import type { Facts, Filesystem, NetInterface } from '@vigil/protocol'

/** Pseudo and virtual filesystems that say nothing about a host's storage (as node_exporter). */
const IGNORED_FSTYPES = new Set([
  'autofs',
  'binfmt_misc',
  'bpf',
  'cgroup',
  'cgroup2',
  'configfs',
  'debugfs',
  'devpts',
  'devtmpfs',
  'fusectl',
  'hugetlbfs',
  'mqueue',
  'nsfs',
  'proc',
  'procfs',
  'pstore',
  'rpc_pipefs',
  'securityfs',
  'selinuxfs',
  'sysfs',
  'tracefs',
  'efivarfs',
  'ramfs',
  'fuse.gvfsd-fuse',
  'fuse.portal',
])

/**
 * A statfs that does not return within this is skipped (a hung NFS mount must not stall facts). It
 * runs in a child: in the agent it would hold a file thread for as long as the mount hangs.
 */
const STATFS_TIMEOUT_MS = 2000
const OPERSTATES = new Set(['up', 'down', 'dormant', 'lowerlayerdown', 'notpresent', 'testing', 'unknown'])

export async function collectFacts(node: string, incarnation: number, nowWall: number): Promise<Facts> {
  const [filesystems, interfaces, processCount] = await Promise.all([
    collectFilesystems(),
    collectInterfaces(),
    countProcesses(),
  ])
  const load = os.loadavg()
  return {
    v: 1,
    node,
    incarnation,
    collectedAt: nowWall,
    hostname: os.hostname(),
    os: { platform: os.platform(), release: os.release(), arch: os.arch() },
    cpus: Math.max(1, os.availableParallelism()),
    memory: { totalBytes: os.totalmem(), availableBytes: os.freemem() },
    load: [load[0] ?? 0, load[1] ?? 0, load[2] ?? 0],
    uptimeSeconds: os.uptime(),
    processCount,
    filesystems,
    interfaces,
  }
}

/** Parses /proc/self/mounts text into (device, mount, fstype), unescaping octal sequences. */
export function parseMounts(text: string): { device: string; mount: string; fstype: string }[] {
  const unescapeOctal = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)))
  const byMount = new Map<string, { device: string; mount: string; fstype: string }>()
  for (const line of text.split('\n')) {
    const [device, mount, fstype] = line.split(' ')
    if (!device || !mount || !fstype || IGNORED_FSTYPES.has(fstype)) continue
    byMount.set(unescapeOctal(mount), { device: unescapeOctal(device), mount: unescapeOctal(mount), fstype }) // last mount wins
  }
  return [...byMount.values()].sort((a, b) => a.mount.localeCompare(b.mount))
}

async function collectFilesystems(): Promise<Filesystem[]> {
  let text: string
  try {
    text = await readFile('/proc/self/mounts', 'utf8')
  } catch {
    return []
  }
  const results = await Promise.all(
    parseMounts(text).map(async (m): Promise<Filesystem | null> => {
      const s = await statfsInChild(m.mount, STATFS_TIMEOUT_MS).catch(() => null)
      if (!s || s.blocks === 0) return null
      return {
        ...m,
        sizeBytes: s.blocks * s.blockSize,
        freeBytes: s.bfree * s.blockSize,
        availBytes: s.bavail * s.blockSize,
        inodes: s.files,
        inodesFree: s.ffree,
      }
    }),
  )
  return results.filter((f): f is Filesystem => f !== null).slice(0, 512)
}

async function readSys(path: string): Promise<string | null> {
  try {
    return (await readFile(path, 'utf8')).trim()
  } catch {
    return null // e.g. carrier and speed raise EINVAL while a link is down
  }
}

async function collectInterfaces(): Promise<NetInterface[]> {
  let names: string[]
  try {
    names = (await readdir('/sys/class/net')).sort()
  } catch {
    names = Object.keys(os.networkInterfaces()).sort()
  }
  const addrs = os.networkInterfaces()
  return Promise.all(
    names.slice(0, 512).map(async (name): Promise<NetInterface> => {
      const base = `/sys/class/net/${name}`
      const [operstate, carrier, mtu, address, speed] = await Promise.all([
        readSys(`${base}/operstate`),
        readSys(`${base}/carrier`),
        readSys(`${base}/mtu`),
        readSys(`${base}/address`),
        readSys(`${base}/speed`),
      ])
      const speedNum = speed === null ? null : Number.parseInt(speed, 10)
      return {
        name,
        mac: address || null,
        mtu: mtu === null ? null : Number.parseInt(mtu, 10),
        operstate: (operstate && OPERSTATES.has(operstate)
          ? operstate
          : 'unknown') as NetInterface['operstate'],
        carrier: carrier === null ? null : carrier === '1',
        speedMbps: speedNum !== null && Number.isFinite(speedNum) && speedNum >= 0 ? speedNum : null,
        addresses: (addrs[name] ?? []).map((a) => a.cidr ?? a.address).slice(0, 64),
      }
    }),
  )
}

async function countProcesses(): Promise<number> {
  try {
    return (await readdir('/proc')).filter((e) => /^\d+$/.test(e)).length
  } catch {
    return 0
  }
}
