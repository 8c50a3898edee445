import { DriverError, type DriverErrorKind, type MonitorState } from '@vigil/driver-kit'

/*
 * The `xl` command layer: the argument list of each subcommand the driver runs, parsers of what xl
 * prints, and what its failures mean. Pure functions (no processes), table-tested against xl's
 * documented formats.
 *
 * Sources: xl(1) (Xen's docs/man/xl.1.pod.in) for the subcommands, options and the `xl list`
 * table and states; Xen's tools/xl/xl_info.c (`list_domains`, `list_domains_details`) for the
 * exact row format and the JSON of `xl list -l`; tools/xl/xl_vmcontrol.c and xl_migrate.c for
 * the messages on stderr; tools/xl/xl_utils.c `find_domain` for "is an invalid domain identifier".
 */

/** The argument lists (after the program) of the xl subcommands the driver runs. */
export const xlArgs = {
  /** Every domain, one table: the domain and a failed migration's leftover in one call. */
  list: (): string[] => ['list'],
  /** One domain's configuration as JSON (its guest type decides how to hard-reset it). */
  listLong: (domain: string): string[] => ['list', '-l', domain],
  /** xl(1): "configfile has to be an absolute path to a file". */
  create: (configFile: string): string[] => ['create', configFile],
  /**
   * `-w` waits until the guest has shut down; `-F` falls back to an ACPI power button press for an
   * HVM guest without PV drivers (without it xl refuses: "external graceful shutdown not possible").
   */
  shutdown: (domain: string, o: { wait: boolean; acpiFallback: boolean }): string[] => [
    'shutdown',
    ...(o.wait ? ['-w'] : []),
    ...(o.acpiFallback ? ['-F'] : []),
    domain,
  ],
  /** xl(1): "the equivalent of ripping the power cord out". */
  destroy: (domain: string): string[] => ['destroy', domain],
  /** A reboot from inside (PV control, or with `-F` the ACPI reset event for an HVM guest without it). */
  reboot: (domain: string, o: { acpiFallback: boolean }): string[] => [
    'reboot',
    ...(o.acpiFallback ? ['-F'] : []),
    domain,
  ],
  /**
   * The hard reset. xl has no `reset` subcommand (xl(1) lists none); `xl trigger <dom> reset` is
   * the reset line of the virtual machine, and xl(1) says trigger is "only available for HVM
   * domains". `xl reboot -F` is not a hard reset: it asks the guest first, and sends the same
   * reset event only when the guest has no PV control interface.
   */
  triggerReset: (domain: string): string[] => ['trigger', domain, 'reset'],
  pause: (domain: string): string[] => ['pause', domain],
  unpause: (domain: string): string[] => ['unpause', domain],
  /**
   * Live migration over ssh (`ssh <host> xl migrate-receive`), or over `sshCommand` (`-s`, run by
   * sh); `-p` leaves the domain paused on the target (a paused domain stays paused).
   */
  migrate: (domain: string, host: string, o: { sshCommand?: string; paused?: boolean } = {}): string[] => [
    'migrate',
    ...(o.sshCommand ? ['-s', o.sshCommand] : []),
    ...(o.paused ? ['-p'] : []),
    domain,
    host,
  ],
} as const

/** One row of `xl list`. */
export interface XlListRow {
  name: string
  domid: number
  /** Current plus outstanding memory, in MiB. */
  memMiB: number
  /** vCPUs online. */
  vcpus: number
  /** The six state letters, e.g. `-b----`. */
  state: string
  /** CPU time consumed, in seconds. */
  cpuSeconds: number
}

/*
 * xl_info.c prints each row with "%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f": the name padded to 40
 * (it may hold spaces), then ID, Mem, VCPUs, State and Time(s); -v, -Z, -c and -n add columns after
 * these. The header has tabs ("Name   ID   Mem VCPUs\tState\tTime(s)"), and its ID is no number.
 */
const ROW = /^(.+?)\s+(\d+)\s+(\d+)\s+(\d+)\s+([-rbpscwSd?]{6})\s+(\d+(?:\.\d+)?)(?:\s.*)?$/

