import {
  type FenceContext,
  type FenceDevice,
  type FenceDriverFactory,
  FenceError,
  type Outlet,
  type PowerState,
} from '@vigil/fence-kit'
import { readSecretFile } from '@vigil/kit'
import snmp from 'net-snmp'
import { z } from 'zod'

/** PowerNet-MIB rPDU subtree (APC AP79xx, AP86xx and compatibles). */
const RPDU = '1.3.6.1.4.1.318.1.1.12'
const OID = {
  outletCount: `${RPDU}.3.1.4.0`,
  /** rPDUOutletControlOutletCommand: 1 immediateOn, 2 immediateOff, 3 immediateReboot. */
  command: (n: number) => `${RPDU}.3.3.1.1.4.${n}`,
  /** rPDUOutletStatusOutletState: 1 on, 2 off. */
  state: (n: number) => `${RPDU}.3.5.1.1.4.${n}`,
  names: `${RPDU}.3.5.1.1.2`,
}
const COMMAND = { on: 1, off: 2, reboot: 3 } as const

export const apcSnmpConfigSchema = z
  .strictObject({
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535).default(161),
    version: z.enum(['1', '2c', '3']).default('3'),
    /** v1/v2c: file holding the write community. */
    communityFile: z.string().min(1).optional(),
    /** v3: user-based security (recommended: v1/v2c send the community in clear text). */
    v3: z
      .strictObject({
        user: z.string().min(1),
        level: z.enum(['authPriv', 'authNoPriv']).default('authPriv'),
        authProtocol: z.enum(['sha', 'sha256', 'sha512', 'md5']).default('sha'),
        authKeyFile: z.string().min(1),
        privProtocol: z.enum(['aes', 'aes256b', 'des']).default('aes'),
        privKeyFile: z.string().min(1).optional(),
        context: z.string().default(''),
      })
      .optional(),
    /** Per-request timeout and retries. */
    requestTimeoutMs: z.number().int().min(100).max(30_000).default(1000),
    retries: z.number().int().min(0).max(5).default(1),
  })
  .superRefine((c, ctx) => {
    if (c.version === '3' && !c.v3)
      ctx.addIssue({ code: 'custom', path: ['v3'], message: 'version 3 needs v3.user and v3.authKeyFile' })
    if (c.version !== '3' && !c.communityFile)
      ctx.addIssue({
        code: 'custom',
        path: ['communityFile'],
        message: `version ${c.version} needs a communityFile`,
      })
    if (c.v3?.level === 'authPriv' && !c.v3.privKeyFile)
      ctx.addIssue({ code: 'custom', path: ['v3', 'privKeyFile'], message: 'authPriv needs a privKeyFile' })
  })
export type ApcSnmpConfig = z.output<typeof apcSnmpConfigSchema>

type Varbind = snmp.Varbind

/**
 * Switches APC rack PDU outlets over SNMP. A host fed by two outlets (dual power supplies) lists
 * both as its plugs; the hub confirms it off only when both read off.
 *
 * SNMP v1/v2c agents do not answer a wrong community at all, so with them a wrong community looks
 * exactly like an unreachable PDU; v3 answers wrong credentials with an error (reported as auth).
 */
class ApcSnmpDevice implements FenceDevice {
  readonly needsPlug = true
  readonly canPowerOn = true
  readonly timeouts
  private readonly session: snmp.Session

  constructor(private readonly config: ApcSnmpConfig) {
    const request = config.requestTimeoutMs * (config.retries + 1)
    this.timeouts = {
      status: request + 1000,
      off: request + 1000,
      on: request + 1000,
      reboot: request + 1000,
      list: request * 4 + 1000,
      monitor: request + 1000,
    }
    const options = {
      port: config.port,
      timeout: config.requestTimeoutMs,
      retries: config.retries,
      idBitsSize: 32 as const,
    }
    if (config.version === '3' && config.v3) {
      const v3 = config.v3
      const user: snmp.User = {
        name: v3.user,
        level: v3.level === 'authPriv' ? snmp.SecurityLevel.authPriv : snmp.SecurityLevel.authNoPriv,
        authProtocol: snmp.AuthProtocols[v3.authProtocol],
        authKey: readSecretFile(v3.authKeyFile, 'v3.authKeyFile'),
      }
      if (v3.privKeyFile) {
        user.privProtocol = snmp.PrivProtocols[v3.privProtocol]
        user.privKey = readSecretFile(v3.privKeyFile, 'v3.privKeyFile')
      }
      this.session = snmp.createV3Session(config.host, user, { ...options, context: v3.context })
    } else {
      const community = readSecretFile(config.communityFile as string, 'communityFile')
      this.session = snmp.createSession(config.host, community, {
        ...options,
        version: config.version === '1' ? snmp.Version1 : snmp.Version2c,
      })
    }
    // Errors are reported per request; a socket error must not crash the hub.
    this.session.on('error', () => {})
  }

