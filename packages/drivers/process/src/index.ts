import { type ChildProcess, spawn } from 'node:child_process'
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import {
  type ActionContext,
  type Driver,
  DriverError,
  type DriverFactory,
  type MonitorResult,
} from '@vigil/driver-kit'
import { z } from 'zod'

export const processConfigSchema = z
  .strictObject({
    /** argv of a command the agent starts and supervises (its exit is noticed at once). */
    command: z.array(z.string().min(1)).min(1).optional(),
    cwd: z.string().optional(),
    env: z.record(z.string(), z.string()).optional(),
    /**
     * Where the pid is kept. For `command` the driver writes it (so a restarted agent finds the
     * process again); for daemons it is the daemon's own pidfile.
     */
    pidfile: z.string().min(1).optional(),
    /** For daemons that fork: argv to start and (optionally) stop them; the pidfile tells the pid. */
    start: z.array(z.string().min(1)).min(1).optional(),
    stop: z.array(z.string().min(1)).min(1).optional(),
    /** A start counts as done once the process has stayed up this long. */
    startupMs: z.number().int().min(0).max(600_000).default(200),
    /** SIGTERM, then SIGKILL after this long. */
    stopTimeoutMs: z.number().int().min(0).max(600_000).default(5000),
    /** Watch processes Vigil did not start, by name (/proc/<pid>/comm) and/or command line (a regex). */
    match: z
      .strictObject({
        name: z.string().min(1).max(15).optional(),
        cmdline: z
          .string()
          .min(1)
          .refine((r) => {
            try {
              new RegExp(r)
              return true
            } catch {
              return false
            }
          }, 'must be a valid regular expression')
          .optional(),
        /** Fewer matching processes than this is failed. */
        minCount: z.number().int().min(1).default(1),
      })
      .refine((m) => m.name !== undefined || m.cmdline !== undefined, {
        message: 'set name, cmdline or both',
      })
      .optional(),
  })
  .superRefine((c, ctx) => {
    const modes = [c.command, c.start, c.match].filter((m) => m !== undefined).length
    if (modes !== 1)
      ctx.addIssue({
        code: 'custom',
        path: ['command'],
        message:
          'set exactly one of command (supervised), start (a daemon with a pidfile) or match (processes found by name or command line)',
      })
    if (c.match === undefined && c.pidfile === undefined)
      ctx.addIssue({ code: 'custom', path: ['pidfile'], message: 'command and start need a pidfile' })
  })

export type ProcessConfig = z.output<typeof processConfigSchema>

/**
 * What tells a process from a later one given the same pid (pids wrap: 32768 by default): the boot
 * it belongs to and its start time in clock ticks since that boot (/proc/<pid>/stat, field 22), which
 * no wall-clock step can change. Null when there is no such process, or it is a zombie (dead).
 */
function identityOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (fields[0] === 'Z') return null
    return `${bootId()} ${fields[19]}`
  } catch {
    return null
  }
}

let cachedBootId: string | undefined
function bootId(): string {
  cachedBootId ??= (() => {
    try {
      return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    } catch {
      return 'unknown-boot'
    }
  })()
  return cachedBootId
}

function readIdentity(file: string): { pid: number; identity: string } | null {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as { pid?: unknown; identity?: unknown }
    return typeof v.pid === 'number' && typeof v.identity === 'string'
      ? { pid: v.pid, identity: v.identity }
      : null
  } catch {
    return null
  }
}

function readPid(file: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10)
    return Number.isInteger(pid) && pid > 0 ? pid : null
  } catch {
    return null
  }
}

function processMetrics(pid: number): Record<string, number> {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const rssPages = Number(f[21])
    return { cpuSeconds: (Number(f[11]) + Number(f[12])) / 100, rssBytes: rssPages * 4096, pid }
  } catch {
    return { pid }
  }
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason)
    const t = setTimeout(resolve, ms)
    const onAbort = () => {
      clearTimeout(t)
      reject(signal.reason)
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })

