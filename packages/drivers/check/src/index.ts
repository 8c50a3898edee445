import { spawn } from 'node:child_process'
import { connect } from 'node:net'
import type { ActionContext, Driver, DriverFactory, MonitorResult } from '@vigil/driver-kit'
import { z } from 'zod'

const thresholds = {
  /** Consecutive failed probes before the check reports failed (one bad probe never does). */
  failuresBeforeCritical: z.number().int().min(1).max(100).default(3),
  /** Consecutive good probes before a failed check reports running again. */
  successesBeforePassing: z.number().int().min(1).max(100).default(2),
  /** One probe's time limit. */
  timeoutMs: z.number().int().min(10).max(600_000).default(2000),
}

export const checkConfigSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('tcp'),
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(1).max(65535),
    ...thresholds,
  }),
  z.strictObject({
    kind: z.literal('http'),
    url: z.string().regex(/^https?:\/\/.+/, 'must be an http:// or https:// URL'),
    /** Acceptable status codes. */
    status: z.array(z.number().int().min(100).max(599)).min(1).default([200]),
    /** A regular expression the body must match. */
    bodyMatch: z.string().optional(),
    ...thresholds,
  }),
  z.strictObject({
    kind: z.literal('exec'),
    /** argv; exit 0 is healthy, anything else (or the timeout) is a failed probe. */
    command: z.array(z.string().min(1)).min(1),
    ...thresholds,
  }),
])
export type CheckConfig = z.output<typeof checkConfigSchema>

type Probe = { ok: true; detail: string; ms: number } | { ok: false; detail: string; ms: number }

async function probe(config: CheckConfig, signal: AbortSignal): Promise<Probe> {
  const started = performance.now()
  const done = (ok: boolean, detail: string): Probe =>
    ({ ok, detail, ms: performance.now() - started }) as Probe
  const timeout = AbortSignal.any([signal, AbortSignal.timeout(config.timeoutMs)])
  switch (config.kind) {
    case 'tcp':
      return new Promise((resolve) => {
        const socket = connect({ host: config.host, port: config.port })
        const finish = (ok: boolean, detail: string) => {
          socket.destroy()
          resolve(done(ok, detail))
        }
        socket.once('connect', () => finish(true, `connected to ${config.host}:${config.port}`))
        socket.once('error', (err) => finish(false, `${config.host}:${config.port}: ${err.message}`))
        timeout.addEventListener(
          'abort',
          () => finish(false, `${config.host}:${config.port}: no connection within ${config.timeoutMs} ms`),
          { once: true },
        )
      })
    case 'http':
      try {
        const res = await fetch(config.url, { signal: timeout, redirect: 'manual' })
        const body = await res.text()
        if (!config.status.includes(res.status)) return done(false, `${config.url}: status ${res.status}`)
        if (config.bodyMatch && !new RegExp(config.bodyMatch).test(body))
          return done(false, `${config.url}: body does not match /${config.bodyMatch}/`)
        return done(true, `${config.url}: status ${res.status}`)
      } catch (err) {
        return done(
          false,
          `${config.url}: ${timeout.aborted ? `no answer within ${config.timeoutMs} ms` : (err as Error).message}`,
        )
      }
    case 'exec':
      return new Promise((resolve) => {
        const child = spawn(config.command[0] as string, config.command.slice(1), {
          stdio: 'ignore',
          signal: timeout,
        })
        child.once('error', (err) =>
          resolve(done(false, timeout.aborted ? `no exit within ${config.timeoutMs} ms` : err.message)),
        )
        child.once('exit', (code, sig) => {
          if (timeout.aborted) return resolve(done(false, `no exit within ${config.timeoutMs} ms`))
          resolve(code === 0 ? done(true, 'exit 0') : done(false, sig ? `killed by ${sig}` : `exit ${code}`))
        })
      })
  }
}

/**
 * A health check as a monitor: running while probes pass, failed after `failuresBeforeCritical`
 * consecutive failed probes, running again after `successesBeforePassing` good ones (Consul's
 * hysteresis). Before enough probes the state is the optimistic one. Monitor only: no start/stop.
 */
class CheckDriver implements Driver {
  readonly capabilities = [] as const
  readonly timeouts
  private failing = false
  private bad = 0
  private good = 0

  constructor(private readonly config: CheckConfig) {
    this.timeouts = { monitor: config.timeoutMs + 1000, start: 1000, stop: 1000, restart: 1000 }
  }

  async monitor(ctx: ActionContext): Promise<MonitorResult> {
    const p = await probe(this.config, ctx.signal)
    if (p.ok) {
      this.good++
      this.bad = 0
      if (this.failing && this.good >= this.config.successesBeforePassing) this.failing = false
    } else {
      this.bad++
      this.good = 0
      if (!this.failing && this.bad >= this.config.failuresBeforeCritical) this.failing = true
    }
    const counts = p.ok ? `${this.good} good in a row` : `${this.bad} failed in a row`
    return {
      state: this.failing ? 'failed' : 'running',
      detail: `${p.detail} (${counts})`,
      metrics: { probeSeconds: p.ms / 1000 },
    }
  }
}

export const checkDriver: DriverFactory<typeof checkConfigSchema> = {
  name: 'check',
  description: 'TCP, HTTP or exec health check with failure and success thresholds',
  configSchema: checkConfigSchema,
  create: (config) => new CheckDriver(config),
}
