import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ActionContext, Driver, DriverFactory, MonitorResult } from '@vigil/driver-kit'
import { childProbe, statfsInChild } from '@vigil/kit'
import { z } from 'zod'

export const diskConfigSchema = z.strictObject({
  /** A mount point or directory whose filesystem is watched for space and inodes. */
  path: z.string().min(1),
  minFreePercent: z.number().min(0).max(100).default(5),
  minFreeInodesPercent: z.number().min(0).max(100).default(5),
  /** Read probe (like ExpressCluster's diskw): read `bytes` from a file or block device. */
  probe: z
    .strictObject({
      device: z.string().min(1),
      bytes: z.number().int().min(512).max(1_048_576).default(4096),
      /** O_DIRECT: bypass the page cache so the device itself answers (not every filesystem allows it). */
      direct: z.boolean().default(true),
      timeoutMs: z.number().int().min(10).max(600_000).default(2000),
    })
    .optional(),
  /**
   * Write probe: writes `bytes` to a file of its own on the watched storage (O_DIRECT and synced,
   * so the device must take them). Never a device: the probe overwrites what it writes to.
   */
  writeProbe: z
    .strictObject({
      file: z
        .string()
        .min(1)
        .refine(
          (f) => !f.startsWith('/dev/'),
          'must be a file the agent owns, never a device (it is overwritten)',
        ),
      bytes: z.number().int().min(512).max(1_048_576).default(4096),
      direct: z.boolean().default(true),
      timeoutMs: z.number().int().min(10).max(600_000).default(2000),
    })
    .optional(),
  /** The block device under the storage: its counters from /sys/block (I/O in flight, errors). */
  blockDevice: z
    .strictObject({
      name: z.string().regex(/^[A-Za-z0-9._-]+$/, 'a name under /sys/block, e.g. sdb, vda, dm-0'),
      /** New I/O errors (SCSI `device/ioerr_cnt`) tolerated between two checks. */
      maxNewIoErrors: z.number().int().min(0).default(0),
      /** Where sysfs's block directory is (a container may mount the host's elsewhere). */
      sysfs: z.string().min(1).default('/sys/block'),
    })
    .optional(),
  /** A statfs that does not return within this counts as failed (a hung NFS mount). */
  statfsTimeoutMs: z.number().int().min(10).max(600_000).default(2000),
  /** Consecutive failed checks before the disk reports failed; one bad sample never does. */
  failuresBeforeCritical: z.number().int().min(1).max(100).default(2),
})
export type DiskConfig = z.output<typeof diskConfigSchema>

/** Reads `bytes` from the device (or file), bypassing the page cache. */
function readProbe(p: NonNullable<DiskConfig['probe']>, signal: AbortSignal) {
  const args = [`if=${p.device}`, 'of=/dev/null', `bs=${p.bytes}`, 'count=1', 'status=none']
  return ddProbe([...args, ...(p.direct ? ['iflag=direct'] : [])], `read of ${p.device}`, p.timeoutMs, signal)
}

/** Writes `bytes` of zeroes to the probe file, O_DIRECT and synced, without truncating it. */
function writeProbe(p: NonNullable<DiskConfig['writeProbe']>, signal: AbortSignal) {
  const args = [
    'if=/dev/zero',
    `of=${p.file}`,
    `bs=${p.bytes}`,
    'count=1',
    'status=none',
    'conv=notrunc,fsync',
  ]
  return ddProbe([...args, ...(p.direct ? ['oflag=direct'] : [])], `write of ${p.file}`, p.timeoutMs, signal)
}

/** Runs dd in a child process: a hung device blocks the child, which is killed at the timeout, never the agent. */
function ddProbe(
  args: string[],
  what: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ ok: boolean; detail: string; ms: number }> {
  return childProbe(['dd', ...args], what, timeoutMs, signal)
}

/**
 * monitor: running while the filesystem has room (space and inodes above their floors) and the read
 * probe answers; failed after `failuresBeforeCritical` consecutive bad checks. Monitor only.
 */
class DiskDriver implements Driver {
  readonly capabilities = [] as const
  readonly timeouts
  private bad = 0