/** The rows of `xl list` (header and anything else that is not a row skipped). */
export function parseXlList(text: string): XlListRow[] {
  const rows: XlListRow[] = []
  for (const line of text.split('\n')) {
    const m = ROW.exec(line.trimEnd())
    if (!m) continue
    rows.push({
      name: (m[1] as string).trim(),
      domid: Number(m[2]),
      memMiB: Number(m[3]),
      vcpus: Number(m[4]),
      state: m[5] as string,
      cpuSeconds: Number(m[6]),
    })
  }
  return rows
}

export type XlShutdownReason =
  | 'poweroff'
  | 'reboot'
  | 'suspend'
  | 'crash'
  | 'watchdog'
  | 'soft_reset'
  | 'unknown'

export interface XlStateFlags {
  running: boolean
  blocked: boolean
  paused: boolean
  shutdown: boolean
  /** Only when shut down: why (the fifth letter). */
  shutdownReason: XlShutdownReason | null
  dying: boolean
}

/*
 * The letters are positional: r b p s, then the shutdown reason from "-rscwS" (poweroff, reboot,
 * suspend, crash, watchdog, soft_reset; '?' for one xl does not know), then d. xl(1) documents
 * "c - crashed" in that fifth place; the reasons are in xl_info.c and newer xl(1) pages.
 */
const REASONS: Record<string, XlShutdownReason> = {
  '-': 'poweroff',
  r: 'reboot',
  s: 'suspend',
  c: 'crash',
  w: 'watchdog',
  S: 'soft_reset',
}

/** The flags of a six-letter `xl list` state. */
export function parseXlState(letters: string): XlStateFlags {
  const at = (i: number) => letters[i] ?? '-'
  const shutdown = at(3) === 's'
  return {
    running: at(0) === 'r',
    blocked: at(1) === 'b',
    paused: at(2) === 'p',
    shutdown,
    shutdownReason: shutdown ? (REASONS[at(4)] ?? 'unknown') : null,
    dying: at(5) === 'd',
  }
}

/**
 * What a listed domain is doing:
 * - running: on a CPU (r), waiting for one or for I/O (b), or runnable (`------`, common on a busy host);
 * - paused: paused by `xl pause` (or still being built: xl creates domains paused);
 * - rebooting: shut down to reboot (or soft reset): xl restarts it under the same name;
 * - crashed: kept after a crash (`on_crash="preserve"`); watchdog: its watchdog fired and it was kept;
 * - shutdown: its guest powered off or suspended and the domain is kept or about to be destroyed;
 * - dying: on its way out; unknown: shut down for a reason xl does not name.
 */
export type XlCondition =
  | 'running'
  | 'paused'
  | 'rebooting'
  | 'crashed'
  | 'watchdog'
  | 'shutdown'
  | 'dying'
  | 'unknown'

export function xlCondition(flags: XlStateFlags): XlCondition {
  if (flags.dying) return 'dying'
  if (flags.shutdown) {
    switch (flags.shutdownReason) {
      case 'crash':
        return 'crashed'
      case 'watchdog':
        return 'watchdog'
      case 'reboot':
      case 'soft_reset':
        return 'rebooting'
      case 'poweroff':
      case 'suspend':
        return 'shutdown'
      default:
        return 'unknown'
    }
  }
  if (flags.paused) return 'paused'
  return 'running'
}

/** A domain that runs no more (or is about to vanish): monitored as if it were not listed. */
export function isGone(condition: XlCondition): boolean {
  return condition === 'shutdown' || condition === 'dying'
}

/** The name xl gives a domain it is migrating away, until the target confirms (xl_migrate.c). */
export const migratedAwayName = (domain: string) => `${domain}--migratedaway`

export interface Observation {
  state: MonitorState
  detail: string
  /** The domain's row, if listed. */
  row?: XlListRow
  condition?: XlCondition
  /** Not listed, or on its way out (shut down, dying). */
  gone: boolean
  /** `<domain>--migratedaway`: a migration that failed in its final handshake left it here. */
  leftover?: XlListRow
}

