import { getConnInfo } from '@hono/node-server/conninfo'
import type { OperatorOp } from '@vigil/engine'
import { VigilError } from '@vigil/kit'
import { isValidName } from '@vigil/protocol'
import { type Context, Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { z } from 'zod'
import { allows, type Identity, type RateLimiter, requiredRole, type TokenStore } from './auth.js'
import type { CommandDispatcher } from './commands.js'
import type { PartView } from './health.js'
import type { HistoryView } from './history.js'
import type { HubMetrics } from './metrics.js'
import type { NodeTable } from './nodes.js'
import { STATUS_CSS, STATUS_HTML, STATUS_JS, STATUS_PAGE_CSP } from './status-page.js'
import type { HubStore } from './store.js'

export interface ApiDeps {
  /** Who is asking (bearer tokens), what they may do, how often. */
  auth: TokenStore
  limiter: RateLimiter
  /** Wall clock, ms (audit times, rate limiting). */
  now: () => number
  table: NodeTable
  store: HubStore
  commands: CommandDispatcher
  metrics: HubMetrics
  /** Each part of the hub and its state: /readyz (all up) and /healthz (none failed). */
  health: () => { ready: boolean; healthy: boolean; parts: PartView[] }
  /** Why this hub takes no change now (its database cannot be written), or null. */
  refuseChanges: () => string | null
  /** The engine's what-if plan. */
  plan: () => Promise<unknown>
  /** Every resource as the engine sees it, a vm with its hypervisor (as its node reports it). */
  resources: () => unknown[]
  /** The status page's last 15 minutes (a bounded in-memory ring). */
  history: () => HistoryView
  /** Re-reads the cluster file: what changes, applied or only shown. */
  reloadCluster: (
    apply: boolean,
    by: string,
  ) => Promise<{ changes: string[]; applied: boolean } | { refused: string } | { invalid: string }>
  /** The peer mesh's reachability matrix. */
  peers: () => unknown
  info: () => Record<string, unknown>
  /**
   * In a hub group: the group's view (leader, epoch, lease, etcd), and where a change goes when
   * this hub does not lead (the leader's URL to redirect to, or why there is none). Null alone.
   */
  group: {
    view: () => unknown
    /** null: this hub leads and takes changes itself. */
    changesGoTo: () => { leaderUrl: string } | { error: string } | null
  } | null
  /**
   * An operator's request to the engine (move, maintenance, cleanup, evacuate): checked against
   * what the engine knows, logged as an operator event, then queued. Returns the unknown subject.
   */
  operator: (
    op: OperatorOp,
    by: string,
    from: string,
  ) => { unknown: 'node' | 'resource' } | { refused: string; field: string } | { accepted: true }
  fencing: {
    view: () => unknown
    /** An operator says a node is off: confirms a meatware request, or acknowledges a failed fence. */
    confirm: (node: string, by: string) => 'meatware-confirmed' | 'acknowledged' | 'refused'
  }
}

const confirmBody = z.strictObject({
  node: z.string().refine(isValidName, 'not a valid node name'),
  /** Who confirms (kept in the event log and the decision record). */
  by: z.string().min(1).max(64),
})

/** "90s", "30m", "2h", "1d" or a number of milliseconds. */
const durationMs = z.union(
  [
    z
      .number()
      .int()
      .positive()
      .max(365 * 86_400_000),
    z
      .string()
      .regex(/^\d+(ms|s|m|h|d)$/, 'must be a duration like 90s, 30m, 2h or 1d')
      .transform((v) => {
        const [, n, unit] = /^(\d+)(ms|s|m|h|d)$/.exec(v) as RegExpExecArray
        return Number(n) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[unit as 'ms']
      }),
  ],
  { error: 'must be a duration like 90s, 30m, 2h or 1d, or a number of milliseconds' },
)
const who = z.string().min(1).max(64).default('api')
const moveBody = z.strictObject({
  node: z.string().refine(isValidName, 'not a valid node name'),
  for: durationMs.default(3_600_000),
  by: who,
})
const maintenanceBody = z
  .strictObject({
    on: z.boolean(),
    node: z.string().refine(isValidName, 'not a valid node name').optional(),
    resource: z.string().min(1).max(63).optional(),
    for: durationMs.optional(),
    by: who,
  })
  .refine((b) => !(b.node && b.resource), { message: 'give node or resource, not both', path: ['resource'] })
const byBody = z.strictObject({ by: who })
/** Fencing on request must name its node twice: in the path and, as a confirmation, in the body. */
const fenceBody = z.strictObject({ confirm: z.string().min(1).max(63), by: who })

const decisionsQuery = z.strictObject({
  node: z.string().refine(isValidName, 'not a valid node name').optional(),
  resource: z.string().max(63).optional(),
  correlation: z.string().max(128).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
})

const auditQuery = z.strictObject({
  who: z.string().max(64).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
})

const eventsQuery = z.strictObject({
  node: z.string().refine(isValidName, 'not a valid node name').optional(),
  after: z.coerce.number().int().nonnegative().optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
})

/**
 * The hub's HTTP API. Errors are JSON `{error: {code, message, field?}}` with a status that
 * matches the code; nothing here throws past the error handler.
 */
export function createApi(deps: ApiDeps): Hono<Env> {
  const app = new Hono<Env>()
  app.use(
    '*',
    bodyLimit({
      maxSize: 64 * 1024,
      onError: (c) => c.json(errorBody('too_large', 'request body exceeds 64 KiB'), 413),
    }),
  )

  // Authentication, roles, rate limiting and the audit log, before any route.
  app.use('*', async (c, next) => {
    const needed = requiredRole(c.req.method, c.req.path)
    if (needed === null) return next()
    const source = clientAddress(c)
    const mutating = c.req.method !== 'GET' && c.req.method !== 'HEAD'
    // A change is audited before it is acted on: with nowhere to write the audit, none is taken.
    const refused = mutating ? deps.refuseChanges() : null
    if (refused !== null) return c.json(errorBody('unavailable', refused), 503, { 'Retry-After': '5' })
    const audit = async (who: Identity | null, status: number) => {
      if (!mutating && status < 400) return
      let body: string | null = null
      if (mutating) {
        const text = await c.req.text().catch(() => '')
        body = text.length > 2048 ? `${text.slice(0, 2048)}...` : text || null
      }
      deps.store.appendAudit({
        at: deps.now(),
        who: who?.name ?? 'invalid-token',
        role: who?.role ?? null,
        source,
        method: c.req.method,
        path: c.req.path,
        body,
        status,
      })
    }
    const who = deps.auth.identify(c.req.header('authorization'))
    if (who === null) {
      await audit(null, 401)
      return c.json(errorBody('unauthorized', 'the bearer token matches no configured token'), 401, {
        'WWW-Authenticate': 'Bearer realm="vigil"',
      })
    }
    if (!allows(who.role, needed)) {
      await audit(who, who.role === null ? 401 : 403)
      return who.role === null
        ? c.json(errorBody('unauthorized', `a bearer token with role ${needed} is required`), 401, {
            'WWW-Authenticate': 'Bearer realm="vigil"',
          })
        : c.json(errorBody('forbidden', `${who.name} has role ${who.role}; this needs ${needed}`), 403)
    }
    if (mutating) {
      const wait = deps.limiter.take(
        who.role && who.name !== 'anonymous' ? `token:${who.name}` : `addr:${source}`,
        deps.now(),
      )
      if (wait > 0) {
        await audit(who, 429)
        return c.json(errorBody('rate_limited', `too many changes: retry in ${wait} ms`), 429, {
          'Retry-After': String(Math.ceil(wait / 1000)),
        })
      }
    }
    c.set('who', who)
    await next()
    await audit(who, c.res.status)
  })

  // A standby answers reads; a change goes to the leader (307 keeps the method and the body, and
  // the CLI and fetch follow it), or is refused with why while the group has no leader.
  app.use('/api/*', async (c, next) => {
    if (!deps.group || c.req.method === 'GET' || c.req.method === 'HEAD') return next()
    const to = deps.group.changesGoTo()
    if (to === null) return next()
    if ('error' in to) return c.json(errorBody('unavailable', to.error), 503)
    const url = new URL(c.req.url)
    return c.redirect(new URL(url.pathname + url.search, to.leaderUrl).toString(), 307)
  })
  app.get('/api/group', (c) =>
    c.json(deps.group ? { enabled: true, ...(deps.group.view() as object) } : { enabled: false }),
  )

  const page = (body: string, type: string) => (c: Context) =>
    c.body(body, 200, {
      'Content-Type': `${type}; charset=utf-8`,
      'Content-Security-Policy': STATUS_PAGE_CSP,
      'X-Content-Type-Options': 'nosniff',
      'Cache-Control': 'no-cache',
    })
  app.get('/', page(STATUS_HTML, 'text/html'))
  app.get('/status.js', page(STATUS_JS, 'text/javascript'))
  app.get('/status.css', page(STATUS_CSS, 'text/css'))
  // healthz: no part that was up has failed (a supervisor or a load balancer may act on it);
  // readyz: every part is up (the broker connected, the database writable, the engine stepping,
  // in a hub group etcd answering). Both list each part's state, and why when it is not up.
  const partsBody = (parts: PartView[]) =>
    parts.map((p) => ({
      part: p.part,
      state: p.state,
      ...(p.problem ? { problem: p.problem } : {}),
      since: p.since,
    }))
  app.get('/healthz', (c) => {
    const h = deps.health()
    return c.json({ status: h.healthy ? 'ok' : 'failing', parts: partsBody(h.parts) }, h.healthy ? 200 : 503)
  })
  app.get('/readyz', (c) => {
    const h = deps.health()
    const reasons = h.parts.filter((p) => p.state !== 'up').map((p) => `${p.part}: ${p.problem ?? p.state}`)
    return c.json(
      { status: h.ready ? 'ready' : 'not_ready', reasons, parts: partsBody(h.parts) },
      h.ready ? 200 : 503,
    )
  })
  // Every metric, or with `?name=a&name=b` only those families (a name the hub does not have is
  // left out, as a query that matches nothing): the whole text grows with nodes x checks (32 MB
  // and about 0.5 s of the event loop at 10,000 nodes of 5 checks), a few families stay cheap to
  // read often (a benchmark waiting for its agents, a script).
  app.get('/metrics', async (c) => {
    const { registry } = deps.metrics
    const names = c.req.queries('name')
    const body = names
      ? (
          await Promise.all(
            [...new Set(names)]
              .filter((n) => registry.getSingleMetric(n) !== undefined)
              .map((n) => registry.getSingleMetricAsString(n)),
          )
        )
          .map((text) => `${text}\n`)
          .join('\n')
      : await registry.metrics()
    return c.body(body, 200, { 'Content-Type': registry.contentType })
  })

  app.get('/api', (c) => c.json(deps.info()))
  // Each node with the engine's judgement: its state, and its health, fence phase and maintenance.
  app.get('/api/nodes', (c) => c.json({ nodes: deps.table.views() }))
  app.get('/api/nodes/:id', (c) => {
    const view = deps.table.view(c.req.param('id'))
    if (!view) return c.json(errorBody('not_found', `no node named "${c.req.param('id')}"`), 404)
    return c.json(view)
  })
  app.get('/api/decisions', (c) => {
    const q = decisionsQuery.safeParse(c.req.query())
    if (!q.success) return invalid(c, q.error)
    const { node, resource, correlation, limit } = q.data
    return c.json({ decisions: deps.store.decisions({ node, resource, correlationId: correlation, limit }) })
  })
  app.get('/api/resources', (c) => c.json({ resources: deps.resources() }))
  app.get('/api/history', (c) => c.json(deps.history()))
  // The cluster file re-read and validated, what changes shown, applied unless `check`; nothing
  // moves that did not have to (the engine keeps its state, new entries start fresh).
  app.post('/api/cluster/reload', async (c) => {
    const body = (await c.req.json().catch(() => ({}))) as { check?: unknown; by?: unknown }
    const who = c.get('who')
    const by =
      who && who.name !== 'anonymous' ? who.name : typeof body.by === 'string' ? body.by : 'anonymous'
    const result = await deps.reloadCluster(body.check !== true, by)
    if ('refused' in result) return c.json(errorBody('conflict', result.refused), 409)
    if ('invalid' in result) return c.json(errorBody('invalid', result.invalid, 'clusterFile'), 400)
    return c.json(result, result.applied ? 202 : 200)
  })
  // Who this request's token is: the status page's sign-in checks a token with it.
  app.get('/api/me', (c) => {
    const who = c.get('who')
    return c.json({ name: who?.name ?? 'anonymous', role: who?.role ?? null })
  })
  app.get('/api/plan', async (c) => c.json({ plan: await deps.plan() }))
  app.get('/api/peers', (c) => c.json({ peers: deps.peers() }))
  app.get('/api/decisions/:id', (c) => {
    const record = deps.store.getDecision(c.req.param('id'))
    if (!record) return c.json(errorBody('not_found', `no decision with id "${c.req.param('id')}"`), 404)
    return c.json(record)
  })
  app.get('/api/events', (c) => {
    const q = eventsQuery.safeParse(c.req.query())
    if (!q.success) return invalid(c, q.error)
    const events = deps.store.events({ node: q.data.node, afterId: q.data.after, limit: q.data.limit })
    return c.json({ events })
  })
  app.post('/api/nodes/:id/ping', async (c) => {
    const id = c.req.param('id')
    if (!deps.table.view(id)) return c.json(errorBody('not_found', `no node named "${id}"`), 404)
    const outcome = await deps.commands.send(id, 'ping')
    return c.json({
      id: outcome.command.id,
      node: id,
      status: outcome.result.status,
      roundTripMs: Math.round(outcome.roundTripMs * 1000) / 1000,
      result: outcome.result.result ?? {},
    })
  })
  const operate = async (c: Context<Env>, schema: z.ZodType, toOp: (body: never) => OperatorOp) => {
    let body: unknown = {}
    const text = await c.req.text()
    if (text.trim() !== '') {
      try {
        body = JSON.parse(text)
      } catch {
        return c.json(errorBody('invalid', 'body: must be a JSON object', 'body'), 400)
      }
    }
    const parsed = schema.safeParse(body)
    if (!parsed.success) return invalid(c, parsed.error)
    const data = parsed.data as { by: string; confirm?: string }
    if (data.confirm !== undefined && data.confirm !== c.req.param('id'))
      return c.json(
        errorBody('invalid', `confirm: must repeat the node's name ("${c.req.param('id')}")`, 'confirm'),
        400,
      )
    const op = toOp(data as never)
    const who = c.get('who')
    // With tokens, the author is the token's owner: a body cannot speak for someone else.
    const by = who && who.name !== 'anonymous' ? who.name : data.by
    if ('by' in op) op.by = by
    const result = deps.operator(op, by, clientAddress(c))
    if ('unknown' in result) {
      const name =
        'resource' in op && result.unknown === 'resource' ? op.resource : 'node' in op ? op.node : op
      return c.json(
        errorBody('not_found', `no ${result.unknown} named "${String(name)}" in the cluster`, result.unknown),
        404,
      )
    }
    if ('refused' in result) return c.json(errorBody('conflict', result.refused, result.field), 409)
    return c.json({ accepted: true, op }, 202)
  }
  // migrate: a move that must be live, refused (409) for anything but a vm that allows it.
  for (const verb of ['move', 'migrate'] as const)
    app.post(`/api/resources/:id/${verb}`, (c) =>
      operate(c, moveBody, (b: z.infer<typeof moveBody>) => ({
        op: 'move',
        resource: c.req.param('id'),
        node: b.node,
        forMs: b.for,
        ...(verb === 'migrate' ? { live: true } : {}),
      })),
    )
  app.post('/api/resources/:id/cleanup', (c) =>
    operate(c, byBody, () => ({ op: 'cleanup', resource: c.req.param('id') })),
  )
  // An operator's wanted state (Pacemaker's target-role): stop keeps it stopped until a start.
  for (const role of ['stop', 'start'] as const)
    app.post(`/api/resources/:id/${role}`, (c) =>
      operate(c, byBody, () => ({
        op: 'target',
        resource: c.req.param('id'),
        role: role === 'stop' ? 'stopped' : 'started',
      })),
    )
  // An intended pause of a vm (VCS's admin suspend): never recovered as a failure, until resumed.
  for (const verb of ['suspend', 'resume'] as const)
    app.post(`/api/resources/:id/${verb}`, (c) =>
      operate(c, byBody, () => ({ op: 'suspend', resource: c.req.param('id'), on: verb === 'suspend' })),
    )
  app.post('/api/nodes/:id/fence', (c) =>
    operate(c, fenceBody, (b: z.infer<typeof fenceBody>) => ({
      op: 'fence',
      node: c.req.param('id'),
      by: b.by,
    })),
  )
  app.post('/api/nodes/:id/evacuate', (c) =>
    operate(c, byBody, () => ({ op: 'evacuate', node: c.req.param('id') })),
  )
  app.post('/api/maintenance', (c) =>
    operate(c, maintenanceBody, (b: z.infer<typeof maintenanceBody>) => ({
      op: 'maintenance',
      scope: b.node ? 'node' : b.resource ? 'resource' : 'cluster',
      ...(b.node || b.resource ? { id: (b.node ?? b.resource) as string } : {}),
      on: b.on,
      ...(b.for !== undefined ? { forMs: b.for } : {}),
    })),
  )
  app.get('/api/fence', (c) => c.json(deps.fencing.view()))
  app.post('/api/fence/confirm', async (c) => {
    let body: unknown
    try {
      body = await c.req.json()
    } catch {
      return c.json(
        errorBody('invalid', 'body: must be JSON like {"node": "n2", "by": "alice"}', 'body'),
        400,
      )
    }
    const parsed = confirmBody.safeParse(body)
    if (!parsed.success) return invalid(c, parsed.error)
    const who = c.get('who')
    const node = parsed.data.node
    const by = who && who.name !== 'anonymous' ? who.name : parsed.data.by
    const result = deps.fencing.confirm(node, by)
    if (result === 'refused')
      return c.json(
        errorBody(
          'conflict',
          `${node} is not waiting for a fence confirmation (unknown, or healthy)`,
          'node',
        ),
        409,
      )
    return c.json({ node, by, result })
  })
  app.get('/api/audit', (c) => {
    const q = auditQuery.safeParse(c.req.query())
    if (!q.success) return invalid(c, q.error)
    return c.json({ audit: deps.store.audit({ who: q.data.who, limit: q.data.limit }) })
  })
  app.get('/api/commands/:id', (c) => {
    const row = deps.store.getCommand(c.req.param('id'))
    if (!row) return c.json(errorBody('not_found', `no command with id "${c.req.param('id')}"`), 404)
    return c.json(row)
  })

  app.notFound((c) => c.json(errorBody('not_found', `no route for ${c.req.method} ${c.req.path}`), 404))
  app.onError((err, c) => {
    if (err instanceof VigilError) {
      const status =
        err.code === 'command_timeout'
          ? 504
          : err.code === 'command_refused'
            ? 502
            : err.code === 'not_found'
              ? 404
              : err.code === 'unavailable'
                ? 503
                : 500
      return c.json(errorBody(err.code, err.message), status)
    }
    return c.json(errorBody('internal', 'internal error'), 500)
  })
  return app
}

type Env = { Variables: { who: Identity } }

/** The client's address as the socket saw it (a proxy in front would be the address here). */
function clientAddress(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? 'unknown'
  } catch {
    return 'unknown' // requests made in-process (tests through app.request)
  }
}

/** A 400 naming the first offending query field. */
function invalid(c: Context, error: z.ZodError) {
  const issue = error.issues[0]
  const field = issue?.path.join('.') || (issue?.code === 'unrecognized_keys' ? issue.keys[0] : '') || ''
  return c.json(errorBody('invalid', `${field}: ${issue?.message}`, field), 400)
}

function errorBody(code: string, message: string, field?: string) {
  return { error: field ? { code, message, field } : { code, message } }
}
