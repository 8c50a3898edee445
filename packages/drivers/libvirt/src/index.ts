import { type ChildProcess, spawn } from 'node:child_process'
import { type FSWatcher, watch } from 'node:fs'
import { open } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
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
import { domainTypeOf, libvirtHypervisor, libvirtUri } from './uri.js'

export {
  domainTypeOf,
  LIBVIRT_DRIVERS,
  LIBVIRT_TRANSPORTS,
  type LibvirtHypervisor,
  libvirtHypervisor,
  libvirtUriProblem,
} from './uri.js'

export const libvirtConfigSchema = z.strictObject({
  /** The libvirt domain (guest) name. */
  domain: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}$/, 'must be a libvirt domain name'),
  /** The libvirt connection: qemu:///system (KVM), xen:///system (Xen through libvirt's libxl driver), ... */
  uri: libvirtUri().default('qemu:///system'),
  /** stop asks the guest to shut down (ACPI), then destroys it after this long. */
  shutdownTimeoutMs: z.number().int().min(0).max(600_000).default(60_000),
  /** Per virsh call. */
  callTimeoutMs: z.number().int().min(500).max(120_000).default(15_000),
  virsh: z.string().default('virsh'),
  /**
   * Where `migrate` sends the guest: a libvirt URI in which `{node}` is the target node's name in
   * the cluster (the hub names it), e.g. qemu+ssh://{node}/system or qemu+tls://{node}.migration/system
   * (for Xen: xen+ssh://{node}/system).
   */
  migrateUri: libvirtUri({ template: true }).default('qemu+ssh://{node}/system'),
  /**
   * QEMU's own migration stream address (virsh migrate --migrateuri), `{node}` as above, e.g.
   * tcp://{node}-storage: for a dedicated migration network. Default: libvirt picks the target's hostname.
   */
  migrateAddress: z
    .string()
    .regex(/^[a-z0-9+]+:\/\/[^\s]*$/, 'must be a URI such as tcp://{node}')
    .optional(),
  /**
   * `live`: the guest runs on while its memory is copied (`virsh migrate --live`). `paused`: it is
   * paused for the copy and resumed on the target (without --live: rgmanager's migrate="pause"), for
   * a guest that dirties its memory faster than the link copies it. The hub judges its guest
   * heartbeat from the switchover on either way.
   */
  migrateMode: z.enum(['live', 'paused']).default('live'),
  /** A live migration copies the guest's memory while it runs: allow for its size and the link. */
  migrateTimeoutMs: z.number().int().min(1000).max(3_600_000).default(120_000),
  /** Caps the migration stream (virsh migrate --bandwidth, MiB/s): a shared link, or a slow test. */
  migrateBandwidthMiBs: z.number().int().min(1).max(100_000).optional(),
  /**
   * The guest's own heartbeat (ExpressCluster's VM heartbeat check): a file the guest advances,
   * typically its serial console log (`<serial type='file'>`), and the lines that count. Each
   * monitor of a running guest reports how many such lines appeared (`guestHeartbeats`, a counter);
   * the hub calls the guest hung when it stops advancing while libvirt still says running.
   */
  guestHeartbeat: z
    .strictObject({
      file: z.string().startsWith('/', 'must be an absolute path'),
      pattern: z
        .string()
        .min(1)
        .refine((p) => {
          try {
            new RegExp(p)
            return true
          } catch {
            return false
          }
        }, 'must be a regular expression')
        .default('heartbeat'),
    })
    .optional(),
  /** Add the running guest's counters (virsh domstats: CPU, memory balloon, disk and NIC bytes). */
  stats: z.boolean().default(true),
})
export type LibvirtConfig = z.output<typeof libvirtConfigSchema>

/** `virsh domstate --reason` reasons of a shut off domain that mean it died rather than stopped. */
const CRASHED = /crashed|failed/i

/**
 * A libvirt guest as a resource, after VCS's KVMGuest agent: online = virsh start, offline = virsh
 * shutdown then destroy, monitor = virsh domstate (running; paused, which is not online: it holds
 * its disks but serves nothing; shut off cleanly; crashed or failed), clean = destroy, reset and
 * reboot for the ladder. Lifecycle events (`virsh event --loop`) trigger a monitor at once.
 */