  private where(): string {
    return `${this.config.host}:${this.config.port}`
  }

  private fail(err: unknown): FenceError {
    const e = err as Error & { status?: number }
    const name = e?.name ?? ''
    if (name === 'RequestTimedOutError')
      return new FenceError('unreachable', `no answer from the PDU at ${this.where()}`, { cause: err })
    if (
      name === 'ResponseInvalidError' ||
      (name === 'RequestFailedError' &&
        (e.status === snmp.ErrorStatus.NoAccess || e.status === snmp.ErrorStatus.AuthorizationError))
    )
      return new FenceError('auth', `the PDU at ${this.where()} refused the credentials: ${e.message}`, {
        cause: err,
      })
    if (name === 'RequestFailedError')
      return new FenceError('config', `the PDU at ${this.where()} refused the request: ${e.message}`, {
        cause: err,
      })
    return new FenceError('unreachable', `PDU at ${this.where()}: ${e?.message ?? String(err)}`, {
      cause: err,
    })
  }

  private request(fn: (cb: snmp.GetSetCallback) => void): Promise<Varbind[]> {
    return new Promise((resolve, reject) => {
      try {
        fn((err, vbs) => {
          if (err || !vbs) return reject(this.fail(err))
          for (const vb of vbs) {
            if (snmp.isVarbindError(vb))
              return reject(
                new FenceError(
                  'config',
                  `the PDU at ${this.where()} has no ${vb.oid}: ${snmp.varbindError(vb)}`,
                ),
              )
          }
          resolve(vbs)
        })
      } catch (err) {
        reject(this.fail(err))
      }
    })
  }

  private async outletNumber(plug: string | null, ctx: FenceContext): Promise<number> {
    if (plug === null) throw new FenceError('config', 'an APC PDU needs the outlet (plug) of the host')
    if (/^\d+$/.test(plug)) return Number(plug)
    const found = (await this.list(ctx)).find((o) => o.name === plug)
    if (!found) throw new FenceError('config', `the PDU at ${this.where()} has no outlet named "${plug}"`)
    return Number(found.plug)
  }

  async status(plug: string | null, ctx: FenceContext): Promise<PowerState> {
    const n = await this.outletNumber(plug, ctx)
    const [vb] = await this.request((cb) => this.session.get([OID.state(n)], cb))
    if (vb?.value === 1) return 'on'
    if (vb?.value === 2) return 'off'
    throw new FenceError('unreachable', `outlet ${n} reports state ${String(vb?.value)}`)
  }

  private async command(plug: string | null, what: keyof typeof COMMAND, ctx: FenceContext): Promise<void> {
    const n = await this.outletNumber(plug, ctx)
    await this.request((cb) =>
      this.session.set([{ oid: OID.command(n), type: snmp.ObjectType.Integer, value: COMMAND[what] }], cb),
    )
  }

  off(plug: string | null, ctx: FenceContext): Promise<void> {
    return this.command(plug, 'off', ctx)
  }

  on(plug: string | null, ctx: FenceContext): Promise<void> {
    return this.command(plug, 'on', ctx)
  }

  reboot(plug: string | null, ctx: FenceContext): Promise<void> {
    return this.command(plug, 'reboot', ctx)
  }

  list(_ctx: FenceContext): Promise<Outlet[]> {
    return new Promise((resolve, reject) => {
      const outlets: Outlet[] = []
      this.session.subtree(
        OID.names,
        20,
        (vbs: Varbind[]): void => {
          for (const vb of vbs) {
            if (snmp.isVarbindError(vb)) continue
            outlets.push({ plug: vb.oid.split('.').at(-1) as string, name: String(vb.value) })
          }
        },
        (err: Error | null) => (err ? reject(this.fail(err)) : resolve(outlets)),
      )
    })
  }

  async monitor(_ctx: FenceContext): Promise<void> {
    await this.request((cb) => this.session.get([OID.outletCount], cb))
  }

  async close(): Promise<void> {
    this.session.close()
  }
}

export const apcSnmpDriver: FenceDriverFactory<typeof apcSnmpConfigSchema> = {
  name: 'apc-snmp',
  description: 'APC rack PDU outlets over SNMP v1, v2c or v3 (PowerNet-MIB rPDUOutletControl)',
  configSchema: apcSnmpConfigSchema,
  create: (config) => new ApcSnmpDevice(config),
}
