import { readFile } from 'node:fs/promises'
import {
  type ActionContext,
  type Driver,
  DriverError,
  type DriverFactory,
  type MonitorResult,
} from '@vigil/driver-kit'
import { runCommand } from '@vigil/kit'
import { isValidName } from '@vigil/protocol'
import { z } from 'zod'
import {
  configFileDomainName,
  type Observation,
  observe,
  parseXlList,
  parseXlListLong,
  rowMetrics,
  XlCommandError,
  xlArgs,
  xlCommandError,
} from './xl.js'

export * from './xl.js'

const noNewline = /^[^\n\r\0]+$/

export const xlConfigSchema = z.strictObject({
  /** The Xen domain (guest) name, as in its config file's `name`. */
  domain: z
    .string()
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$/,
      'must be a Xen domain name (letters, digits, "_", ".", "+", "-")',
    )
    .refine((n) => !/^\d+$/.test(n), 'must not be all digits: xl would read it as a domain id')
    .refine((n) => n !== 'Domain-0', 'must not be Domain-0, the host itself'),
  /**
   * The domain's xl.cfg(5) file: with xl a stopped domain does not exist, so start creates it from
   * this file (`xl create`). Every node that may run the domain needs it (shared or copied).
   */
  configFile: z
    .string()
    .startsWith('/', 'must be an absolute path (xl create needs one)')
    .regex(noNewline, 'must be a path on one line'),
  /** The xl program (root is needed: xl talks to the hypervisor). */
  xl: z.string().regex(noNewline, 'must be a program path on one line').default('xl'),
  /** Per xl call that only asks or flips a state (list, pause, destroy, trigger). */
  callTimeoutMs: z.number().int().min(500).max(120_000).default(15_000),
  /** `xl create`: building a domain (balloon dom0 down, start a device model) takes longer. */
  createTimeoutMs: z.number().int().min(1000).max(600_000).default(60_000),
  /** stop asks the guest to shut down (`xl shutdown -w`), then destroys it after this long; 0: at once. */
  shutdownTimeoutMs: z.number().int().min(0).max(600_000).default(60_000),
  /**
   * Ask an HVM guest without PV drivers by ACPI (`-F` to shutdown and reboot: the power button and
   * the reset event); without it xl refuses to shut such a guest down and stop destroys it at once.
   */
  acpiFallback: z.boolean().default(true),
  /**
   * A guest that reboots itself is destroyed and created again by xl under a new domain id: for a
   * moment it is not listed, then listed paused while xl builds it. A monitor that finds the domain
   * so waits up to this long for it to come back before calling it failed (0: never waits).
   */
  restartGraceMs: z.number().int().min(0).max(60_000).default(5000),
  /**
   * Where `migrate` sends the domain: the host `xl migrate` reaches over ssh, `{node}` standing for
   * the target node's name in the cluster (the hub names it), e.g. `{node}.migration.example.org`.
   */
  migrateHost: z
    .string()
    .regex(
      /^[A-Za-z0-9_.@:[\]{}-]+$/,
      'must be a host name for ssh (user@ allowed), {node} standing for the target node',
    )
    .default('{node}'),
  /** `xl migrate -s`: the command run by sh instead of `ssh`, e.g. `ssh -i /etc/vigil/migrate_key`. */
  migrateSshCommand: z.string().regex(noNewline, 'must be a command on one line').optional(),
  /** A live migration copies the guest's memory while it runs: allow for its size and the link. */
  migrateTimeoutMs: z.number().int().min(1000).max(3_600_000).default(120_000),
})
export type XlConfig = z.output<typeof xlConfigSchema>

/** Rounds of destroy in a stop: xl may create the domain again while a reboot of its own is under way. */
const DESTROY_ROUNDS = 3

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
    function done() {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
  })

/**
 * A Xen domain managed by the xl toolstack, as a resource (after Pacemaker's ocf:heartbeat:Xen
 * agent): start = `xl create <configFile>`, stop = `xl shutdown -w` then `xl destroy`, monitor =
 * `xl list`, reset, reboot, pause and unpause, and live migration with `xl migrate`.
 *
 * xl keeps no stopped domains: a domain is listed while it exists, and a crash with the default
 * `on_crash="destroy"` leaves nothing behind. So the driver remembers, in memory, whether it saw the
 * domain alive (or started it) and has not stopped or migrated it since: a domain gone behind its
 * back is failed, one it stopped is stopped. After an agent restart the first monitor that sees the
 * domain alive sets this again; until then a missing domain is stopped.
 */
