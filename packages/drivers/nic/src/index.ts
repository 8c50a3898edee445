import { type ChildProcess, spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ActionContext, Driver, DriverFactory, MonitorResult } from '@vigil/driver-kit'
import { z } from 'zod'

export const nicConfigSchema = z.strictObject({
  /** Interface name, e.g. eth0, bond0, ens3. */
  interface: z
    .string()
    .regex(/^[A-Za-z0-9_.:@-]{1,15}$/, 'must be an interface name (at most 15 characters)'),
  /** A bond with fewer slaves up than this is degraded (default: all of them). */
  minSlavesUp: z.number().int().min(1).optional(),
  /** More carrier changes than this within `flapWindowMs` is a flapping link: degraded. */
  maxCarrierChanges: z.number().int().min(1).default(4),
  flapWindowMs: z.number().int().min(1000).default(60_000),
  /** Where the kernel describes bonds (tests point it at a copy). */
  bondingDir: z.string().default('/proc/net/bonding'),
  sysClassNet: z.string().default('/sys/class/net'),
  /** Notice link changes by netlink events (`ip -o monitor link`), not only by polling. */
  events: z.boolean().default(true),
})
export type NicConfig = z.output<typeof nicConfigSchema>

export interface BondSlave {
  name: string
  up: boolean
}

/** Parses /proc/net/bonding/<bond>: each "Slave Interface:" and the "MII Status:" that follows it. */
export function parseBonding(text: string): BondSlave[] {
  const slaves: BondSlave[] = []
  let current: BondSlave | null = null
  for (const line of text.split('\n')) {
    const slave = /^Slave Interface:\s*(\S+)/.exec(line)
    if (slave) {
      current = { name: slave[1] as string, up: false }
      slaves.push(current)
      continue
    }
    const mii = /^MII Status:\s*(\S+)/.exec(line)
    if (mii && current) current.up = mii[1] === 'up'
  }
  return slaves
}

async function readText(file: string): Promise<string | null> {
  try {
    return (await readFile(file, 'utf8')).trim()
  } catch {
    return null
  }
}

/**
 * A network interface's health: operstate and carrier, carrier changes (flapping), speed, error
 * counters, and for a bond the state of each slave. Monitor only. `failed` when the link is down
 * or has no carrier; `running` with `degraded` = 1 (a metric and the detail) when a bond lost a
 * slave or the link flaps: still up, but the hub places resources elsewhere first.
 */
class NicDriver implements Driver {
  readonly capabilities = [] as const
  readonly timeouts = { monitor: 2000, start: 1000, stop: 1000, restart: 1000 }
  private readonly changes: { at: number; count: number }[] = []
  private monitorProcess: ChildProcess | null = null
  private closed = false

  constructor(private readonly config: NicConfig) {}

  async monitor(_ctx: ActionContext): Promise<MonitorResult> {
    const c = this.config
    const dir = join(c.sysClassNet, c.interface)
    const operstate = await readText(join(dir, 'operstate'))
    if (operstate === null) return { state: 'failed', detail: `${c.interface}: no such interface` }
    // carrier cannot be read while the interface is administratively down (EINVAL).
    const carrier = (await readText(join(dir, 'carrier'))) === '1'
    const num = async (f: string) => Number((await readText(join(dir, f))) ?? Number.NaN)
    const carrierChanges = await num('carrier_changes')
    const metrics: Record<string, number> = {
      up: 0,
      carrier: carrier ? 1 : 0,
      degraded: 0,
    }
    if (Number.isFinite(carrierChanges)) metrics.carrier_changes = carrierChanges
    const speed = await num('speed')
    if (Number.isFinite(speed) && speed > 0) metrics.speed_mbps = speed
    for (const counter of ['rx_errors', 'tx_errors', 'rx_dropped', 'tx_dropped']) {
      const v = await num(join('statistics', counter))
      if (Number.isFinite(v)) metrics[counter] = v
    }
    // "unknown" is what virtual links without operstate support report (lo, some veths): carrier decides.
    if (!(operstate === 'up' || (operstate === 'unknown' && carrier)) || !carrier)
      return {
        state: 'failed',
        detail: `${c.interface}: ${operstate}${carrier ? '' : ', no carrier'}`,
        metrics,
      }
    metrics.up = 1

    const problems: string[] = []
    const bonding = await readText(join(c.bondingDir, c.interface))
    if (bonding !== null) {
      const slaves = parseBonding(bonding)
      const up = slaves.filter((s) => s.up)
      metrics.slaves = slaves.length
      metrics.slaves_up = up.length
      const needed = c.minSlavesUp ?? slaves.length
      if (up.length === 0) return { state: 'failed', detail: `${c.interface}: no bond slave up`, metrics }
      if (up.length < needed)
        problems.push(
          `bond slave ${slaves
            .filter((s) => !s.up)
            .map((s) => s.name)
            .join(', ')} down (${up.length} of ${slaves.length} up)`,
        )
    }
    if (Number.isFinite(carrierChanges)) {
      const now = Date.now()
      this.changes.push({ at: now, count: carrierChanges })
      while (this.changes.length > 1 && (this.changes[0] as { at: number }).at < now - c.flapWindowMs)
        this.changes.shift()
      const flaps = carrierChanges - (this.changes[0] as { count: number }).count
      if (flaps > c.maxCarrierChanges)
        problems.push(`flapping: ${flaps} carrier changes in ${c.flapWindowMs / 1000} s`)
    }
    if (problems.length > 0) {
      metrics.degraded = 1
      return { state: 'running', detail: `${c.interface} degraded: ${problems.join('; ')}`, metrics }
    }
    return {
      state: 'running',
      detail: `${c.interface} up${metrics.speed_mbps ? ` at ${metrics.speed_mbps} Mb/s` : ''}`,
      metrics,
    }
  }

  onChange(listener: () => void): void {
    if (!this.config.events) return
    const watch = () => {
      const child = spawn('ip', ['-o', 'monitor', 'link'], { stdio: ['ignore', 'pipe', 'ignore'] })
      this.monitorProcess = child
      child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
        if (chunk.includes(this.config.interface)) listener()
      })
      child.once('error', () => {})
      child.once('exit', () => {
        if (this.closed || this.monitorProcess !== child) return
        setTimeout(() => !this.closed && watch(), 1000).unref()
      })
    }
    watch()
  }

  async close(): Promise<void> {
    this.closed = true
    this.monitorProcess?.kill('SIGTERM')
    this.monitorProcess = null
  }
}

export const nicDriver: DriverFactory<typeof nicConfigSchema> = {
  name: 'nic',
  description:
    'Network interface: operstate, carrier, flapping, speed, error counters, bond slaves; netlink events',
  configSchema: nicConfigSchema,
  create: (config) => new NicDriver(config),
}