class LibvirtDriver implements Driver {
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
  readonly timeouts
  private watcher: ChildProcess | null = null
  private readonly listeners: (() => void)[] = []

  private readonly heartbeats: HeartbeatLines | null
  /**
   * This driver stopped the domain and nothing has run it since. libvirt keeps a dead guest's
   * "shut off (crashed)" until it starts again, and a destroy cannot clear it, so without this a
   * crashed guest's stop would succeed and leave it "failed": its manager would stop it again and
   * again (seen in the lab: a host back from a crash, its copy of a vm that had failed over).
   * Kept in memory: after an agent restart one more stop clears it again.
   */
  private stoppedByUs = false
  /**
   * The last monitor that asked libvirt, while the guest ran: its detail, counters and heartbeat
   * count. A new heartbeat line is proof the guest runs, so a monitor asked for by the heartbeat
   * watcher answers from the console alone (`beatOnly`): no virsh per beat, and the beat reaches
   * the hub without the jitter of two virsh calls. Anything else (a lifecycle event, the periodic
   * poll, an action) asks libvirt.
   */
  private lastRunning: { detail: string; stats?: Record<string, number>; beats: number } | null = null
  private beatOnly = false
  /**
   * The domain's `<domain type>` (kvm, or qemu for TCG), read from its definition once, by the
   * first monitor that finds the domain (one `virsh dumpxml` per agent run: a definition's type does
   * not change under a running guest). The URI alone cannot tell KVM from TCG, and a lab or nested
   * host running TCG guests (slow: the CPU emulated) should not be shown as KVM.
   */
  private domainType: string | undefined

  /** What runs the guest: xen for a xen URI; for a qemu URI, kvm or qemu per its definition. */
  get hypervisor() {
    return libvirtHypervisor(this.config.uri, this.domainType)
  }

  constructor(private readonly config: LibvirtConfig) {
    this.heartbeats = config.guestHeartbeat
      ? new HeartbeatLines(config.guestHeartbeat.file, new RegExp(config.guestHeartbeat.pattern))
      : null
    const call = config.callTimeoutMs
    this.timeouts = {
      monitor: call + 1000,
      start: call * 2,
      stop: config.shutdownTimeoutMs + call * 2,
      restart: config.shutdownTimeoutMs + call * 4,
      reset: call + 1000,
      reboot: call + 1000,
      suspend: call * 2 + 1000,
      resume: call * 2 + 1000,
      migrate: config.migrateTimeoutMs + call * 2,
    }
  }

  private async virsh(
    args: string[],
    signal?: AbortSignal,
    { uri = this.config.uri, timeoutMs = this.config.callTimeoutMs } = {},
  ): Promise<string> {
    const { virsh, domain } = this.config
    const r = await runCommand([virsh, '-c', uri, ...args], { timeoutMs, signal })
    if (r.notStarted) throw new DriverError('local', `cannot run ${virsh} here: ${r.stderr}`)
    if (r.killed)
      throw new DriverError('transient', `virsh ${args[0]} ${domain}: no answer from libvirt in time`)
    if (r.code === 0) return r.stdout
    const why = r.stderr.trim().split('\n').filter(Boolean).at(-1) ?? `exit ${r.code}`
    if (/failed to get domain|Domain not found/i.test(r.stderr))
      throw new DriverError('local', `${domain} is not defined on this host (${uri})`)
    if (/failed to connect/i.test(r.stderr)) throw new DriverError('transient', `libvirt at ${uri}: ${why}`)
    throw Object.assign(new DriverError('transient', `virsh ${args[0]} ${domain}: ${why}`), {
      stderr: r.stderr,
    })
  }

  async monitor(ctx: ActionContext): Promise<MonitorResult> {
    const beatOnly = this.beatOnly
    this.beatOnly = false
    if (beatOnly && this.heartbeats && this.lastRunning) {
      const { detail, stats, beats: before } = this.lastRunning
      const beats = await this.heartbeats.read().catch(() => undefined)
      if (beats !== undefined && beats > before) {
        this.lastRunning = { detail, ...(stats ? { stats } : {}), beats }
        return { state: 'running', detail, metrics: { ...stats, guestHeartbeats: beats } }
      }
    }
    return this.ask(ctx)
  }

