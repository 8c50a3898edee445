import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Prometheus } from '@vigil/testbed'

const repo = fileURLToPath(new URL('../../', import.meta.url))

/** A query of a shipped dashboard: the file, where in it, and its PromQL. */
export interface DashboardQuery {
  dashboard: string
  where: string
  expr: string
}

/**
 * Queries that only a cluster with a vm can feed: `vigil_vm_info` (a running vm and its hypervisor)
 * and `vigil_guest_*` (a vm with an in-guest heartbeat). The observability test (web apps, no vm)
 * checks every other query; vm-live's guest test checks these.
 */
export const needsGuest = (q: DashboardQuery) => /vigil_guest_|vigil_vm_/.test(q.expr)

/** Every query of every dashboard as shipped (the JSON files a Grafana provisions). */
export async function dashboardQueries(): Promise<DashboardQuery[]> {
  const { queriesOf } = (await import(join(repo, 'grafana/build.mjs'))) as {
    queriesOf: (d: unknown) => { where: string; expr: string }[]
  }
  const dir = join(repo, 'grafana/dashboards')
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .flatMap((f) =>
      queriesOf(JSON.parse(readFileSync(join(dir, f), 'utf8'))).map((q) => ({ dashboard: f, ...q })),
    )
}

/** A range query over [start, end] (seconds) at a 1 s step; throws with Prometheus' error text. */
export async function rangeQuery(
  prometheus: Prometheus,
  expr: string,
  start: number,
  end: number,
): Promise<{ metric: Record<string, string> }[]> {
  const url = `${prometheus.url}/api/v1/query_range?query=${encodeURIComponent(expr)}&start=${start}&end=${end}&step=1`
  const body = (await (await fetch(url)).json()) as {
    status: string
    error?: string
    data?: { result: { metric: Record<string, string> }[] }
  }
  if (body.status !== 'success') throw new Error(body.error)
  return body.data?.result ?? []
}

/**
 * Runs each query as Grafana would (its variables substituted) against a Prometheus that watched
 * the cluster from `start` to `end`, and returns what is wrong: an error, no data, or a variable's
 * `label_values(selector, label)` whose selector's series lack the label. Empty means all good.
 */
export async function dashboardProblems(
  prometheus: Prometheus,
  queries: DashboardQuery[],
  window: { start: number; end: number; cluster: string; nodes: string[]; resource: string },
): Promise<string[]> {
  const vars: [RegExp, string][] = [
    [/\$__rate_interval/g, '5s'],
    [/\$__range/g, `${Math.ceil(window.end - window.start)}s`],
    [/\$cluster/g, window.cluster],
    [/\$node/g, window.nodes.join('|')],
    [/\$resource/g, window.resource],
  ]
  const substitute = (expr: string) => vars.reduce((e, [re, v]) => e.replace(re, v), expr)
  const problems: string[] = []
  for (const { dashboard, where, expr } of queries) {
    const labelValues = /^label_values\((.+), (\w+)\)$/.exec(expr)
    const q = substitute(labelValues ? (labelValues[1] as string) : expr)
    try {
      const result = await rangeQuery(prometheus, q, window.start, window.end)
      if (result.length === 0) problems.push(`${dashboard} ${where}: no data for ${q}`)
      else if (labelValues && !result.some((r) => r.metric[labelValues[2] as string]))
        problems.push(`${dashboard} ${where}: no series of ${q} has label ${labelValues[2]}`)
    } catch (err) {
      problems.push(`${dashboard} ${where}: ${(err as Error).message} in ${q}`)
    }
  }
  return problems
}