/**
 * The monitor's answer from `xl list`. xl lists only domains that exist, and with the default
 * `on_crash="destroy"` a crashed domain vanishes like one shut down cleanly: a domain that is gone
 * is failed if the driver saw it alive (or started it) and did not stop it since (`expectRunning`),
 * and stopped otherwise. A kept crash (`on_crash="preserve"`) or a fired watchdog is failed; the
 * leftover of a migration whose final handshake failed is failed (xl: "Domain state is now
 * undefined"), so the manager stops it before starting the domain anywhere.
 */
export function observe(rows: readonly XlListRow[], domain: string, expectRunning: boolean): Observation {
  const row = rows.find((r) => r.name === domain)
  const leftover = rows.find((r) => r.name === migratedAwayName(domain))
  const condition = row ? xlCondition(parseXlState(row.state)) : undefined
  const at = row ? `${domain} (domid ${row.domid}, ${row.state})` : domain
  const base = { ...(row ? { row, condition } : {}), ...(leftover ? { leftover } : {}) }
  switch (condition) {
    case 'running':
      return { ...base, gone: false, state: 'running', detail: `${at}: running` }
    case 'rebooting':
      return { ...base, gone: false, state: 'running', detail: `${at}: rebooting` }
    case 'paused':
      return { ...base, gone: false, state: 'paused', detail: `${at}: paused` }
    case 'crashed':
      return { ...base, gone: false, state: 'failed', detail: `${at}: crashed (kept by on_crash)` }
    case 'watchdog':
      return { ...base, gone: false, state: 'failed', detail: `${at}: its watchdog fired` }
    case 'unknown':
      return { ...base, gone: false, state: 'failed', detail: `${at}: shut down for an unknown reason` }
    default:
      break
  }
  const how = row ? `${at}: ${condition === 'dying' ? 'dying' : 'shut down'}` : `${domain}: not listed`
  if (leftover)
    return {
      ...base,
      gone: true,
      state: 'failed',
      detail: `${how}; ${leftover.name} (domid ${leftover.domid}) is left by a migration that failed in its final handshake: its state is undefined`,
    }
  if (expectRunning)
    return {
      ...base,
      gone: true,
      state: 'failed',
      detail: `${how}, and not stopped by Vigil: crashed, destroyed or shut down from inside (xl keeps no trace)`,
    }
  return { ...base, gone: true, state: 'stopped', detail: how }
}

/** A running or paused domain's counters from its `xl list` row, in base units. */
export function rowMetrics(row: XlListRow): Record<string, number> {
  return {
    domid: row.domid,
    vcpus: row.vcpus,
    memoryCurrentBytes: row.memMiB * 1024 * 1024,
    cpuSeconds: row.cpuSeconds,
  }
}

/** What `xl list -l` says of a domain (libxl's domain configuration, as JSON). */
export interface XlDomainDetails {
  domid: number | null
  name: string
  /** c_info.type: `hvm`, `pv` or `pvh`. */
  type?: string
  uuid?: string
  maxVcpus?: number
  maxMemKb?: number
  targetMemKb?: number
  /** What xl does when the guest crashes (`destroy` when the config file does not say). */
  onCrash?: string
}

/**
 * The domains of `xl list -l`: a JSON array of `{ domid, config }`, `config` being libxl's
 * domain configuration (`c_info`, `b_info`, `disks`, `nics`, `on_crash`, ...). Throws when the
 * output is not that JSON (xl.conf's `output_format="sxp"` prints S-expressions instead).
 */
export function parseXlListLong(text: string): XlDomainDetails[] {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    throw new Error(
      `xl list -l: not JSON (is output_format="sxp" set in xl.conf?): ${text.trim().slice(0, 40)}`,
    )
  }
  if (!Array.isArray(data)) throw new Error('xl list -l: expected a JSON array of domains')
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined)
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined)
  return data.flatMap((entry: unknown) => {
    const e = (entry ?? {}) as { domid?: unknown; config?: Record<string, unknown> }
    const cInfo = (e.config?.c_info ?? {}) as Record<string, unknown>
    const bInfo = (e.config?.b_info ?? {}) as Record<string, unknown>
    const name = str(cInfo.name)
    if (name === undefined) return []
    const details: XlDomainDetails = { domid: num(e.domid) ?? null, name }
    const set = <K extends keyof XlDomainDetails>(k: K, v: XlDomainDetails[K] | undefined) => {
      if (v !== undefined) details[k] = v
    }
    set('type', str(cInfo.type))
    set('uuid', str(cInfo.uuid))
    set('maxVcpus', num(bInfo.max_vcpus))
    set('maxMemKb', num(bInfo.max_memkb))
    set('targetMemKb', num(bInfo.target_memkb))
    set('onCrash', str(e.config?.on_crash))
    return [details]
  })
}

