import { execFileSync } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { join } from 'node:path'
import {
  type ActionContext,
  type Driver,
  DriverError,
  type DriverFactory,
  type MonitorResult,
} from '@vigil/driver-kit'
import { runCommand } from '@vigil/kit'
import { z } from 'zod'

export const ocfConfigSchema = z.strictObject({
  /** `provider:type`, e.g. `heartbeat:Dummy`, `heartbeat:IPaddr2`, `heartbeat:apache`. */
  agent: z.string().regex(/^[a-z0-9_-]+:[A-Za-z0-9_.-]+$/, 'must be provider:type, e.g. heartbeat:Dummy'),
  /** Instance parameters, passed as OCF_RESKEY_<name>. */
  params: z
    .record(
      z.string().regex(/^[A-Za-z0-9_]+$/, 'parameter names are letters, digits and "_"'),
      z.union([z.string().regex(/^[^\n\r]*$/, 'must be one line'), z.number(), z.boolean()]),
    )
    .default({}),
  ocfRoot: z.string().default('/usr/lib/ocf'),
  /** Per-action timeouts; by default those the agent declares in its meta-data (else 20 s). */
  timeoutsMs: z
    .strictObject({
      monitor: z.number().int().positive().optional(),
      start: z.number().int().positive().optional(),
      stop: z.number().int().positive().optional(),
    })
    .prefault({}),
})
export type OcfConfig = z.output<typeof ocfConfigSchema>

const DEFAULT_TIMEOUT_MS = 20_000

/** "20s", "2m", "500ms", "90" (seconds, OCF's default unit) -> ms; null if unreadable. */
export function ocfDuration(text: string): number | null {
  const m = /^\s*(\d+)\s*(ms|s|sec|m|min|h)?\s*$/.exec(text)
  if (!m) return null
  const n = Number(m[1])
  const unit = m[2] ?? 's'
  return unit === 'ms'
    ? n
    : unit === 'm' || unit === 'min'
      ? n * 60_000
      : unit === 'h'
        ? n * 3_600_000
        : n * 1000
}

/** The timeouts an agent declares in its meta-data (`<action name="start" timeout="20s"/>`), once, at start. */
export function metaDataTimeouts(
  program: string,
  ocfRoot: string,
): Partial<Record<'monitor' | 'start' | 'stop', number>> {
  let xml: string
  try {
    xml = execFileSync(program, ['meta-data'], {
      env: { ...process.env, OCF_ROOT: ocfRoot },
      timeout: 2000,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    })
  } catch {
    return {}
  }
  const out: Partial<Record<'monitor' | 'start' | 'stop', number>> = {}
  for (const m of xml.matchAll(/<action\s+([^>]*?)\/?>/g)) {
    const attrs = m[1] ?? ''
    const name = /name="([^"]+)"/.exec(attrs)?.[1]
    const timeout = /timeout="([^"]+)"/.exec(attrs)?.[1]
    if ((name === 'monitor' || name === 'start' || name === 'stop') && timeout && out[name] === undefined) {
      const ms = ocfDuration(timeout)
      if (ms !== null) out[name] = ms
    }
  }
  return out
}

/** OCF exit codes (resource-agents' ocf-returncodes). */
const OCF = {
  SUCCESS: 0,
  ERR_GENERIC: 1,
  ERR_ARGS: 2,
  ERR_UNIMPLEMENTED: 3,
  ERR_PERM: 4,
  ERR_INSTALLED: 5,
  ERR_CONFIGURED: 6,
  NOT_RUNNING: 7,
  RUNNING_PROMOTED: 8,
  FAILED_PROMOTED: 9,
} as const

/**
 * Any OCF resource agent (the 140 of Debian's resource-agents, or your own) as a Vigil driver: the
 * same contract it was modelled on. Exit codes map to the recovery scope the way Pacemaker reads
 * them: a generic error is retried here, a permission or installation problem is this host's
 * (another may do better), bad arguments or configuration are never retried.
 */
class OcfDriver implements Driver {
  readonly capabilities = ['start', 'stop', 'restart'] as const
  readonly timeouts
  private readonly actionTimeouts: Record<'monitor' | 'start' | 'stop', number>
  private readonly program: string
  /** Started by us and not stopped since: "not running" is then a failure, not a clean stop. */
  private expectRunning = false