class XlDriver implements Driver {
  readonly capabilities = [
    'start',
    'stop',
    'restart',
    'reset',
    'reboot',
    'suspend',
    'resume',
    'migrate',
  ] as const
  readonly hypervisor = 'xen'
  readonly timeouts
  /** Seen alive (or started) by this driver and neither stopped nor migrated by it since. */
  private expectRunning = false
  /** The domain id last seen alive: a paused domain under another id is one xl is rebuilding. */
  private lastDomid: number | undefined
  /** Where this driver last migrated the domain: a retried migrate to there is done. */
  private migratedTo: string | null = null

  constructor(private readonly config: XlConfig) {
    const call = config.callTimeoutMs
    // A look, the shutdown, a look, a destroy and a look back: the usual worst case. More rounds of
    // destroy (xl restarting the domain meanwhile) are quick, or cut off here as a transient error.
    const stop = config.shutdownTimeoutMs + call * 4 + 1000
    const start = call * 4 + config.createTimeoutMs
    this.timeouts = {
      monitor: config.restartGraceMs + call * 2 + 1000,
      start,
      stop,
      restart: stop + start,
      reset: call * 3 + config.createTimeoutMs,
      reboot: call * 2 + 1000,
      suspend: call * 3 + 1000,
      resume: call * 3 + 1000,
      migrate: config.migrateTimeoutMs + call * 2,
    }
  }

  /** Runs xl; a non-zero exit is an XlCommandError whose kind says the recovery scope. */
  private async xl(
    args: string[],
    signal: AbortSignal,
    timeoutMs = this.config.callTimeoutMs,
  ): Promise<{ stdout: string; stderr: string }> {
    const r = await runCommand([this.config.xl, ...args], { timeoutMs, signal })
    if (r.notStarted) throw new DriverError('local', `cannot run ${this.config.xl} here: ${r.stderr.trim()}`)
    if (r.killed) throw new DriverError('transient', `xl ${args.join(' ')}: no answer within ${timeoutMs} ms`)
    if (r.code !== 0) throw xlCommandError(args, r)
    return r
  }

  /** One `xl list`, judged; a domain seen alive is remembered as expected to run. */
  private async look(ctx: ActionContext): Promise<Observation> {
    const seen = await this.peek(ctx)
    this.remember(seen)
    return seen
  }

  private async peek(ctx: ActionContext): Promise<Observation> {
    const rows = parseXlList((await this.xl(xlArgs.list(), ctx.signal)).stdout)
    return observe(rows, this.config.domain, this.expectRunning)
  }

  private remember(seen: Observation): void {
    if (seen.row && (seen.state === 'running' || seen.state === 'paused')) {
      this.expectRunning = true
      this.lastDomid = seen.row.domid
    }
  }

  /**
   * The domain's state for the monitor, allowing for a reboot of the guest's own: a domain this
   * driver expects running that is gone, or listed paused under a new domain id, is looked at again
   * until it runs or `restartGraceMs` has passed.
   */
  private async ask(ctx: ActionContext): Promise<Observation> {
    const until = Date.now() + this.config.restartGraceMs
    const expected = this.expectRunning
    const knownDomid = this.lastDomid
    for (;;) {
      const seen = await this.peek(ctx)
      const rebuilding =
        expected &&
        (seen.gone ||
          (seen.condition === 'paused' && knownDomid !== undefined && seen.row?.domid !== knownDomid))
      if (!rebuilding || Date.now() >= until || ctx.signal.aborted) {
        this.remember(seen)
        return seen
      }
      await sleep(200, ctx.signal)
    }
  }

  async monitor(ctx: ActionContext): Promise<MonitorResult> {
    const seen = await this.ask(ctx)
    const { state, detail, row } = seen
    if (row && (state === 'running' || state === 'paused')) return { state, detail, metrics: rowMetrics(row) }
    return { state, detail }
  }

  async start(ctx: ActionContext): Promise<void> {
    const now = await this.look(ctx)
    if (now.state === 'running') return
    // A paused domain is unpaused, never created a second time.
    if (now.condition === 'paused') return this.unpause(ctx)
    // A crashed, shut down or dying domain, or a failed migration's leftover, holds the name (and
    // its memory): destroy them first.
    await this.destroyAll(now, ctx)
    await this.create(ctx)
  }

