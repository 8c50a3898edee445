import {
  type Attributes,
  type Context,
  context,
  isSpanContextValid,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api'
import type { DecisionRecord } from '@vigil/engine'
import type { Logger } from '@vigil/kit'
import { z } from 'zod'

export const tracingSchema = z
  .strictObject({
    /** OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces. Unset: no export. */
    otlpUrl: z.url({ protocol: /^https?$/ }).optional(),
    serviceName: z.string().min(1).max(128).default('vigil-hub'),
    /** An incident's root span ends once no decision joined it for this long. */
    incidentIdleMs: z.number().int().min(100).max(3_600_000).default(30_000),
    /** How often finished spans are sent. */
    exportIntervalMs: z.number().int().min(100).max(60_000).default(5000),
  })
  .prefault({})
export type TracingConfig = z.infer<typeof tracingSchema>

/** Decision ids remembered for parenting the work they cause (fence runs, commands). */
const MAX_REMEMBERED = 10_000

/**
 * One trace per incident. The engine gives every decision of an incident the same correlation id
 * (a node's first step away from healthy, and everything it causes: classification, fence levels,
 * placement, start, the resource seen running again); each correlation id becomes a root span, each
 * decision an instant child span, and the work a decision causes (one span per fence device run, one
 * per command to an agent, until its result) a child of that decision. The trace id goes into the
 * decision record, so `vigil why` and the API lead to the trace.
 */
export class DecisionTracer {
  private readonly incidents = new Map<string, { span: Span; lastAt: number }>()
  private readonly decisionSpans = new Map<string, Context>()

  constructor(
    private readonly tracer: Tracer,
    private readonly incidentIdleMs: number,
  ) {}

  /** Spans for one decision record; returns the trace id to store with it (null when not tracing). */
  record(r: DecisionRecord): string | null {
    let incident = this.incidents.get(r.correlationId)
    if (!incident) {
      const span = this.tracer.startSpan(
        `incident ${r.resource ?? r.node ?? r.kind}: ${r.rule}`,
        {
          root: true,
          startTime: r.at,
          attributes: compact({
            'vigil.correlation': r.correlationId,
            'vigil.node': r.node,
            'vigil.resource': r.resource,
            'vigil.first_rule': r.rule,
          }),
        },
        context.active(),
      )
      incident = { span, lastAt: r.at }
      this.incidents.set(r.correlationId, incident)
    }
    incident.lastAt = Math.max(incident.lastAt, r.at)
    const span = this.tracer.startSpan(
      `decision ${r.rule}`,
      {
        startTime: r.at,
        attributes: compact({
          'vigil.decision.id': r.id,
          'vigil.decision.kind': r.kind,
          'vigil.rule': r.rule,
          'vigil.node': r.node,
          'vigil.resource': r.resource,
          'vigil.classification': r.classification,
          'vigil.correlation': r.correlationId,
          'vigil.summary': r.summary,
          'vigil.policy_version': r.policyVersion,
        }),
      },
      trace.setSpan(context.active(), incident.span),
    )
    if (r.kind === 'refuse' || r.kind === 'blocked')
      span.setStatus({ code: SpanStatusCode.ERROR, message: r.summary })
    span.end(r.at)
    this.remember(r.id, trace.setSpan(context.active(), span))
    const ids = incident.span.spanContext()
    return isSpanContextValid(ids) ? ids.traceId : null
  }

  /**
   * A span for work a decision caused, under that decision's span (or its own trace if the
   * decision is no longer remembered). The caller ends it with `finish`.
   */
  startWork(decisionId: string, name: string, attributes: Attributes): Span {
    const parent = this.decisionSpans.get(decisionId)
    return this.tracer.startSpan(
      name,
      { kind: SpanKind.CLIENT, attributes: { 'vigil.decision.id': decisionId, ...attributes } },
      parent ?? context.active(),
    )
  }

  /** Ends the root span of every incident quiet for `incidentIdleMs`, at its last decision. */
  sweep(now: number): void {
    for (const [id, incident] of this.incidents) {
      if (now - incident.lastAt < this.incidentIdleMs) continue
      incident.span.end(incident.lastAt)
      this.incidents.delete(id)
    }
  }

  close(): void {
    for (const incident of this.incidents.values()) incident.span.end(incident.lastAt)
    this.incidents.clear()
  }

  private remember(id: string, ctx: Context): void {
    this.decisionSpans.set(id, ctx)
    if (this.decisionSpans.size > MAX_REMEMBERED) {
      const oldest = this.decisionSpans.keys().next().value
      if (oldest !== undefined) this.decisionSpans.delete(oldest)
    }
  }
}

/** Ends a work span with its outcome. */
export function finish(span: Span, ok: boolean, attributes: Attributes = {}, message?: string): void {
  span.setAttributes(attributes)
  if (!ok) span.setStatus({ code: SpanStatusCode.ERROR, message })
  span.end()
}

/**
 * The tracer the hub uses: the test's (or embedding program's) if given; an OTLP/HTTP exporter if
 * `tracing.otlpUrl` is set (the SDK is loaded only then); otherwise the global API's, which is a
 * no-op unless the process registered an SDK.
 */
export async function createTracer(
  config: TracingConfig,
  version: string,
  log: Logger,
  given?: Tracer,
): Promise<{ tracer: Tracer; shutdown: () => Promise<void> }> {
  if (given) return { tracer: given, shutdown: async () => {} }
  if (!config.otlpUrl) return { tracer: trace.getTracer('vigil-hub', version), shutdown: async () => {} }
  const [{ BatchSpanProcessor, TracerProvider }, { OTLPTraceExporter }, { resourceFromAttributes }] =
    await Promise.all([
      import('@opentelemetry/sdk-trace'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/resources'),
    ])
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': config.serviceName, 'service.version': version }),
    spanProcessors: [
      new BatchSpanProcessor({
        exporter: new OTLPTraceExporter({ url: config.otlpUrl }),
        scheduledDelayMillis: config.exportIntervalMs,
      }),
    ],
  })
  log.info({ otlpUrl: config.otlpUrl }, 'exporting decision traces over OTLP/HTTP')
  return {
    tracer: provider.getTracer('vigil-hub', version),
    shutdown: async () => {
      try {
        await provider.shutdown()
      } catch (err) {
        log.warn({ err }, 'trace export at shutdown failed')
      }
    },
  }
}

function compact(attrs: Record<string, string | undefined>): Attributes {
  const out: Attributes = {}
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) out[k] = v
  return out
}
