import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger } from '@vigil/kit'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { hubConfigSchema } from './config.js'
import { type RunningHub, startHub } from './hub.js'
import { DEFAULT_METRIC_PREFIXES, renderMetricsCatalog } from './metrics.js'

const CATALOG = new URL('../../../docs/metrics.md', import.meta.url)

let dir: string
let hub: RunningHub
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-catalog-'))
  hub = await startHub(
    hubConfigSchema.parse({
      http: { listen: '127.0.0.1:0' },
      broker: { listen: '127.0.0.1:0' },
      store: { path: join(dir, 'hub.sqlite') },
    }),
    {
      log: createLogger('test', 'silent'),
      version: 'test',
      brokerWorkerUrl: new URL('../dist/broker-worker.js', import.meta.url),
    },
  )
})
afterAll(async () => {
  await hub?.close()
  rmSync(dir, { recursive: true, force: true })
})

test('docs/metrics.md lists exactly the metrics a running hub registers', () => {
  const rendered = renderMetricsCatalog(hub.registry)
  if (process.env.VIGIL_UPDATE === '1') writeFileSync(CATALOG, rendered)
  expect(readFileSync(CATALOG, 'utf8'), 'docs/metrics.md is stale: rerun with VIGIL_UPDATE=1').toBe(rendered)
})

test("every Vigil metric follows Prometheus' naming conventions", () => {
  const problems: string[] = []
  const ours = hub.registry
    .getMetricsAsArray()
    .filter((m) => !DEFAULT_METRIC_PREFIXES.some((p) => m.name.startsWith(p)))
  expect(ours.length).toBeGreaterThan(30)
  for (const m of ours) {
    const labels = (m as unknown as { labelNames?: string[] }).labelNames ?? []
    if (!/^vigil_[a-z0-9_]+$/.test(m.name)) problems.push(`${m.name}: not vigil_snake_case`)
    const type = String(m.type)
    if (type === 'counter' && !m.name.endsWith('_total')) problems.push(`${m.name}: counter without _total`)
    if (type !== 'counter' && m.name.endsWith('_total')) problems.push(`${m.name}: _total on a ${type}`)
    if (/_(ms|milliseconds|kb|mb|percent)$/.test(m.name)) problems.push(`${m.name}: not a base unit`)
    if (m.help.trim().length < 10) problems.push(`${m.name}: no meaningful help`)
    for (const label of labels)
      if (['id', 'decision', 'command', 'correlation', 'time', 'at'].includes(label))
        problems.push(`${m.name}: unbounded label ${label}`)
  }
  expect(problems).toEqual([])
})
