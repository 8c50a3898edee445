import {
  type FenceContext,
  type FenceDevice,
  type FenceDriverFactory,
  FenceError,
  type Outlet,
  type PowerState,
} from '@vigil/fence-kit'
import { runCommand } from '@vigil/kit'
import { z } from 'zod'

export const libvirtConfigSchema = z.strictObject({
  /** libvirt connection: local (`qemu:///system`) or remote (`qemu+ssh://fence@host/system?keyfile=...`). */
  uri: z
    .string()
    .regex(/^[a-z0-9+]+:\/\/[^\s]*$/, 'must be a libvirt URI such as qemu:///system')
    .default('qemu:///system'),
  virsh: z.string().default('virsh'),
  /** Per virsh call. */
  timeoutMs: z.number().int().min(500).max(120_000).default(10_000),
})
export type LibvirtConfig = z.output<typeof libvirtConfigSchema>

/** Domain states that mean the guest's CPUs may still touch its disks. */
const OFF_STATES = new Set(['shut off', 'crashed'])

/**
 * VM-level fencing through libvirt, like fence_virsh: `virsh destroy` (an immediate power-off of
 * the guest) and `virsh domstate` to read it back. The plug is the domain name. For clusters whose
 * members are guests (in-guest applications), and for the lab.
 */
class LibvirtDevice implements FenceDevice {
  readonly needsPlug = true
  readonly canPowerOn = true
  readonly timeouts

  constructor(private readonly config: LibvirtConfig) {
    const t = config.timeoutMs + 1000
    this.timeouts = { status: t, off: t, on: t * 2, reboot: t * 3, list: t, monitor: t }
  }

  private async virsh(args: string[], ctx: FenceContext): Promise<string> {
    const r = await runCommand([this.config.virsh, '-c', this.config.uri, ...args], {
      timeoutMs: this.config.timeoutMs,
      signal: ctx.signal,
    })
    if (r.notStarted) throw new FenceError('config', `cannot run ${this.config.virsh}: ${r.stderr}`)
    if (r.killed) throw new FenceError('unreachable', `${this.config.uri}: no answer from libvirt`)
    if (r.code === 0) return r.stdout
    const why = r.stderr.trim().split('\n').filter(Boolean).at(-1) ?? `exit ${r.code}`
    if (/authentication|permission denied|access denied/i.test(r.stderr))
      throw new FenceError('auth', `${this.config.uri}: ${why}`)
    if (/failed to get domain|Domain not found|no domain with matching name/i.test(r.stderr))
      throw new FenceError('config', `${this.config.uri}: ${why}`)
    // Reported with the operation's own meaning by the callers below.
    throw Object.assign(new FenceError('unreachable', `${this.config.uri}: ${why}`), { stderr: r.stderr })
  }

  private domain(plug: string | null): string {
    if (plug === null) throw new FenceError('config', 'libvirt fencing needs the domain name as its plug')
    return plug
  }

  async status(plug: string | null, ctx: FenceContext): Promise<PowerState> {
    const state = (await this.virsh(['domstate', this.domain(plug)], ctx)).trim()
    return OFF_STATES.has(state) ? 'off' : 'on'
  }

  async off(plug: string | null, ctx: FenceContext): Promise<void> {
    try {
      await this.virsh(['destroy', this.domain(plug)], ctx)
    } catch (err) {
      if (/domain is not running/i.test((err as { stderr?: string }).stderr ?? '')) return
      throw err
    }
  }

  async on(plug: string | null, ctx: FenceContext): Promise<void> {
    try {
      await this.virsh(['start', this.domain(plug)], ctx)
    } catch (err) {
      if (/already active/i.test((err as { stderr?: string }).stderr ?? '')) return
      throw err
    }
  }

  async reboot(plug: string | null, ctx: FenceContext): Promise<void> {
    await this.off(plug, ctx)
    await this.on(plug, ctx)
  }

  async list(ctx: FenceContext): Promise<Outlet[]> {
    const out = await this.virsh(['list', '--all', '--name'], ctx)
    return out
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .map((name) => ({ plug: name, name }))
  }

  async monitor(ctx: FenceContext): Promise<void> {
    await this.virsh(['version'], ctx)
  }
}

export const libvirtDriver: FenceDriverFactory<typeof libvirtConfigSchema> = {
  name: 'libvirt',
  description: 'Guest power-off through libvirt (virsh destroy, read back with domstate), local or qemu+ssh',
  configSchema: libvirtConfigSchema,
  create: (config) => new LibvirtDevice(config),
}
