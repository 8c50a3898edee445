import { spawn } from 'node:child_process'
import { statfs } from 'node:fs/promises'
import type { ActionContext, Driver, DriverFactory, MonitorResult } from '@vigil/driver-kit'
import { withTimeout } from '@vigil/kit'
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
  /** A statfs that does not return within this counts as failed (a hung NFS mount). */
  statfsTimeoutMs: z.number().int().min(10).max(600_000).default(2000),
  /** Consecutive failed checks before the disk reports failed; one bad sample never does. */
  failuresBeforeCritical: z.number().int().min(1).max(100).default(2),
})
export type DiskConfig = z.output<typeof diskConfigSchema>

/** Runs dd in a child process: a hung device blocks the child, which is killed at the timeout, never the agent. */
function readProbe(
  p: NonNullable<DiskConfig['probe']>,
  signal: AbortSignal,
): Promise<{ ok: boolean; detail: string; ms: number }> {
  const started = performance.now()
  return new Promise((resolve) => {
    const args = [
      `if=${p.device}`,
      'of=/dev/null',
      `bs=${p.bytes}`,
      'count=1',
      'status=none',
      ...(p.direct ? ['iflag=direct'] : []),
    ]
    const child = spawn('dd', args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
    })
    const finish = (ok: boolean, detail: string) => {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      resolve({ ok, detail, ms: performance.now() - started })
    }
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      finish(false, `read of ${p.device} did not finish within ${p.timeoutMs} ms`)
    }, p.timeoutMs)
    const onAbort = () => {
      child.kill('SIGKILL')
      finish(false, 'probe cancelled')
    }
    signal.addEventListener('abort', onAbort, { once: true })
    child.once('error', (err) => finish(false, `cannot run dd: ${err.message}`))
    child.once('exit', (code) => {
      if (code === 0) finish(true, `read ${p.bytes} bytes of ${p.device}`)
      else if (code !== null)
        finish(false, `read of ${p.device} failed: ${stderr.trim().split('\n').pop() ?? `exit ${code}`}`)
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
      monitor: config.statfsTimeoutMs + (config.probe?.timeoutMs ?? 0) + 1000,
      start: 1000,
      stop: 1000,
      restart: 1000,
    }
  }

  async monitor(ctx: ActionContext): Promise<MonitorResult> {
    const problems: string[] = []
    const metrics: Record<string, number> = {}
    try {
      const s = await withTimeout(statfs(this.config.path), this.config.statfsTimeoutMs)
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
      problems.push(`${this.config.path}: statfs ${(err as Error).message}`)
    }
    if (this.config.probe) {
      const p = await readProbe(this.config.probe, ctx.signal)
      metrics.probeSeconds = p.ms / 1000
      if (!p.ok) problems.push(p.detail)
    }
    this.bad = problems.length > 0 ? this.bad + 1 : 0
    const failed = this.bad >= this.config.failuresBeforeCritical
    const detail = problems.length > 0 ? `${problems.join('; ')} (${this.bad} bad in a row)` : 'ok'
    return { state: failed ? 'failed' : 'running', detail, metrics }
  }
}

export const diskDriver: DriverFactory<typeof diskConfigSchema> = {
  name: 'disk',
  description: 'Filesystem space and inodes, and an O_DIRECT read probe in a child process',
  configSchema: diskConfigSchema,
  create: (config) => new DiskDriver(config),
}
