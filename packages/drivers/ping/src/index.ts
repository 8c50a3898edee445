import type { ActionContext, Driver, DriverFactory, MonitorResult } from '@vigil/driver-kit'
import { runCommand } from '@vigil/kit'
import { z } from 'zod'

export const pingConfigSchema = z.strictObject({
  /** Addresses to reach: the gateway, peers, a router beyond the switch (like pingd's host_list). */
  targets: z
    .array(z.string().regex(/^[A-Za-z0-9.:-]{1,253}$/, 'must be an IP address or host name'))
    .min(1)
    .max(32),
  /** Fewer reachable targets than this is failed (default: at least one). */
  minReachable: z.number().int().min(1).default(1),
  /** Per probe: one ICMP echo, this long to answer. */
  timeoutMs: z.number().int().min(100).max(10_000).default(1000),
  ping: z.string().default('ping'),
})
export type PingConfig = z.output<typeof pingConfigSchema>

/**
 * Reachability of configured addresses by ICMP echo (the `ping` program), reported as a count and
 * per target. The hub scores hosts by it (pingd-like: prefer the host that reaches more), and a
 * host below `minReachable` is failed.
 */
class PingDriver implements Driver {
  readonly capabilities = [] as const
  readonly timeouts

  constructor(private readonly config: PingConfig) {
    this.timeouts = { monitor: config.timeoutMs + 2000, start: 1000, stop: 1000, restart: 1000 }
  }

  async monitor(ctx: ActionContext): Promise<MonitorResult> {
    const c = this.config
    const wait = Math.max(1, Math.ceil(c.timeoutMs / 1000))
    const results = await Promise.all(
      c.targets.map(async (target) => {
        const r = await runCommand([c.ping, '-n', '-c', '1', '-W', String(wait), target], {
          timeoutMs: c.timeoutMs + 1000,
          signal: ctx.signal,
        })
        return { target, reachable: r.code === 0 }
      }),
    )
    const reachable = results.filter((r) => r.reachable).length
    const metrics: Record<string, number> = { reachable, total: c.targets.length }
    for (const r of results) metrics[`target:${r.target}`.slice(0, 64)] = r.reachable ? 1 : 0
    const missing = results.filter((r) => !r.reachable).map((r) => r.target)
    const detail = `${reachable} of ${c.targets.length} reachable${missing.length > 0 ? ` (not: ${missing.join(', ')})` : ''}`
    return { state: reachable >= c.minReachable ? 'running' : 'failed', detail, metrics }
  }
}

export const pingDriver: DriverFactory<typeof pingConfigSchema> = {
  name: 'ping',
  description:
    'Reachability of configured addresses (gateway, peers) by ICMP echo, as a count and per target',
  configSchema: pingConfigSchema,
  create: (config) => new PingDriver(config),
}