  /** The domain's state from libvirt (actions use this, never the console's answer). */
  private async ask(ctx: ActionContext): Promise<MonitorResult> {
    this.lastRunning = null
    const out = (await this.virsh(['domstate', '--reason', this.config.domain], ctx.signal)).trim()
    const [state = '', reason = ''] = /^(.*?)(?: \((.*)\))?$/.exec(out)?.slice(1) ?? []
    const detail = out
    // A failed read leaves the URI's guess (kvm) until a later monitor reads it; a definition
    // without a type ('') is not read again.
    if (this.domainType === undefined && libvirtHypervisor(this.config.uri) === 'kvm')
      this.domainType = await this.virsh(['dumpxml', this.config.domain], ctx.signal).then(
        (xml) => domainTypeOf(xml) ?? '',
        () => undefined,
      )
    if (state !== 'shut off') this.stoppedByUs = false // it ran (or runs) since our stop
    if (state === 'shut off' && this.stoppedByUs) return { state: 'stopped', detail }
    if (state === 'running' || state === 'blocked' || state === 'in shutdown') {
      // Counters are a bonus: a guest whose stats cannot be read is still running.
      const stats = this.config.stats ? await this.domstats(ctx).catch(() => undefined) : undefined
      const beats = this.heartbeats ? await this.heartbeats.read().catch(() => undefined) : undefined
      const metrics = { ...stats, ...(beats === undefined ? {} : { guestHeartbeats: beats }) }
      if (beats !== undefined) this.lastRunning = { detail, ...(stats ? { stats } : {}), beats }
      return Object.keys(metrics).length > 0
        ? { state: 'running', detail, metrics }
        : { state: 'running', detail }
    }
    // Paused by a user (virsh suspend, Vigil's suspend) is intended; by libvirt itself (an I/O
    // error, a full disk, a watchdog) it is a fault, recovered.
    if (state === 'paused' && reason === 'user') return { state: 'suspended', detail }
    if (state === 'paused' || state === 'pmsuspended') return { state: 'paused', detail }
    if (state === 'crashed' || CRASHED.test(reason)) return { state: 'failed', detail }
    if (state === 'shut off') return { state: 'stopped', detail }
    return { state: 'failed', detail: `unexpected state: ${out}` }
  }

  /** `virsh domstats --raw`, summed into a few numbers in base units. */
  private async domstats(ctx: ActionContext): Promise<Record<string, number>> {
    const out = await this.virsh(
      [
        'domstats',
        '--raw',
        '--cpu-total',
        '--balloon',
        '--vcpu',
        '--block',
        '--interface',
        this.config.domain,
      ],
      ctx.signal,
    )
    return domstatsMetrics(out)
  }

  async start(ctx: ActionContext): Promise<void> {
    const now = await this.ask(ctx)
    if (now.state === 'running') return
    this.stoppedByUs = false
    // A paused guest is resumed, not started twice; a crashed one is started again.
    if (asleep(now.state)) await this.virsh(['resume', this.config.domain], ctx.signal)
    else await this.virsh(['start', this.config.domain], ctx.signal)
  }

  async stop(ctx: ActionContext): Promise<void> {
    if ((await this.ask(ctx)).state === 'running') {
      await this.virsh(['shutdown', this.config.domain], ctx.signal).catch(() => {})
      const until = Date.now() + this.config.shutdownTimeoutMs
      while (Date.now() < until && !ctx.signal.aborted) {
        if ((await this.ask(ctx)).state !== 'running') break
        await new Promise((r) => setTimeout(r, 250))
      }
    }
    // Paused, crashed or in an odd state (or still running past the shutdown time): only destroy
    // makes it safe.
    await this.destroy(ctx)
    this.stoppedByUs = true
    this.lastRunning = null
  }

  private async destroy(ctx: ActionContext): Promise<void> {
    try {
      await this.virsh(['destroy', this.config.domain], ctx.signal)
    } catch (err) {
      if (/domain is not running/i.test((err as { stderr?: string }).stderr ?? '')) return
      throw err
    }
  }

  async reset(ctx: ActionContext): Promise<void> {
    await this.virsh(['reset', this.config.domain], ctx.signal)
  }

