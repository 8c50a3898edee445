import { accessSync, constants } from 'node:fs'
import { join } from 'node:path'
import {
  type FenceContext,
  type FenceDevice,
  type FenceDriverFactory,
  FenceError,
  type FenceOp,
  type Outlet,
  type PowerState,
} from '@vigil/fence-kit'
import { readSecretFile, runCommand } from '@vigil/kit'
import { z } from 'zod'

/** Keys Vigil sets itself on every call; a config may not override them. */
const RESERVED = new Set(['action', 'plug', 'port', 'password', 'passwd'])

export const fenceAgentsConfigSchema = z.strictObject({
  /** The fence-agents program, e.g. fence_ipmilan, fence_apc_snmp, fence_virsh, fence_redfish. */
  agent: z.string().regex(/^fence_[a-z0-9_]+$/, 'must be a fence-agents program name such as fence_ipmilan'),
  /** Its options as on its stdin (see `<agent> -o metadata`), without action, plug and password. */
  options: z
    .record(
      z.string().regex(/^[a-z][a-z0-9_-]*$/, 'option names are lower-case words'),
      z.union([z.string().regex(/^[^\n\r]*$/, 'must be one line'), z.number(), z.boolean()]),
    )
    .refine((o) => !Object.keys(o).some((k) => RESERVED.has(k)), {
      message: 'action, plug/port and password are set by Vigil (use passwordFile for the password)',
    })
    .default({}),
  /** File holding the device password, passed as `password=` on stdin (never on the command line). */
  passwordFile: z.string().min(1).optional(),
  /** Where to look for the program. */
  searchPath: z.array(z.string()).default(['/usr/sbin', '/usr/bin', '/sbin']),
  /** Fence agents retry and wait themselves; these bound each call. */
  timeoutMs: z
    .strictObject({
      status: z.number().int().positive().default(30_000),
      off: z.number().int().positive().default(60_000),
      on: z.number().int().positive().default(60_000),
      reboot: z.number().int().positive().default(90_000),
      list: z.number().int().positive().default(30_000),
      monitor: z.number().int().positive().default(30_000),
    })
    .prefault({}),
})
export type FenceAgentsConfig = z.output<typeof fenceAgentsConfigSchema>

/**
 * The fence-agents library's own error messages (fencing.py), mapped to what Vigil may do next.
 * Some agents (fence_vmware_soap) report every failed login as "Unable to connect/login", after a
 * line with the cause: a refused connection or a timeout there is `unreachable`, not `auth`.
 */
const UNREACHABLE =
  /Connection timed out|Connection lost|Unable to connect to|No route to host|Network is unreachable|refused|\btimed out\b/i
const STILL_ON = /Timed out waiting to power OFF/i
const REFUSED =
  /Unable to connect\/login|Unable to obtain correct plug status|Invalid password|Login denied|authentication/i
const BAD_OPTION = /Failed: (You have to|Unable to parse|Invalid)|required/i

/**
 * Runs any installed fence-agents program with the stdin key=value protocol Pacemaker's fencer
 * uses, so every device those agents support (70+) works with Vigil. Exit codes: 0 success (status:
 * on), 2 status off, anything else failure, told apart by the agent's error message.
 */
class FenceAgentDevice implements FenceDevice {
  readonly needsPlug: boolean
  readonly canPowerOn = true
  readonly timeouts: Readonly<Record<FenceOp, number>>
  private readonly program: string
  private readonly password: string | null

  constructor(private readonly config: FenceAgentsConfig) {
    this.timeouts = config.timeoutMs
    const found = config.searchPath.map((d) => join(d, config.agent)).find(isExecutable)
    if (!found)
      throw new FenceError('config', `${config.agent} is not installed in ${config.searchPath.join(':')}`)
    this.program = found
    this.password = config.passwordFile ? readSecretFile(config.passwordFile, 'passwordFile') : null
    // Agents for devices that switch many hosts (PDUs, hypervisors, switches) take a plug.
    this.needsPlug = !/^fence_(ipmilan|ipmilanplus|idrac|ilo\d?|ilo_ssh|imm|redfish|amt|sbd|kdump)$/.test(
      config.agent,
    )
  }

