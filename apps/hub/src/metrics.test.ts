import { createLogger } from '@vigil/kit'
import type { Observation } from '@vigil/protocol'
import { Counter, Gauge, Registry } from 'prom-client'
import { expect, test, vi } from 'vitest'
import { type ApiDeps, createApi } from './api.js'
import { apiSchema, RateLimiter, TokenStore } from './auth.js'
import { HubMetrics, HubRegistry, SeriesGauge } from './metrics.js'
import { emptyHubMetrics } from './metrics.test-helper.js'
import type { NodeView } from './nodes.js'

/** The API with only what GET /metrics uses (open, as without a tokens file). */
function metricsApi() {
  const metrics = emptyHubMetrics()
  const deps = {
    auth: new TokenStore(apiSchema.parse({}), createLogger('test', 'silent')),
    limiter: new RateLimiter(10, 10),
    now: () => 0,
    metrics,
  } as unknown as ApiDeps
  return { app: createApi(deps), metrics }
}

test('GET /metrics?name=...: only the families named, in the same text format; an unknown name adds nothing', async () => {
  const { app, metrics } = metricsApi()
  metrics.heartbeatsReceived.inc(3)
  metrics.messagesReceived.inc({ channel: 'hb' }, 3)
  const res = await app.request(
    '/metrics?name=vigil_heartbeats_received_total&name=no_such_metric&name=vigil_messages_received_total',
  )
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/)
  expect(await res.text()).toBe(
    [
      '# HELP vigil_heartbeats_received_total Heartbeats accepted from agents.',
      '# TYPE vigil_heartbeats_received_total counter',
      'vigil_heartbeats_received_total 3',
      '',
      '# HELP vigil_messages_received_total Messages accepted from agents, by channel.',
      '# TYPE vigil_messages_received_total counter',
      'vigil_messages_received_total{channel="hb"} 3',
      '',
    ].join('\n'),
  )
  // Without a name: everything, as a scrape expects.
  const all = await (await app.request('/metrics')).text()
  expect(all).toContain('vigil_heartbeats_received_total 3\n')
  expect(all).toContain('# TYPE vigil_hub_process_cpu_seconds_total counter')
  expect(await (await app.request('/metrics?name=no_such_metric')).text()).toBe('')
})

/** Series with every kind of label value and number prom-client formats specially. */
const SERIES: [string[], number][] = [
  [['n1', 'process', 'web'], 1],
  [['n1', 'disk', '/var/lib/"quoted"'], 0.25],
  [['n2', 'exec', 'back\\slash'], -3],
  [['n2', 'exec', 'two\nlines'], Number.NaN],
  [['n3', 'nic', 'eth0'], Number.POSITIVE_INFINITY],
  [['n3', 'nic', 'eth1'], Number.NEGATIVE_INFINITY],
  [['n3', 'nic', ''], 1e21],
]

test.each([1, 2, 3])(
  'SeriesGauge with %i labels: the same text and values as a prom-client Gauge, written by itself in a HubRegistry',
  async (arity) => {
    const help = 'Help with a back\\slash and a\nnew line.'
    const labelNames = ['node', 'driver', 'target'].slice(0, arity)
    // Each label set once (the contract), its last value where the rows repeat it.
    const series = [
      ...new Map(
        SERIES.map(([values, value]): [string, [string[], number]] => [
          values.slice(0, arity).join('\0'),
          [values.slice(0, arity), value],
        ]),
      ).values(),
    ]
    // Beside another metric: families are joined as prom-client joins them.
    const plain = new Registry()
    const gauge = new Gauge({ name: 'family', help, labelNames, registers: [plain] })
    for (const [values, value] of series)
      gauge.set(Object.fromEntries(labelNames.map((l, i) => [l, values[i] as string])), value)
    new Counter({ name: 'other_total', help: 'Another.', registers: [plain] }).inc(2)

    const hub = new HubRegistry()
    const fast = new SeriesGauge({ name: 'family', help, labelNames, registers: [hub], series: () => series })
    new Counter({ name: 'other_total', help: 'Another.', registers: [hub] }).inc(2)
    const inTurns = vi.spyOn(fast, 'textInTurns')
    const text = vi.spyOn(fast, 'text')
    expect(await hub.metrics()).toBe(await plain.metrics())
    expect(inTurns).toHaveBeenCalledTimes(1)
    expect(await hub.getSingleMetricAsString('family')).toBe(await plain.getSingleMetricAsString('family'))
    expect(text).toHaveBeenCalledTimes(1) // the hook into prom-client's rendering is taken
    expect((await fast.get()).values).toEqual((await gauge.get()).values)
    // In a plain registry it is rendered as any gauge, from its values: the same text.
    const other = new Registry()
    new SeriesGauge({ name: 'family', help, labelNames, registers: [other], series: () => series })
    new Counter({ name: 'other_total', help: 'Another.', registers: [other] }).inc(2)
    expect(await other.metrics()).toBe(await plain.metrics())
  },
)