/** The pidfile's process: still the one first seen under that pid, gone, or its pid given to another. */
interface Tracked {
  pid: number
  state: 'alive' | 'dead' | 'reused'
  identity: string | null
}

/**
 * monitor: running while the pid in the pidfile is alive; stopped when there is no pidfile (never
 * started, or stopped by Vigil, which removes it); failed when the pidfile names a dead process
 * (it crashed, or was killed behind Vigil's back) or a process that is not the one first seen under
 * that pid (it died and the kernel gave its pid to another: never reported as the resource, never
 * signalled by stop).
 */
class ProcessDriver implements Driver {
  private get pidfile(): string {
    return this.config.pidfile as string
  }

  /** Beside the pidfile, so that a restarted agent checks the pid against the same process. */
  private get identityFile(): string {
    return `${this.pidfile}.identity`
  }

  /** What identityFile holds (undefined: not read yet). */
  private known: { pid: number; identity: string } | null | undefined

  private tracked(): Tracked | null {
    const pid = readPid(this.pidfile)
    if (pid === null) return null
    const identity = identityOf(pid)
    if (identity === null) return { pid, state: 'dead', identity }
    if (this.known === undefined) this.known = readIdentity(this.identityFile)
    if (this.known?.pid === pid)
      return { pid, state: this.known.identity === identity ? 'alive' : 'reused', identity }
    // First sighting of this pid (a daemon wrote a new one, or nothing was recorded): adopt it.
    this.remember(pid, identity)
    return { pid, state: 'alive', identity }
  }

  private remember(pid: number, identity: string): void {
    this.known = { pid, identity }
    try {
      writeFileSync(this.identityFile, `${JSON.stringify(this.known)}\n`)
    } catch {
      // Best effort: without the file, this agent still checks; a restarted one adopts the pid.
    }
  }

  private forget(): void {
    rmSync(this.pidfile, { force: true })
    rmSync(this.identityFile, { force: true })
    this.known = null
  }

  readonly capabilities
  readonly timeouts = { monitor: 2000, start: 30_000, stop: 30_000, restart: 60_000 }
  private child: ChildProcess | null = null
  private readonly listeners: (() => void)[] = []

  constructor(private readonly config: ProcessConfig) {
    this.capabilities =
      config.command || config.stop ? (['start', 'stop', 'restart'] as const) : (['start'] as const)
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener)
  }

  async monitor(): Promise<MonitorResult> {
    const t = this.tracked()
    if (t === null) return { state: 'stopped', detail: 'no pidfile' }
    if (t.state === 'alive')
      return { state: 'running', detail: `pid ${t.pid}`, metrics: processMetrics(t.pid) }
    const reused = t.state === 'reused' ? ' (the pid now belongs to another process)' : ''
    return { state: 'failed', detail: `pid ${t.pid} from ${this.pidfile} is not running${reused}` }
  }

  async start(ctx: ActionContext): Promise<void> {
    if ((await this.monitor()).state === 'running') return
    const { command, start } = this.config
    const argv = (command ?? start) as string[]
    const child = spawn(argv[0] as string, argv.slice(1), {
      cwd: this.config.cwd,
      env: { ...process.env, ...this.config.env },
      detached: true, // its own process group, so stop reaches its children too
      stdio: 'ignore',
    })
    const spawned = await new Promise<Error | null>((resolve) => {
      child.once('spawn', () => resolve(null))
      child.once('error', (err) => resolve(err))
    })
    if (spawned) {
      const code = (spawned as NodeJS.ErrnoException).code
      throw new DriverError(
        code === 'ENOENT' || code === 'EACCES' ? 'local' : 'transient',
        `cannot run ${argv[0]}: ${spawned.message}`,
        { cause: spawned },
      )
    }
    if (command) {
      const pid = child.pid as number
      writeFileSync(this.pidfile, `${pid}\n`)
      const identity = identityOf(pid)
      if (identity !== null) this.remember(pid, identity)
      this.child = child
      child.once('exit', () => {
        if (this.child === child) this.child = null
        for (const l of this.listeners) l()
      })
      child.unref()
    }
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    const outcome = await Promise.race([
      exited,
      sleep(this.config.startupMs, ctx.signal).then(() => 'up' as const),
    ])
    if (command && outcome !== 'up') {
      throw new DriverError('local', `${argv[0]} exited during startup (code ${outcome})`)
    }
    if (!command) {
      // A daemon's start command forks and exits; wait for its pidfile to name a live process.
      for (;;) {
        if ((await this.monitor()).state === 'running') return
        await sleep(50, ctx.signal)
      }
    }
  }

  async stop(ctx: ActionContext): Promise<void> {
    const t = this.tracked()
    if (t === null || t.state !== 'alive') {
      this.forget()
      return
    }
    const { pid } = t
    const alive = () => identityOf(pid) === t.identity
    if (this.config.stop) {
      const child = spawn(this.config.stop[0] as string, this.config.stop.slice(1), { stdio: 'ignore' })
      await new Promise<void>((resolve) => child.once('exit', () => resolve()).once('error', () => resolve()))
    } else {
      signalGroup(pid, 'SIGTERM')
    }
    const deadline = Date.now() + this.config.stopTimeoutMs
    while (alive() && Date.now() < deadline) await sleep(20, ctx.signal)
    if (alive()) {
      signalGroup(pid, 'SIGKILL')
      while (alive()) await sleep(20, ctx.signal)
    }
    this.forget()
  }

  async close(): Promise<void> {
    // Supervised processes outlive the agent on purpose: a restarted agent adopts them by pidfile.
    this.child?.removeAllListeners('exit')
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal) // the whole process group
  } catch {
    try {
      process.kill(pid, signal)
    } catch {
      // already gone
    }
  }
}

