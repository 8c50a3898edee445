import {
  type FenceContext,
  type FenceDevice,
  type FenceDriverFactory,
  FenceError,
  type PowerState,
} from '@vigil/fence-kit'
import { readSecretFile, runCommand } from '@vigil/kit'
import { z } from 'zod'

export const ipmiConfigSchema = z.strictObject({
  /** BMC address (iLO, iDRAC, DRAC, any IPMI 2.0 BMC). */
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(623),
  username: z.string().min(1),
  /** File holding the password (never put the password itself in the config). */
  passwordFile: z.string().min(1),
  /** lanplus = IPMI 2.0 RMCP+ (default); lan = IPMI 1.5, for old BMCs only. */
  interface: z.enum(['lanplus', 'lan']).default('lanplus'),
  /** RMCP+ cipher suite. 3 (AES, SHA1) is what most BMCs accept; 17 for newer ones. */
  cipherSuite: z.number().int().min(0).max(17).default(3),
  privilege: z.enum(['ADMINISTRATOR', 'OPERATOR']).default('ADMINISTRATOR'),
  /** Per-attempt timeout (ipmitool -N, seconds) and attempts (-R). */
  attemptTimeoutS: z.number().int().min(1).max(30).default(1),
  retries: z.number().int().min(1).max(10).default(2),
  ipmitool: z.string().default('ipmitool'),
})
export type IpmiConfig = z.output<typeof ipmiConfigSchema>

/** ipmitool prints the same last line for a refused login and for no answer; -v tells them apart. */
const AUTH_REFUSED = /RAKP|unauthorized name|HMAC is invalid|password|privilege level/i
const NOT_SUPPORTED = /Invalid cipher suite|Invalid command|not supported/i

/**
 * IPMI 2.0 power control through ipmitool. The password reaches ipmitool through the environment
 * (-E), never the command line, where any user could read it in the process list.
 */
class IpmiDevice implements FenceDevice {
  readonly needsPlug = false
  readonly canPowerOn = true
  readonly timeouts
  private readonly password: string

  constructor(private readonly config: IpmiConfig) {
    this.password = readSecretFile(config.passwordFile, 'passwordFile')
    const attempt = config.attemptTimeoutS * 1000 * config.retries + 2000
    this.timeouts = {
      status: attempt,
      off: attempt,
      on: attempt,
      reboot: attempt * 3 + 5000,
      list: 1000,
      monitor: attempt,
    }
  }

  private async ipmitool(args: string[], ctx: FenceContext): Promise<string> {
    const c = this.config
    const argv = [
      c.ipmitool,
      '-I',
      c.interface,
      '-H',
      c.host,
      '-p',
      String(c.port),
      '-U',
      c.username,
      '-E',
      '-L',
      c.privilege,
      '-N',
      String(c.attemptTimeoutS),
      '-R',
      String(c.retries),
      ...(c.interface === 'lanplus' ? ['-C', String(c.cipherSuite)] : []),
      '-v',
      ...args,
    ]
    const r = await runCommand(argv, {
      env: { ...process.env, IPMI_PASSWORD: this.password },
      timeoutMs: this.timeouts.status * 3,
      signal: ctx.signal,
    })
    if (r.notStarted) throw new FenceError('config', `cannot run ${c.ipmitool}: ${r.stderr}`)
    if (r.killed) throw new FenceError('unreachable', `no answer from ${c.host}:${c.port}`)
    if (r.code === 0) return r.stdout
    const why = lastLine(r.stderr) || `exit ${r.code}`
    if (AUTH_REFUSED.test(r.stderr))
      throw new FenceError('auth', `${c.host}:${c.port} refused the credentials of ${c.username}: ${why}`)
    if (NOT_SUPPORTED.test(r.stderr)) throw new FenceError('config', `${c.host}:${c.port}: ${why}`)
    throw new FenceError('unreachable', `no answer from ${c.host}:${c.port}: ${why}`)
  }

  async status(_plug: string | null, ctx: FenceContext): Promise<PowerState> {
    const out = await this.ipmitool(['chassis', 'power', 'status'], ctx)
    const m = /Chassis Power is (on|off)/i.exec(out)
    if (!m) throw new FenceError('unreachable', `unexpected answer to power status: ${lastLine(out)}`)
    return (m[1] as string).toLowerCase() as PowerState
  }

  async off(_plug: string | null, ctx: FenceContext): Promise<void> {
    await this.ipmitool(['chassis', 'power', 'off'], ctx)
  }

  async on(_plug: string | null, ctx: FenceContext): Promise<void> {
    await this.ipmitool(['chassis', 'power', 'on'], ctx)
  }

  /** Off, read back off, on: a power cycle whose off half is proven. */
  async reboot(plug: string | null, ctx: FenceContext): Promise<void> {
    await this.off(plug, ctx)
    while ((await this.status(plug, ctx)) !== 'off') {
      if (ctx.signal.aborted) throw new FenceError('still-on', 'still on after off')
      await new Promise((r) => setTimeout(r, 200))
    }
    await this.on(plug, ctx)
  }

  async list(): Promise<[]> {
    return []
  }

  async monitor(ctx: FenceContext): Promise<void> {
    await this.status(null, ctx)
  }
}

function lastLine(s: string): string {
  return s.trim().split('\n').at(-1)?.trim() ?? ''
}

export const ipmiDriver: FenceDriverFactory<typeof ipmiConfigSchema> = {
  name: 'ipmi',
  description: 'IPMI 2.0 (lanplus) BMC power control through ipmitool: iLO, iDRAC, DRAC and the rest',
  configSchema: ipmiConfigSchema,
  create: (config) => new IpmiDevice(config),
}
