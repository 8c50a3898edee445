import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ActionContext, Driver, DriverFactory, MonitorResult } from '@vigil/driver-kit'
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
 * statfs(2) of `path` in a child (`stat -f`), not in the agent: a hung filesystem (a dead SAN path,
 * a hard NFS mount) blocks the call until it answers, and in the agent it would hold one of libuv's
 * four threads, which every file operation of the agent shares, for that long. Found by the lab's
 * shared disk hang (test/e2e/lab-faults.test.ts).
 */
async function statfsInChild(
  path: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ blocks: number; bavail: number; bsize: number; files: number; ffree: number }> {
  const r = await childProbe(['stat', '-f', '-c', '%b %a %S %c %d', path], 'statfs', timeoutMs, signal)
  if (!r.ok) throw new Error(r.detail)
  const numbers = r.stdout.trim().split(/\s+/).map(Number)
  if (numbers.length !== 5 || numbers.some((n) => !Number.isFinite(n)))
    throw new Error(`statfs: unexpected output "${r.stdout.trim()}"`)
  const [blocks, bavail, bsize, files, ffree] = numbers as [number, number, number, number, number]
  return { blocks, bavail, bsize, files, ffree }
}

/**
 * Runs a program in a child process and resolves at its exit or at `timeoutMs`, whichever is first:
 * a child stuck in the kernel may outlive its SIGKILL (uninterruptible I/O), and the check must not
 * wait for it.
 */
function childProbe(
  argv: string[],
  what: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ ok: boolean; detail: string; ms: number; stdout: string }> {
  const started = performance.now()
  return new Promise((resolve) => {
    const [program, ...args] = argv as [string, ...string[]]
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    let stdout = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d
    })
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
    })
    let settled = false
    const finish = (ok: boolean, detail: string) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      resolve({ ok, detail, ms: performance.now() - started, stdout })
    }
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      finish(false, `${what} did not finish within ${timeoutMs} ms`)
    }, timeoutMs)
    const onAbort = () => {
      child.kill('SIGKILL')
      finish(false, 'probe cancelled')
    }
    signal.addEventListener('abort', onAbort, { once: true })
    child.once('error', (err) => finish(false, `cannot run ${program}: ${err.message}`))
    child.once('close', (code) => {
      if (code === 0) finish(true, `${what} done`)
      else if (code !== null)
        finish(false, `${what} failed: ${stderr.trim().split('\n').pop() ?? `exit ${code}`}`)
    })
  })
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
      Object.assign(metrics, { freeBytes: s.bavail * s.bsize, freePercent, inodesFreePercent })
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
