import { createHash } from 'node:crypto'
import {
  type FenceContext,
  type FenceDevice,
  type FenceDriverFactory,
  FenceError,
  type PowerState,
} from '@vigil/fence-kit'
import { readConfigFile } from '@vigil/kit'
import { Client, type ConnectConfig } from 'ssh2'
import { z } from 'zod'

export const sshConfigSchema = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(22),
  username: z.string().min(1),
  privateKeyFile: z.string().min(1),
  /** The target's host key as `ssh-keygen -lf` prints it ("SHA256:..."): pinned, never trusted on first use. */
  hostKeySha256: z
    .string()
    .regex(/^SHA256:[A-Za-z0-9+/]{43}$/, 'must look like SHA256:<43 base64 characters>'),
  /** Run on the target to take it down at once (sysrq "o" is an immediate power-off). */
  offCommand: z.string().min(1).default('echo o > /proc/sysrq-trigger'),
  /** Run on the target to tell that it is up; exit 0 means on. */
  statusCommand: z.string().min(1).default('true'),
  connectTimeoutMs: z.number().int().min(100).max(60_000).default(3000),
  /**
   * Read "no ssh answer" as "off". Unsafe: a partitioned host looks the same as a dead one, which
   * is why ssh fencing is for tests and last resort only (and why this is off by default: without
   * it, ssh can take a host down but never confirms it, so a later level must).
   */
  unsafeConfirmWhenUnreachable: z.boolean().default(false),
})
export type SshConfig = z.output<typeof sshConfigSchema>

type Exec = { code: number | null; dropped: boolean }

/**
 * Fencing by running a command on the target over ssh. For tests and last resort only: a host
 * that has lost its network, or hangs, cannot be reached this way, which is when fencing matters,
 * and a reboot command on a host that comes back can start a fencing loop.
 */
class SshDevice implements FenceDevice {
  readonly needsPlug = false
  readonly canPowerOn = false
  readonly timeouts
  private readonly key: Buffer

  constructor(private readonly config: SshConfig) {
    this.key = readConfigFile(config.privateKeyFile, 'privateKeyFile')
    const t = config.connectTimeoutMs + 3000
    this.timeouts = { status: t, off: t, on: 1000, reboot: 1000, list: 1000, monitor: t }
  }

  private where(): string {
    return `${this.config.username}@${this.config.host}:${this.config.port}`
  }

  /** Connects, runs one command, and reports its exit code, or that the connection dropped. */
  private run(command: string, ctx: FenceContext): Promise<Exec> {
    const c = this.config
    return new Promise((resolve, reject) => {
      const client = new Client()
      let settled = false
      const finish = (fn: () => void) => {
        if (settled) return
        settled = true
        ctx.signal.removeEventListener('abort', onAbort)
        client.end()
        fn()
      }
      const onAbort = () =>
        finish(() => reject(new FenceError('unreachable', `${this.where()}: no answer in time`)))
      ctx.signal.addEventListener('abort', onAbort, { once: true })
      let hostKeyMismatch = false
      let commandSent = false
      client.on('ready', () => {
        commandSent = true
        client.exec(command, (err, stream) => {
          if (err)
            return finish(() => reject(new FenceError('unreachable', `${this.where()}: ${err.message}`)))
          stream.resume()
          stream.stderr.resume()
          stream.on('close', (code: number | null) => finish(() => resolve({ code, dropped: false })))
        })
      })
      client.on('close', () => finish(() => resolve({ code: null, dropped: true })))
      client.on('error', (err: Error & { level?: string; code?: string }) =>
        finish(() => {
          // The host went down under the session that was taking it down.
          if (commandSent) return resolve({ code: null, dropped: true })
          if (hostKeyMismatch)
            return reject(
              new FenceError('auth', `${this.where()}: host key does not match ${c.hostKeySha256}`),
            )
          if (err.level === 'client-authentication')
            return reject(new FenceError('auth', `${this.where()} refused the key: ${err.message}`))
          reject(new FenceError('unreachable', `${this.where()}: ${err.message}`, { cause: err }))
        }),
      )
      const options: ConnectConfig = {
        host: c.host,
        port: c.port,
        username: c.username,
        privateKey: this.key,
        readyTimeout: c.connectTimeoutMs,
        hostVerifier: (key: Buffer) => {
          const seen = `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`
          hostKeyMismatch = seen !== c.hostKeySha256
          return !hostKeyMismatch
        },
      }
      client.connect(options)
    })
  }

  async status(_plug: string | null, ctx: FenceContext): Promise<PowerState> {
    try {
      const r = await this.run(this.config.statusCommand, ctx)
      if (r.code === 0) return 'on'
      throw new FenceError(
        'unreachable',
        `${this.where()}: status command ${r.dropped ? 'was cut off' : `exited ${r.code}`}`,
      )
    } catch (err) {
      if (this.config.unsafeConfirmWhenUnreachable && err instanceof FenceError && err.kind === 'unreachable')
        return 'off'
      throw err
    }
  }

  async off(_plug: string | null, ctx: FenceContext): Promise<void> {
    // The connection dropping is what success usually looks like: the host went down under it.
    // Off of a host that is already off: only with the unsafe reading can ssh know it is.
    if (this.config.unsafeConfirmWhenUnreachable && (await this.status(null, ctx)) === 'off') return
    let r: Exec
    try {
      r = await this.run(this.config.offCommand, ctx)
    } catch (err) {
      // It went down between the status read and the off (an earlier off landing): under the unsafe
      // reading, no answer is off.
      if (this.config.unsafeConfirmWhenUnreachable && err instanceof FenceError && err.kind === 'unreachable')
        return
      throw err
    }
    if (!r.dropped && r.code !== 0)
      throw new FenceError('config', `${this.where()}: off command exited ${r.code}`)
    // The command takes the host down asynchronously. Under the unsafe reading, wait (within this
    // operation's time) until the host stops answering, so off then status reads off.
    while (this.config.unsafeConfirmWhenUnreachable && !ctx.signal.aborted) {
      if ((await this.status(null, ctx)) === 'off') return
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }

  async on(): Promise<void> {
    throw new FenceError('config', 'ssh cannot power a host on')
  }

  async reboot(): Promise<void> {
    throw new FenceError('config', 'ssh fencing only takes hosts down (no reboot: fencing loops)')
  }

  async list(): Promise<[]> {
    return []
  }

  async monitor(ctx: FenceContext): Promise<void> {
    await this.status(null, ctx)
  }
}

export const sshDriver: FenceDriverFactory<typeof sshConfigSchema> = {
  name: 'ssh',
  description: 'Runs a power-off command on the target over ssh; for tests and last resort only',
  configSchema: sshConfigSchema,
  create: (config) => new SshDevice(config),
}