  constructor(private readonly config: DiskConfig) {
    this.timeouts = {
      monitor:
        config.statfsTimeoutMs + (config.probe?.timeoutMs ?? 0) + (config.writeProbe?.timeoutMs ?? 0) + 1000,
      start: 1000,
      stop: 1000,
      restart: 1000,
    }
  }

  async monitor(ctx: ActionContext): Promise<MonitorResult> {
    const problems: string[] = []
    const metrics: Record<string, number> = {}
    try {
      const s = await statfsInChild(this.config.path, this.config.statfsTimeoutMs, ctx.signal)
      const freePercent = s.blocks > 0 ? (100 * s.bavail) / s.blocks : 100
      const inodesFreePercent = s.files > 0 ? (100 * s.ffree) / s.files : 100
      Object.assign(metrics, { freeBytes: s.bavail * s.blockSize, freePercent, inodesFreePercent })
      if (freePercent < this.config.minFreePercent)
        problems.push(
          `${this.config.path}: ${freePercent.toFixed(1)} % free, below ${this.config.minFreePercent} %`,
        )
      if (inodesFreePercent < this.config.minFreeInodesPercent)
        problems.push(
          `${this.config.path}: ${inodesFreePercent.toFixed(1)} % inodes free, below ${this.config.minFreeInodesPercent} %`,
        )
    } catch (err) {
      problems.push(`${this.config.path}: ${(err as Error).message}`)
    }
    if (this.config.probe) {
      const p = await readProbe(this.config.probe, ctx.signal)
      metrics.probeSeconds = p.ms / 1000
      if (!p.ok) problems.push(p.detail)
    }
    if (this.config.writeProbe) {
      const p = await writeProbe(this.config.writeProbe, ctx.signal)
      metrics.writeProbeSeconds = p.ms / 1000
      if (!p.ok) problems.push(p.detail)
    }
    if (this.config.blockDevice) this.checkBlockDevice(this.config.blockDevice, metrics, problems)
    this.bad = problems.length > 0 ? this.bad + 1 : 0
    const failed = this.bad >= this.config.failuresBeforeCritical
    const detail = problems.length > 0 ? `${problems.join('; ')} (${this.bad} bad in a row)` : 'ok'
    return { state: failed ? 'failed' : 'running', detail, metrics }
  }

  private lastIoErrors: number | null = null

  /**
   * The device's counters: I/O in flight and busy time (for graphs), and SCSI I/O errors, of which
   * more than `maxNewIoErrors` new ones since the last check make the check bad. Devices without an
   * error counter (virtio, NVMe) report the counters only.
   */
  private checkBlockDevice(
    b: NonNullable<DiskConfig['blockDevice']>,
    metrics: Record<string, number>,
    problems: string[],
  ): void {
    const dir = join(b.sysfs, b.name)
    let stat: number[]
    try {
      stat = readFileSync(join(dir, 'stat'), 'utf8').trim().split(/\s+/).map(Number)
    } catch {
      problems.push(`no block device ${b.name} under ${b.sysfs}`)
      return
    }
    for (const [name, i] of Object.entries(STAT_FIELDS))
      if (Number.isFinite(stat[i])) metrics[name] = stat[i] as number
    let errors: number | null = null
    try {
      errors = Number.parseInt(readFileSync(join(dir, 'device', 'ioerr_cnt'), 'utf8').trim(), 16)
    } catch {
      // no SCSI error counter on this kind of device
    }
    if (errors === null || Number.isNaN(errors)) return
    metrics.ioErrors = errors
    const fresh = this.lastIoErrors === null ? 0 : errors - this.lastIoErrors
    this.lastIoErrors = errors
    if (fresh > b.maxNewIoErrors) problems.push(`${b.name}: ${fresh} new I/O errors since the last check`)
  }
}

/** `/sys/block/<dev>/stat` fields (Documentation/block/stat.rst), by position. */
const STAT_FIELDS = {
  readIos: 0,
  readTicksMs: 3,
  writeIos: 4,
  writeTicksMs: 7,
  inFlight: 8,
  ioTicksMs: 9,
} as const

export const diskDriver: DriverFactory<typeof diskConfigSchema> = {
  name: 'disk',
  description:
    'Filesystem space and inodes, O_DIRECT read and write probes in a child process, block device counters',
  configSchema: diskConfigSchema,
  create: (config) => new DiskDriver(config),
}
