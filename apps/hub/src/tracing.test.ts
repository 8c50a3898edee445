import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace'
import type { DecisionRecord } from '@vigil/engine'
import { expect, test } from 'vitest'
import { DecisionTracer, finish } from './tracing.js'

function setup() {
  const exporter = new InMemorySpanExporter()
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] })
  return { exporter, provider, tracer: new DecisionTracer(provider.getTracer('test'), 1000) }
}

/**
 * Decision times are epoch ms, as in the hub. Not small numbers: OpenTelemetry's SDK reads a start
 * time below performance.now() as relative to the process start (it failed once under load, when
 * the test ran more than a second after its worker started).
 */
const T0 = Date.UTC(2026, 0, 1)

const record = (
  id: string,
  at: number,
  rule: string,
  correlationId: string,
  extra: Partial<DecisionRecord> = {},
) =>
  ({
    id,
    at,
    kind: 'fence',
    rule,
    summary: rule,
    policyVersion: '1',
    correlationId,
    ...extra,
  }) as DecisionRecord

test('the decisions of one incident form one trace: a root, a span per decision, work under its decision', async () => {
  const { exporter, provider, tracer } = setup()
  const ids = [
    tracer.record(record('d1', T0 + 1000, 'classify.suspect', 'd1', { node: 'n2', kind: 'node-condition' })),
    tracer.record(record('d2', T0 + 1500, 'fence.dead', 'd1', { node: 'n2' })),
  ]
  const fence = tracer.startWork('d2', 'fence bmc-n2', { 'vigil.fence.device': 'bmc-n2' })
  finish(fence, true, { 'vigil.fence.outcome': 'off' })
  ids.push(
    tracer.record(record('d3', T0 + 2500, 'placement.best-score', 'd1', { resource: 'web', kind: 'place' })),
  )
  // Another incident is another trace.
  const other = tracer.record(record('d4', T0 + 2600, 'classify.suspect', 'd4', { node: 'n3' }))
  expect(new Set(ids).size).toBe(1)
  expect(ids[0]).toMatch(/^[0-9a-f]{32}$/)
  expect(other).not.toBe(ids[0])

  tracer.sweep(T0 + 3000) // d1's incident quiet for 500 ms: still open
  await provider.forceFlush()
  expect(exporter.getFinishedSpans().find((s) => s.name === 'incident n2: classify.suspect')).toBeUndefined()
  tracer.sweep(T0 + 3600) // quiet for 1.1 s: ended, at its last decision
  await provider.forceFlush()
  const spans = exporter.getFinishedSpans()
  const root = spans.find((s) => s.name === 'incident n2: classify.suspect')
  expect(root).toBeDefined()
  const ms = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6
  expect(ms(root?.startTime as [number, number])).toBe(T0 + 1000)
  expect(ms(root?.endTime as [number, number])).toBe(T0 + 2500)
  const byName = (name: string) => spans.find((s) => s.name === name)
  const parentOf = (name: string) => byName(name)?.parentSpanContext?.spanId
  expect(parentOf('decision fence.dead')).toBe(root?.spanContext().spanId)
  expect(parentOf('decision placement.best-score')).toBe(root?.spanContext().spanId)
  expect(parentOf('fence bmc-n2')).toBe(byName('decision fence.dead')?.spanContext().spanId)
  expect(byName('decision fence.dead')?.attributes).toMatchObject({
    'vigil.decision.id': 'd2',
    'vigil.rule': 'fence.dead',
    'vigil.node': 'n2',
    'vigil.correlation': 'd1',
  })
  expect(byName('fence bmc-n2')?.attributes['vigil.fence.outcome']).toBe('off')
  // d4's incident ends at close.
  tracer.close()
  await provider.forceFlush()
  expect(exporter.getFinishedSpans().some((s) => s.name === 'incident n3: classify.suspect')).toBe(true)
})

test('without an SDK, tracing costs nothing and records carry no trace id', async () => {
  const { trace } = await import('@opentelemetry/api')
  const tracer = new DecisionTracer(trace.getTracer('noop'), 1000)
  expect(tracer.record(record('d1', 1, 'classify.dead', 'd1'))).toBeNull()
})