  constructor(
    private readonly config: OcfConfig,
    private readonly resourceId: string,
  ) {
    const [provider, type] = config.agent.split(':') as [string, string]
    this.program = join(config.ocfRoot, 'resource.d', provider, type)
    const t0 = config.timeoutsMs
    const declared = t0.monitor && t0.start && t0.stop ? {} : metaDataTimeouts(this.program, config.ocfRoot)
    const pick = (a: 'monitor' | 'start' | 'stop') =>
      config.timeoutsMs[a] ?? declared[a] ?? DEFAULT_TIMEOUT_MS
    this.actionTimeouts = { monitor: pick('monitor'), start: pick('start'), stop: pick('stop') }
    const t = this.actionTimeouts
    this.timeouts = { monitor: t.monitor, start: t.start, stop: t.stop, restart: t.start + t.stop }
  }

  private async call(action: 'monitor' | 'start' | 'stop', ctx: ActionContext): Promise<number> {
    try {
      accessSync(this.program, constants.X_OK)
    } catch {
      throw new DriverError('local', `OCF agent ${this.config.agent} is not installed here (${this.program})`)
    }
    const [provider, type] = this.config.agent.split(':') as [string, string]
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      OCF_ROOT: this.config.ocfRoot,
      OCF_RA_VERSION_MAJOR: '1',
      OCF_RA_VERSION_MINOR: '1',
      OCF_RESOURCE_INSTANCE: this.resourceId,
      OCF_RESOURCE_TYPE: type,
      OCF_RESOURCE_PROVIDER: provider,
      OCF_RESKEY_CRM_meta_timeout: String(this.actionTimeouts[action]),
    }
    for (const [k, v] of Object.entries(this.config.params))
      env[`OCF_RESKEY_${k}`] = v === true ? 'true' : v === false ? 'false' : String(v)
    const r = await runCommand([this.program, action], {
      env,
      timeoutMs: this.actionTimeouts[action],
      signal: ctx.signal,
    })
    if (r.notStarted) throw new DriverError('local', `cannot run ${this.program}: ${r.stderr}`)
    if (r.killed) throw new DriverError('transient', `${this.config.agent} ${action} did not finish in time`)
    const code = r.code ?? OCF.ERR_GENERIC
    const why = () => r.stderr.trim().split('\n').filter(Boolean).at(-1) ?? `exit ${code}`
    if (code === OCF.ERR_ARGS || code === OCF.ERR_UNIMPLEMENTED || code === OCF.ERR_CONFIGURED)
      throw new DriverError('config', `${this.config.agent} ${action}: ${why()} (OCF exit ${code})`)
    if (code === OCF.ERR_PERM || code === OCF.ERR_INSTALLED)
      throw new DriverError('local', `${this.config.agent} ${action}: ${why()} (OCF exit ${code})`)
    return code
  }

  async monitor(ctx: ActionContext): Promise<MonitorResult> {
    const code = await this.call('monitor', ctx)
    if (code === OCF.SUCCESS || code === OCF.RUNNING_PROMOTED)
      return { state: 'running', detail: code === OCF.RUNNING_PROMOTED ? 'running (promoted)' : 'running' }
    if (code === OCF.NOT_RUNNING)
      return this.expectRunning
        ? { state: 'failed', detail: 'not running, but it was started and not stopped' }
        : { state: 'stopped', detail: 'not running' }
    return { state: 'failed', detail: `monitor exit ${code}` }
  }

  async start(ctx: ActionContext): Promise<void> {
    const code = await this.call('start', ctx)
    if (code !== OCF.SUCCESS) throw new DriverError('transient', `${this.config.agent} start: exit ${code}`)
    this.expectRunning = true
  }

  async stop(ctx: ActionContext): Promise<void> {
    const code = await this.call('stop', ctx)
    if (code !== OCF.SUCCESS && code !== OCF.NOT_RUNNING)
      throw new DriverError('transient', `${this.config.agent} stop: exit ${code}`)
    this.expectRunning = false
  }
}

export const ocfDriver: DriverFactory<typeof ocfConfigSchema> = {
  name: 'ocf',
  description:
    'Any OCF resource agent (resource-agents: IPaddr2, apache, Filesystem, ...) with its exit codes mapped',
  configSchema: ocfConfigSchema,
  create: (config, env) => new OcfDriver(config, env.resourceId),
}