test('a HubRegistry scrape lets the event loop turn within a large family, and shares what its families ask for', async () => {
  const hub = new HubRegistry()
  let computed = 0
  const ids = hub.oncePerScrape(() => {
    computed++
    return Array.from({ length: 30_000 }, (_, i) => `n${i}`)
  })
  new SeriesGauge({
    name: 'a',
    help: 'A.',
    labelNames: ['node'],
    registers: [hub],
    *series() {
      for (const id of ids()) yield [[id], 1]
    },
  })
  new SeriesGauge({
    name: 'b',
    help: 'B.',
    labelNames: ['node'],
    registers: [hub],
    *series() {
      for (const id of ids()) yield [[id], 0]
    },
  })
  let turned = false
  setImmediate(() => {
    turned = true
  })
  const scrape = hub.metrics()
  const lines = (await scrape).split('\n')
  expect(turned).toBe(true)
  expect(lines.filter((l) => l.startsWith('a{'))).toHaveLength(30_000)
  expect(lines.filter((l) => l.startsWith('b{'))).toHaveLength(30_000)
  expect(computed).toBe(1)
  // Outside a scrape, every call computes afresh (nothing stale is kept).
  ids()
  await hub.metrics()
  expect(computed).toBe(3)
})

test('vigil_check_state and vigil_check_value: a check an agent listed twice is written once, as listed last', async () => {
  const twice: Observation[] = [
    { driver: 'process', target: 'web', state: 'failed', metrics: { rss: 1 } },
    { driver: 'disk', target: '/', state: 'running' },
    { driver: 'process', target: 'web', state: 'running', metrics: { rss: 2 } },
  ]
  const metrics = new HubMetrics({
    nodes: () => [{ id: 'n1', observations: twice } as unknown as NodeView],
    brokerClients: () => 0,
    group: () => null,
    parts: () => [],
    epoch: () => 1,
  })
  const text = await metrics.registry.metrics()
  const lines = (prefix: string) => text.split('\n').filter((l) => l.startsWith(prefix))
  expect(lines('vigil_check_state{node="n1",driver="process",target="web",')).toEqual([
    'vigil_check_state{node="n1",driver="process",target="web",state="running"} 1',
    'vigil_check_state{node="n1",driver="process",target="web",state="stopped"} 0',
    'vigil_check_state{node="n1",driver="process",target="web",state="failed"} 0',
    'vigil_check_state{node="n1",driver="process",target="web",state="paused"} 0',
    'vigil_check_state{node="n1",driver="process",target="web",state="suspended"} 0',
    'vigil_check_state{node="n1",driver="process",target="web",state="unknown"} 0',
  ])
  expect(lines('vigil_check_state{node="n1",driver="disk"')).toHaveLength(6)
  expect(lines('vigil_check_value{')).toEqual([
    'vigil_check_value{node="n1",driver="process",target="web",metric="rss"} 2',
  ])
})