/**
 * The `name = "..."` of an xl.cfg(5) file (comments skipped), or undefined when no plain
 * assignment is found (xl then decides; it refuses a config without a name).
 */
export function configFileDomainName(text: string): string | undefined {
  for (const line of text.split('\n')) {
    const m = /^\s*name\s*=\s*(?:"([^"]*)"|'([^']*)')\s*;?\s*(?:#.*)?$/.exec(line)
    if (m) return m[1] ?? m[2]
  }
  return undefined
}

/**
 * Why an xl command failed, from its stderr:
 * - no-such-domain: `find_domain` ("<dom> is an invalid domain identifier (rc=-6)") or `xl list
 *   <dom>` ("Error: Domain '<dom>' does not exist.");
 * - no-xen: xl cannot reach the hypervisor ("cannot init xl context", after libxc's "Could not
 *   obtain handle on privileged command interface"): not a Xen host, Xen not running, or not root;
 * - config-file: "Failed to read config file: <path>: <reason>";
 * - name-taken: libxl's "Domain with name "<name>" already exists." (a create raced another);
 * - no-memory: "failed to free memory for the domain" (xl could not balloon dom0 down);
 * - migration-undefined: "Migration failed during final handshake ... Domain state is now
 *   undefined": the domain may run at both ends, or neither;
 * - other: anything else.
 */
export type XlFailure =
  | 'no-such-domain'
  | 'no-xen'
  | 'config-file'
  | 'name-taken'
  | 'no-memory'
  | 'migration-undefined'
  | 'other'

const FAILURES: [XlFailure, RegExp][] = [
  ['migration-undefined', /Migration failed during final handshake|Domain state is now undefined/i],
  ['no-such-domain', /is an invalid domain identifier|Domain '.*' does not exist/i],
  [
    'no-xen',
    /cannot init xl context|Could not obtain handle on privileged command interface|cannot open libxc handle/i,
  ],
  ['config-file', /Failed to read config file/i],
  ['name-taken', /Domain with name ".*" already exists/i],
  ['no-memory', /failed to free memory for the domain/i],
]

export function classifyXlFailure(stderr: string): XlFailure {
  return FAILURES.find(([, re]) => re.test(stderr))?.[0] ?? 'other'
}

/**
 * The recovery scope of each failure: what this host lacks (the domain, Xen itself, the config
 * file, memory) is `local`, another host may have it; a migration left undefined is `local` too (this
 * host must be checked before anything runs the domain again); the rest is `transient`.
 */
export const FAILURE_KIND: Readonly<Record<XlFailure, DriverErrorKind>> = {
  'no-such-domain': 'local',
  'no-xen': 'local',
  'config-file': 'local',
  'name-taken': 'transient',
  'no-memory': 'local',
  'migration-undefined': 'local',
  other: 'transient',
}

/** A failed xl command: its kind from `FAILURE_KIND`, and the failure for callers that expect one. */
export class XlCommandError extends DriverError {
  constructor(
    readonly failure: XlFailure,
    message: string,
  ) {
    super(FAILURE_KIND[failure], message)
  }
}

/** The error for an xl command that exited non-zero: the last line of its stderr says why. */
export function xlCommandError(
  args: readonly string[],
  result: { code: number | null; stderr: string },
): XlCommandError {
  const failure = classifyXlFailure(result.stderr)
  const lines = result.stderr.split('\n').map((l) => l.trim())
  const why =
    failure === 'migration-undefined'
      ? 'migration failed during its final handshake: the domain may now run on both hosts, or on neither; check both before running it anywhere'
      : (lines.filter(Boolean).at(-1) ?? `exit ${result.code}`)
  return new XlCommandError(failure, `xl ${args.join(' ')}: ${why}`)
}