  private async call(action: string, plug: string | null, ctx: FenceContext, timeoutMs: number) {
    const lines = [`action=${action}`]
    for (const [k, v] of Object.entries(this.config.options))
      lines.push(`${k}=${v === true ? '1' : v === false ? '0' : String(v)}`)
    if (this.password !== null) lines.push(`password=${this.password}`)
    if (plug !== null) lines.push(`plug=${plug}`)
    const r = await runCommand([this.program], {
      input: `${lines.join('\n')}\n`,
      env: { ...process.env, PYTHONWARNINGS: 'ignore' },
      timeoutMs,
      signal: ctx.signal,
    })
    if (r.notStarted) throw new FenceError('config', `cannot run ${this.program}: ${r.stderr}`)
    if (r.killed)
      throw new FenceError('unreachable', `${this.config.agent} ${action}: no answer within its time`)
    return r
  }

  private failure(action: string, r: { code: number | null; stdout: string; stderr: string }): FenceError {
    const text = `${r.stderr}\n${r.stdout}`
    const why =
      text
        .split('\n')
        .map((l) => l.replace(/^.*?(ERROR|WARNING): /, '').trim())
        .filter((l) => l && !/Deprecat|from pipes/.test(l))
        .at(-1) ?? `exit ${r.code}`
    const message = `${this.config.agent} ${action}: ${why}`
    if (STILL_ON.test(text)) return new FenceError('still-on', message)
    if (UNREACHABLE.test(text)) return new FenceError('unreachable', message)
    if (REFUSED.test(text)) return new FenceError('auth', message)
    if (BAD_OPTION.test(text)) return new FenceError('config', message)
    return new FenceError('unreachable', message)
  }

  async status(plug: string | null, ctx: FenceContext): Promise<PowerState> {
    const r = await this.call('status', plug, ctx, this.timeouts.status)
    if (r.code === 0) return 'on'
    if (r.code === 2) return 'off'
    throw this.failure('status', r)
  }

  private async act(action: 'on' | 'off' | 'reboot', plug: string | null, ctx: FenceContext): Promise<void> {
    const r = await this.call(action, plug, ctx, this.timeouts[action])
    if (r.code !== 0) throw this.failure(action, r)
  }

  off(plug: string | null, ctx: FenceContext): Promise<void> {
    return this.act('off', plug, ctx)
  }

  on(plug: string | null, ctx: FenceContext): Promise<void> {
    return this.act('on', plug, ctx)
  }

  reboot(plug: string | null, ctx: FenceContext): Promise<void> {
    return this.act('reboot', plug, ctx)
  }

  /** `action=list` prints "plug,name" lines; agents without plugs print a NOTICE instead. */
  async list(ctx: FenceContext): Promise<Outlet[]> {
    if (!this.needsPlug) return []
    const r = await this.call('list', null, ctx, this.timeouts.list)
    if (r.code !== 0) throw this.failure('list', r)
    return r.stdout
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.includes(',') && !l.startsWith('NOTICE'))
      .map((l) => {
        const [plug = '', name = ''] = l.split(',')
        return { plug, name: name || plug }
      })
  }

  async monitor(ctx: FenceContext): Promise<void> {
    const r = await this.call('monitor', null, ctx, this.timeouts.monitor)
    if (r.code !== 0) throw this.failure('monitor', r)
  }
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

export const fenceAgentsDriver: FenceDriverFactory<typeof fenceAgentsConfigSchema> = {
  name: 'fence-agents',
  description: 'Any installed ClusterLabs fence-agents program (fence_ipmilan, fence_apc_snmp, 70+ more)',
  configSchema: fenceAgentsConfigSchema,
  create: (config) => new FenceAgentDevice(config),
}