  async reboot(ctx: ActionContext): Promise<void> {
    await this.virsh(['reboot', this.config.domain], ctx.signal)
  }

  /** Pauses the guest in memory (it keeps its disks): a suspended guest is not stopped. */
  async suspend(ctx: ActionContext): Promise<void> {
    const now = await this.ask(ctx)
    if (asleep(now.state)) return
    if (now.state !== 'running')
      throw new DriverError('local', `${this.config.domain} is ${now.state}, not running: nothing to suspend`)
    await this.virsh(['suspend', this.config.domain], ctx.signal)
  }

  async resume(ctx: ActionContext): Promise<void> {
    const now = await this.ask(ctx)
    if (now.state === 'running') return
    if (!asleep(now.state))
      throw new DriverError('local', `${this.config.domain} is ${now.state}, not paused: nothing to resume`)
    await this.virsh(['resume', this.config.domain], ctx.signal)
  }

  /**
   * Live migration to `ctx.target` (VCS KVMGuest's migrate): the guest keeps running, its memory
   * copied over; the target gets a persistent definition, the source keeps its own so the guest
   * can come back. Already running on the target and not here: done (a retried command).
   */
  async migrate(ctx: ActionContext): Promise<void> {
    const target = ctx.target ?? ''
    if (!isValidName(target)) throw new DriverError('config', `migrate: "${target}" is not a node name`)
    const uri = this.config.migrateUri.replaceAll('{node}', target)
    const { domain } = this.config
    const here = await this.ask(ctx)
    if (here.state !== 'running' && !asleep(here.state)) {
      const there = await this.virsh(['domstate', domain], ctx.signal, { uri }).catch(() => '')
      if (there.trim() === 'running') return
      throw new DriverError(
        'local',
        `${domain} is ${here.state} here and not running on ${target}: nothing to migrate`,
      )
    }
    const address = this.config.migrateAddress?.replaceAll('{node}', target)
    await this.virsh(
      [
        'migrate',
        ...(this.config.migrateMode === 'live' ? ['--live'] : []),
        '--persistent',
        ...(this.config.migrateBandwidthMiBs
          ? ['--bandwidth', String(this.config.migrateBandwidthMiBs)]
          : []),
        domain,
        uri,
        ...(address ? ['--migrateuri', address] : []),
      ],
      ctx.signal,
      { timeoutMs: this.config.migrateTimeoutMs },
    )
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener)
    this.watchHeartbeats()
    if (this.watcher) return
    const { virsh, uri, domain } = this.config
    const watch = () => {
      const child = spawn(virsh, ['-c', uri, 'event', '--domain', domain, '--loop', '--all'], {
        stdio: ['ignore', 'pipe', 'ignore'],
      })
      this.watcher = child
      child.stdout?.setEncoding('utf8').on('data', () => {
        this.beatOnly = false // a lifecycle event: ask libvirt
        for (const l of this.listeners) l()
      })
      // virsh event exits when libvirtd restarts: watch again (the periodic monitor covers the gap).
      child.once('exit', () => {
        if (this.watcher !== child) return
        this.watcher = null
        setTimeout(() => {
          if (this.listeners.length > 0 && this.watcher === null && !this.closed) watch()
        }, 1000).unref()
      })
      child.once('error', () => {})
    }
    watch()
  }

  private closed = false
  private heartbeatWatcher: FSWatcher | null = null

  /**
   * A guest heartbeat is monitored as it is written, not at the next poll: its timing is what the
   * hub's detector learns, and a poll would add up to a whole interval of jitter. The directory is
   * watched (a new QEMU may create the file anew); bursts of writes are coalesced.
   */
  private watchHeartbeats(): void {
    const file = this.config.guestHeartbeat?.file
    if (!file || this.heartbeatWatcher) return
    let pending: NodeJS.Timeout | null = null
    try {
      this.heartbeatWatcher = watch(dirname(file), (_event, name) => {
        if (name !== basename(file) || pending) return
        pending = setTimeout(() => {
          pending = null
          this.beatOnly = true
          for (const l of this.listeners) l()
        }, 20)
      })
      this.heartbeatWatcher.on('error', () => {
        this.heartbeatWatcher = null // the periodic monitor still counts the lines
      })
    } catch {
      // No such directory yet: the periodic monitor still counts the lines.
    }
  }

  async close(): Promise<void> {
    this.closed = true
    this.heartbeatWatcher?.close()
    this.heartbeatWatcher = null
    const w = this.watcher
    this.watcher = null
    w?.kill('SIGTERM')
  }
}