  /**
   * `xl create`, after checking that the config file exists here and creates this domain (a file
   * naming another domain would start a guest nothing monitors).
   */
  private async create(ctx: ActionContext): Promise<void> {
    const { configFile, domain } = this.config
    let text: string | undefined
    try {
      text = await readFile(configFile, 'utf8')
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      // Unreadable to the agent (xl through sudo, say): xl reads it, and says if it cannot.
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR')
        throw new DriverError('local', `configFile ${configFile}: not on this host (${code})`)
    }
    const named = text === undefined ? undefined : configFileDomainName(text)
    if (named !== undefined && named !== domain)
      throw new DriverError(
        'config',
        `configFile ${configFile} creates the domain "${named}", not "${domain}"`,
      )
    this.migratedTo = null
    try {
      await this.xl(xlArgs.create(configFile), ctx.signal, this.config.createTimeoutMs)
    } catch (err) {
      // Created meanwhile by someone else (xl restarting it, an operator): running is what was asked.
      if (!(err instanceof XlCommandError && err.failure === 'name-taken')) throw err
      if ((await this.look(ctx)).state !== 'running') throw err
    }
    this.expectRunning = true
    this.lastDomid = undefined
  }

  async stop(ctx: ActionContext): Promise<void> {
    const { domain, shutdownTimeoutMs, acpiFallback } = this.config
    const now = await this.look(ctx)
    if (now.condition === 'running' && shutdownTimeoutMs > 0) {
      // Graceful and bounded: -w returns once the guest has shut down; a guest that ignores the
      // request is cut off by the timeout, and destroyed below. Its answer changes nothing.
      await runCommand([this.config.xl, ...xlArgs.shutdown(domain, { wait: true, acpiFallback })], {
        timeoutMs: shutdownTimeoutMs,
        signal: ctx.signal,
      })
    }
    // Paused, crashed, past its shutdown time, or a failed migration's leftover: only destroy makes
    // it safe. xl restarting a rebooting guest may create it again meanwhile: destroy that too.
    let seen = await this.look(ctx)
    for (let round = 0; this.destroyable(seen).length > 0; round++) {
      if (round === DESTROY_ROUNDS)
        throw new DriverError(
          'transient',
          `${domain} is still listed after ${round} destroys: ${seen.detail}`,
        )
      await this.destroyAll(seen, ctx)
      seen = await this.look(ctx)
    }
    this.expectRunning = false
    this.lastDomid = undefined
  }

  /** The domain's row and its leftover, unless dying (a dying domain runs no more and goes by itself). */
  private destroyable(seen: Observation): string[] {
    const names: string[] = []
    if (seen.row && seen.condition !== 'dying') names.push(seen.row.name)
    if (seen.leftover && !/d$/.test(seen.leftover.state)) names.push(seen.leftover.name)
    return names
  }

  private async destroyAll(seen: Observation, ctx: ActionContext): Promise<void> {
    for (const name of this.destroyable(seen)) {
      try {
        await this.xl(xlArgs.destroy(name), ctx.signal)
      } catch (err) {
        if (!(err instanceof XlCommandError && err.failure === 'no-such-domain')) throw err
      }
    }
  }

  /**
   * The hard reset: `xl trigger <dom> reset` for an HVM guest, its virtual reset line. A PV or PVH
   * guest has none (xl(1): trigger is "only available for HVM domains", and xl exits 0 even when
   * libxl refuses), so it is power-cycled: destroyed and created again from its config file. A
   * guest whose type `xl list -l` does not tell is power-cycled too.
   */
  async reset(ctx: ActionContext): Promise<void> {
    const { domain } = this.config
    const now = await this.look(ctx)
    if (!now.row || now.gone)
      throw new DriverError('local', `${domain} is ${now.state}, not running: nothing to reset`)
    const type = await this.guestType(ctx)
    if (type === 'hvm') {
      const { stderr } = await this.xl(xlArgs.triggerReset(domain), ctx.signal)
      // xl ignores libxl's answer to a trigger and exits 0: libxl's own error line is the only sign.
      if (/libxl: error/i.test(stderr))
        throw new DriverError('transient', `xl trigger ${domain} reset: ${stderr.trim().split('\n').at(-1)}`)
      return
    }
    await this.destroyAll(now, ctx)
    await this.create(ctx)
  }