interface Found {
  pid: number
  cmdline: string
}

/** Live processes whose comm equals `name` and whose command line matches `cmdline` (this agent excluded). */
function findProcesses(name: string | undefined, cmdline: RegExp | undefined): Found[] {
  const found: Found[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    if (pid === process.pid) continue
    try {
      if (name !== undefined && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== name) continue
      const line = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()
      if (line === '') continue // kernel threads and zombies have none
      if (cmdline && !cmdline.test(line)) continue
      found.push({ pid, cmdline: line })
    } catch {
      // it exited while we looked
    }
  }
  return found
}

/**
 * Processes Vigil does not start (sshd, a database started by its own init script), found by name
 * and command line: running while at least `minCount` match, failed below that. Monitor only.
 */
class MatchDriver implements Driver {
  readonly capabilities = [] as const
  readonly timeouts = { monitor: 2000, start: 1000, stop: 1000, restart: 1000 }
  private readonly cmdline: RegExp | undefined

  constructor(private readonly match: NonNullable<ProcessConfig['match']>) {
    this.cmdline = match.cmdline ? new RegExp(match.cmdline) : undefined
  }

  async monitor(): Promise<MonitorResult> {
    const found = findProcesses(this.match.name, this.cmdline)
    const metrics: Record<string, number> = { count: found.length }
    let cpu = 0
    let rss = 0
    for (const f of found) {
      const m = processMetrics(f.pid)
      cpu += m.cpuSeconds ?? 0
      rss += m.rssBytes ?? 0
    }
    if (found.length > 0) Object.assign(metrics, { cpuSeconds: cpu, rssBytes: rss })
    const pids = found
      .slice(0, 10)
      .map((f) => f.pid)
      .join(', ')
    const detail =
      found.length === 0
        ? 'no matching process'
        : `${found.length} matching (pid ${pids}${found.length > 10 ? ', ...' : ''})`
    return { state: found.length >= this.match.minCount ? 'running' : 'failed', detail, metrics }
  }
}

export const processDriver: DriverFactory<typeof processConfigSchema> = {
  name: 'process',
  description:
    'A supervised command, a daemon watched through its pidfile, or processes found by name or command line',
  configSchema: processConfigSchema,
  create: (config) => (config.match ? new MatchDriver(config.match) : new ProcessDriver(config)),
}
