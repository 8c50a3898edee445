import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Daemon, freePort, retryOnPortClash, stillAlive, waitFor } from './daemon.js'

export interface Prometheus {
  url: string
  daemon: Daemon
  /** An instant query; throws with Prometheus' error text on a bad expression. */
  query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>
  /** Alerts as the rule manager sees them (pending or firing). */
  alerts(): Promise<{ labels: Record<string, string>; state: string }[]>
  stop(): Promise<void>
}

/**
 * Debian's Prometheus scraping `targets` every `scrapeMs` with `ruleFiles` evaluated as often, its
 * TSDB in `dir`. Resolves once every target has been scraped successfully.
 */
export async function startPrometheus(opts: {
  dir: string
  job: string
  targets: string[]
  labels?: Record<string, string>
  ruleFiles?: string[]
  scrapeMs?: number
}): Promise<Prometheus> {
  const interval = `${opts.scrapeMs ?? 1000}ms`
  const config = join(opts.dir, 'prometheus.yml')
  writeFileSync(
    config,
    JSON.stringify({
      global: { scrape_interval: interval, evaluation_interval: interval },
      rule_files: opts.ruleFiles ?? [],
      scrape_configs: [
        {
          job_name: opts.job,
          honor_labels: true,
          static_configs: [{ targets: opts.targets, labels: opts.labels ?? {} }],
        },
      ],
    }),
  )
  const { daemon, url } = await retryOnPortClash(async () => {
    const port = await freePort('tcp')
    const daemon = Daemon.start(
      'prometheus',
      [
        'prometheus',
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(opts.dir, 'tsdb')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--storage.tsdb.retention.time=1h',
      ],
      { logFile: join(opts.dir, 'prometheus.log') },
    )
    await stillAlive(daemon, () => daemon.log())
    return { daemon, url: `http://127.0.0.1:${port}` }
  })
  const api = async (path: string) => {
    const res = await fetch(`${url}${path}`)
    const body = (await res.json()) as { status: string; data: unknown; error?: string }
    if (body.status !== 'success') throw new Error(`prometheus ${path}: ${body.error ?? res.status}`)
    return body.data
  }
  const stop = () => daemon.stop()
  try {
    await waitFor(
      'prometheus ready',
      async () => (await fetch(`${url}/-/ready`).catch(() => null))?.ok === true,
      20_000,
    )
    await waitFor(
      'every target scraped',
      async () => {
        const data = (await api('/api/v1/targets?state=active')) as { activeTargets: { health: string }[] }
        return (
          data.activeTargets.length === opts.targets.length &&
          data.activeTargets.every((t) => t.health === 'up')
        )
      },
      30_000,
    )
  } catch (err) {
    await stop()
    throw new Error(`${(err as Error).message}\n${daemon.log()}`)
  }
  return {
    url,
    daemon,
    async query(expr) {
      const data = (await api(`/api/v1/query?query=${encodeURIComponent(expr)}`)) as {
        resultType: string
        result: unknown
      }
      // Scalars (e.g. a bare number) come back as one value, not a vector.
      if (data.resultType === 'scalar') return [{ metric: {}, value: data.result as [number, string] }]
      return data.result as { metric: Record<string, string>; value: [number, string] }[]
    },
    async alerts() {
      return (
        (await api('/api/v1/alerts')) as { alerts: { labels: Record<string, string>; state: string }[] }
      ).alerts
    },
    stop,
  }
}