  /** c_info.type from `xl list -l`, or undefined when xl does not say (SXP output, no stored config). */
  private async guestType(ctx: ActionContext): Promise<string | undefined> {
    try {
      const { stdout } = await this.xl(xlArgs.listLong(this.config.domain), ctx.signal)
      return parseXlListLong(stdout).find((d) => d.name === this.config.domain)?.type
    } catch (err) {
      if (ctx.signal.aborted) throw err
      return undefined
    }
  }

  async reboot(ctx: ActionContext): Promise<void> {
    const { domain, acpiFallback } = this.config
    const now = await this.look(ctx)
    if (now.state !== 'running' && now.state !== 'paused')
      throw new DriverError('local', `${domain} is ${now.state}, not running: nothing to reboot`)
    await this.xl(xlArgs.reboot(domain, { acpiFallback }), ctx.signal)
  }

  /** Pauses the domain in memory (it keeps its memory and disks): a suspended domain is not stopped. */
  async suspend(ctx: ActionContext): Promise<void> {
    const { domain } = this.config
    const now = await this.look(ctx)
    if (now.condition === 'paused') return
    if (now.state !== 'running')
      throw new DriverError('local', `${domain} is ${now.state}, not running: nothing to suspend`)
    await this.xl(xlArgs.pause(domain), ctx.signal)
    // xl pause exits 0 whatever libxl answered: read the state back.
    const after = await this.look(ctx)
    if (after.condition !== 'paused')
      throw new DriverError('transient', `xl pause ${domain} left it ${after.detail}`)
  }

  async resume(ctx: ActionContext): Promise<void> {
    const now = await this.look(ctx)
    if (now.state === 'running') return
    if (now.condition !== 'paused')
      throw new DriverError('local', `${this.config.domain} is ${now.state}, not paused: nothing to resume`)
    await this.unpause(ctx)
  }

  private async unpause(ctx: ActionContext): Promise<void> {
    const { domain } = this.config
    await this.xl(xlArgs.unpause(domain), ctx.signal)
    // xl unpause exits 0 whatever libxl answered: read the state back.
    const after = await this.look(ctx)
    if (after.state !== 'running')
      throw new DriverError('transient', `xl unpause ${domain} left it ${after.detail}`)
  }

  /**
   * Live migration to `ctx.target` with `xl migrate` (over ssh to `migrateHost`): the domain keeps
   * running, its memory copied over, and xl destroys the source copy once the target runs it. A
   * paused domain arrives paused. Not here and migrated by this driver to the same target: done (a
   * retried command). A failure in the final handshake is a `local` error: xl says the domain may
   * then run at both ends or neither, and leaves `<domain>--migratedaway` here, which monitors as
   * failed until a stop destroys it.
   */
  async migrate(ctx: ActionContext): Promise<void> {
    const target = ctx.target ?? ''
    if (!isValidName(target)) throw new DriverError('config', `migrate: "${target}" is not a node name`)
    const { domain, migrateSshCommand, migrateTimeoutMs } = this.config
    const host = this.config.migrateHost.replaceAll('{node}', target)
    const here = await this.look(ctx)
    if (here.state !== 'running' && here.state !== 'paused') {
      if (here.gone && !here.leftover && this.migratedTo === target) return
      throw new DriverError('local', `${domain} is ${here.state} here: nothing to migrate (${here.detail})`)
    }
    await this.xl(
      xlArgs.migrate(domain, host, {
        ...(migrateSshCommand ? { sshCommand: migrateSshCommand } : {}),
        paused: here.state === 'paused',
      }),
      ctx.signal,
      migrateTimeoutMs,
    )
    this.expectRunning = false
    this.lastDomid = undefined
    this.migratedTo = target
  }
}

export const xlDriver: DriverFactory<typeof xlConfigSchema> = {
  name: 'xl',
  description:
    'A Xen domain managed by the xl toolstack: xl create from its config file, graceful shutdown then destroy, xl list monitor (paused is not online; gone behind its back is failed), reset, reboot, pause, live migration',
  configSchema: xlConfigSchema,
  create: (config) => new XlDriver(config),
}