/**
 * Counts the lines matching `pattern` appended to a file since the first read (earlier content is
 * history, not a heartbeat). A file that shrank was started anew (a new QEMU truncates its console
 * file): reading restarts at its beginning and the count goes on, so it only ever grows.
 */
export class HeartbeatLines {
  private offset: number | null = null
  private partial = ''
  private count = 0
  private queue: Promise<unknown> = Promise.resolve()

  constructor(
    private readonly file: string,
    private readonly pattern: RegExp,
  ) {}

  /**
   * The count so far. Reads run one at a time: two at once would both read from one offset and
   * count the same lines twice (seen after the agent's file threads had been held up: a burst of
   * monitors, and the count jumped by far more than the guest had written).
   */
  read(): Promise<number> {
    const next = this.queue.then(() => this.readMore())
    this.queue = next.catch(() => {})
    return next
  }

  private async readMore(): Promise<number> {
    const fh = await open(this.file, 'r')
    try {
      const { size } = await fh.stat()
      if (this.offset === null || size < this.offset) {
        this.partial = ''
        this.offset = this.offset === null ? size : 0
      }
      // At most 1 MiB per read: a chatty console must not stall the monitor.
      const length = Math.min(size - this.offset, 1 << 20)
      if (length > 0) {
        const buf = Buffer.alloc(length)
        const { bytesRead } = await fh.read(buf, 0, length, this.offset)
        this.offset += bytesRead
        const lines = (this.partial + buf.subarray(0, bytesRead).toString('utf8')).split('\n')
        this.partial = (lines.pop() ?? '').slice(-4096)
        for (const line of lines) if (this.pattern.test(line)) this.count++
      }
      return this.count
    } finally {
      await fh.close()
    }
  }
}

/**
 * From `virsh domstats --raw` (`key=value` lines): CPU seconds, vCPUs, the balloon's current and
 * maximum memory in bytes, and disk and NIC bytes summed over every device.
 */
export function domstatsMetrics(text: string): Record<string, number> {
  const kv = new Map<string, number>()
  for (const line of text.split('\n')) {
    const m = /^\s*([\w.]+)=(-?\d+(?:\.\d+)?)\s*$/.exec(line)
    if (m) kv.set(m[1] as string, Number(m[2]))
  }
  const sum = (re: RegExp) => [...kv].filter(([k]) => re.test(k)).reduce((s, [, v]) => s + v, 0)
  const out: Record<string, number> = {}
  const set = (name: string, value: number | undefined) => {
    if (value !== undefined && Number.isFinite(value)) out[name] = value
  }
  set('cpuSeconds', kv.has('cpu.time') ? (kv.get('cpu.time') as number) / 1e9 : undefined)
  set('vcpus', kv.get('vcpu.current'))
  set(
    'memoryCurrentBytes',
    kv.has('balloon.current') ? (kv.get('balloon.current') as number) * 1024 : undefined,
  )
  set('memoryMaxBytes', kv.has('balloon.maximum') ? (kv.get('balloon.maximum') as number) * 1024 : undefined)
  set('diskReadBytes', sum(/^block\.\d+\.rd\.bytes$/))
  set('diskWriteBytes', sum(/^block\.\d+\.wr\.bytes$/))
  set('netRxBytes', sum(/^net\.\d+\.rx\.bytes$/))
  set('netTxBytes', sum(/^net\.\d+\.tx\.bytes$/))
  return out
}

export const libvirtDriver: DriverFactory<typeof libvirtConfigSchema> = {
  name: 'libvirt',
  description:
    'A libvirt guest: start, graceful stop then destroy, domstate monitor (paused is not online) with domstats counters, reset, reboot',
  configSchema: libvirtConfigSchema,
  create: (config) => new LibvirtDriver(config),
}

/** Paused in memory, by libvirt itself or by a user: holds its disks, continued by a resume. */
function asleep(state: string): boolean {
  return state === 'paused' || state === 'suspended'
}
