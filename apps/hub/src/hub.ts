import { createHash } from 'node:crypto'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import type { Tracer } from '@opentelemetry/api'
import { type ClusterSpec, isolationTimingProblem } from '@vigil/engine'
import {
  brokerCredentials,
  type Clock,
  ConfigError,
  type Logger,
  type LoopWatchdog,
  startLoopWatchdog,
  systemClock,
  VigilError,
} from '@vigil/kit'
import { TOPIC_ROOT } from '@vigil/protocol'
import type { IClientOptions } from 'mqtt'
import type { Registry } from 'prom-client'
import { createApi } from './api.js'
import { allows, RateLimiter, TokenStore } from './auth.js'
import type { EmbeddedBroker } from './broker.js'
import { startBrokerThread } from './broker-thread.js'
import { CommandDispatcher } from './commands.js'
import { type HubConfig, loadClusterFile, parseClusterSpec, splitHostPort } from './config.js'
import { EngineLoop } from './engine-loop.js'
import { FenceService, fenceDeviceShapes, fenceLevelProblems } from './fencing.js'
import { type CommittedClusterFile, HubGroup, loadEtcd, notLeaderError } from './group.js'
import { HubHealth } from './health.js'
import { HistoryRing } from './history.js'
import { Ingest } from './ingest.js'
import { type BrokerLink, clientLink, inProcessLink } from './link.js'
import { LiveFeed } from './live.js'
import { HubMetrics } from './metrics.js'
import { type NodeJudgement, NodeTable, withHypervisors } from './nodes.js'
import { OperatorRequests } from './operator-requests.js'
import { Planner } from './planner.js'
import { reloadRefusal, specChanges } from './reload.js'
import { Retention } from './retention.js'
import { loadSigningKey } from './signing.js'
import { type EventRow, HubStore, type NewEvent } from './store.js'
import { StoreGuard } from './store-guard.js'
import { leadershipEvents } from './takeover.js'
import { createTracer, DecisionTracer } from './tracing.js'

export interface RunningHub {
  httpUrl: string
  mqttUrl: string
  liveUrl: string
  metricsUrl: string
  /** The public half of the command signing key, for agents' `commands.hubPublicKeyFile`. */
  commandPublicKeyFile: string | null
  epoch: number
  /** Every metric the hub serves (for the catalog in docs/metrics.md). */
  registry: Registry
  /**
   * Resolves with why, in one line, when a part the hub cannot run without has died (the
   * embedded broker's listener): the process then exits 1, to be restarted by its supervisor.
   */
  fatal: Promise<string>
  close(): Promise<void>
}

export interface HubDeps {
  log: Logger
  clock?: Clock
  /** Password for an external broker (from VIGIL_MQTT_PASSWORD); a passwordFile wins. */
  mqttPassword?: string
  version: string
  /** A tracer to use instead of the configured one (tests: an in-memory exporter). */
  tracer?: Tracer
  /** The embedded broker thread's module (a test from sources points at the built file). */
  brokerWorkerUrl?: URL
}

const HEARTBEAT_FLUSH_MS = 1000
/** While the database cannot be written, a write is tried this often to see whether it can again. */
const STORE_PROBE_MS = 2000

/**
 * Starts broker (if embedded), store, ingest, API, metrics and live feed; resolves once listening.
 * A failure to start closes every part already opened before it throws, so that nothing (a port,
 * a timer, a connection) keeps a failed hub's process alive.
 */
export async function startHub(config: HubConfig, deps: HubDeps): Promise<RunningHub> {
  const undo: (() => unknown)[] = []
  try {
    return await assembleHub(config, deps, undo)
  } catch (err) {
    for (const close of undo.reverse()) {
      try {
        await close()
      } catch {
        // the start already failed: its first error is the one to report
      }
    }
    throw err
  }
}

async function assembleHub(config: HubConfig, deps: HubDeps, undo: (() => unknown)[]): Promise<RunningHub> {
  const { log } = deps
  const clock = deps.clock ?? systemClock
  // The files first: a bad one is reported before any port is taken.
  // Its fence levels are checked against the hub's fence devices here, with the file's lines.
  const loaded = config.engine.clusterFile
    ? loadClusterFile(config.engine.clusterFile, (s) =>
        fenceLevelProblems(s, fenceDeviceShapes(config.fencing)),
      )
    : null
  let spec = loaded?.spec ?? null
  /** The text `spec` was read from: what a hub group's leader commits for the others to run. */
  let specText = loaded?.text ?? null
  const tokens = new TokenStore(config.api, log.child({ part: 'auth' }))
  const store = new HubStore(config.store.path)
  undo.push(() => store.close())
  const health = new HubHealth(
    ['store', 'broker', 'engine', ...(config.group ? (['group'] as const) : [])],
    () => clock.wallMs(),
    (view, before) =>
      view.state === 'up'
        ? log.info({ part: view.part, was: before }, 'hub part up')
        : log.warn({ part: view.part, state: view.state, problem: view.problem }, 'hub part down'),
  )
  health.up('store')
  // Alone, every start of this hub is a new epoch; in a group, the epoch is the leadership's
  // (an etcd revision), set at each takeover, and 0 while this hub has never led.
  let epoch = config.group ? 0 : store.nextEpoch()
  let group: HubGroup | null = null
  let groupHealthTimer: NodeJS.Timeout | null = null
  const signing = loadSigningKey(config.signing.keyFile, config.store.path, log.child({ part: 'signing' }))
  // A node's state is the engine's judgement (the engine is built below; nothing asks for a view
  // before it is: the engine's own list of nodes to observe reads `running()`).
  const table: NodeTable = new NodeTable(
    (id): NodeJudgement | null => engine.condition(id),
    () => spec?.nodes.map((n) => n.id) ?? [],
  )
  table.load(store.loadNodes())

  let broker: EmbeddedBroker | null = null
  let brokerClients: number | null = null
  let mqttUrl: string
  const mqttOptions: IClientOptions = {
    clientId: `vigil-hub-${config.cluster}-${config.name}`,
    // A persistent session: an external broker keeps the hub's subscription and queues QoS 1
    // messages (events, results) while the hub restarts. The embedded broker restarts with the
    // hub, so it gates agents until the hub has subscribed instead (broker.ts).
    clean: false,
    reconnectPeriod: 500,
    connectTimeout: 5000,
    // Keep retrying after a refused CONNACK (broker not ready, credentials being rotated): without
    // this mqtt.js gives up for good, and a Vigil process must never stop trying to reach its broker.
    reconnectOnConnackError: true,
    keepalive: 10,
  }
  let link: BrokerLink
  if (config.mqtt.url) {
    mqttUrl = config.mqtt.url
    Object.assign(mqttOptions, brokerCredentials(config.mqtt, deps.mqttPassword))
    link = clientLink(mqttUrl, mqttOptions, log)
  } else {
    broker = await startBrokerThread(
      splitHostPort(config.broker.listen),
      {
        cluster: config.cluster,
        allowAnonymous:
          config.broker.allowAnonymous ??
          (!config.broker.credentialsFile && !config.broker.tls?.requireClientCert),
        credentialsFile: config.broker.credentialsFile,
        tls: config.broker.tls,
        log: log.child({ part: 'broker' }),
      },
      deps.brokerWorkerUrl,
    )
    undo.push(() => broker?.close())
    broker.died.then((why) => log.error({ why }, 'embedded broker died'))
    mqttUrl = broker.url
    link = inProcessLink(broker, log)
  }
  undo.push(() => link.close())

  const metrics = new HubMetrics({
    nodes: () => table.views(),
    brokerClients: () => (broker ? broker.clientCount() : brokerClients),
    epoch: () => epoch,
    group: () => group?.view() ?? null,
    parts: () => health.views(),
  })

  const publish = async (topic: string, payload: string) => {
    if (!link.connected) throw new VigilError('unavailable', 'not connected to the MQTT broker')
    await link.publish(topic, payload)
  }
  const commands = new CommandDispatcher(
    {
      cluster: config.cluster,
      hubName: config.name,
      epoch,
      // In a group only the leader commands; a standby says who does.
      mayCommand: () => (group && !group.isLeader() ? notLeaderError(group.view()) : null),
      ttlMs: config.commands.ttlMs,
      timeoutMs: config.commands.timeoutMs,
      signingKey: () => signing.privateKey(),
    },
    publish,
    store,
    metrics,
    clock,
    log.child({ part: 'commands' }),
  )
  undo.push(() => commands.close())
  let live: LiveFeed | null = null
  /**
   * Records a hub event and sends it to the live feed. With a database that cannot be written it
   * still reaches the feed (unnumbered): what the hub does then must be seen somewhere.
   */
  const hubEvent = (e: NewEvent): void => {
    let event: EventRow
    try {
      event = store.appendEvent(e)
    } catch {
      event = { id: 0, ...e }
    }
    live?.broadcast({ type: 'event', event })
  }
  const tracing = await createTracer(config.tracing, deps.version, log, deps.tracer)
  undo.push(() => tracing.shutdown())
  const tracer = new DecisionTracer(tracing.tracer, config.tracing.incidentIdleMs)
  undo.push(() => tracer.close())
  const fencing = new FenceService(config.fencing, {
    store,
    clock,
    log: log.child({ part: 'fencing' }),
    registry: metrics.registry,
    // Called only once the engine runs (fence actions come from it).
    input: (input) => engine.input(input),
    onEvent: (event) => live?.broadcast({ type: 'event', event }),
    onFenceOp: (op) => live?.broadcast({ type: 'fence', op }),
    spec,
    hubNode: config.node,
    tracer,
  })
  undo.push(() => fencing.close())
  let closing = false
  let watchdog: LoopWatchdog | null = null
  let stepQueued: NodeJS.Immediate | null = null
  const engineStep = () => {
    if (stepQueued) clearImmediate(stepQueued)
    stepQueued = null
    // After a freeze the engine's timer may fire before the watchdog's: the pause is reported
    // (and the detectors re-armed) before any silence is judged.
    watchdog?.checkPause()
    try {
      engine.tick()
      health.up('engine')
    } catch (err) {
      // A database that cannot be written has stopped the engine (storeFailed): nothing to redo.
      if (store.failing !== null) return
      // An engine bug must be loud, and must not take ingest, the API or the feed down with it;
      // the half-updated state is dropped for the last persisted one.
      log.error({ err }, 'engine step failed: resuming from the last persisted state')
      health.down('engine', `the last step failed: ${(err as Error).message}`)
      engine.recover()
    }
  }
  // The what-if plan on a thread of its own: seconds at a thousand hosts, never on the event loop.
  const planner = new Planner(log.child({ part: 'plan' }))
  undo.push(() => planner.close())
  const engine = new EngineLoop({
    spec,
    planner,
    // Everything that arrives in the same turn of the event loop goes into that one step.
    stepSoon: () => {
      if (!closing && !stepQueued) stepQueued = setImmediate(engineStep)
    },
    fence: (action) => fencing.run(action),
    tracer,
    // Observe mode: every node seen, except those that announced a clean shutdown.
    knownNodes: () => table.running(),
    store,
    commands,
    metrics,
    clock,
    log: log.child({ part: 'engine' }),
    epoch: () => epoch,
    ...(config.group
      ? { group: { commit: (stateJson, intents) => (group as HubGroup).commit(stateJson, intents) } }
      : {}),
    onRecord: (record) => live?.broadcast({ type: 'decision', record }),
    onEvent: (event) => live?.broadcast({ type: 'event', event }),
    onNodeCondition: (id) => {
      const node = table.view(id)
      if (node) live?.broadcast({ type: 'node', node })
    },
  })
  commands.onLateResult((late) => engine.lateResult(late))
  commands.onForeignResult((actionId, result) => engine.foreignResult(actionId, result))
  fencing.startMonitoring()
  fencing.startPowerPolling()
  const resumeFences = (why: string) => {
    for (const action of engine.inFlightFences()) {
      log.warn({ node: action.node, level: action.level + 1, devices: action.devices }, why)
      fencing.run(action, { resume: true })
    }
  }
  if (!config.group) resumeFences('resuming a fence that was in flight when the hub stopped')
  const history = new HistoryRing()
  const ingest = new Ingest(config.cluster, table, store, metrics, clock, log.child({ part: 'ingest' }), {
    onNodeUpdated: (id) => {
      const node = table.view(id)
      if (node) live?.broadcast({ type: 'node', node })
    },
    onEvent: (event) => live?.broadcast({ type: 'event', event }),
    onCommandResult: (result) => commands.handleResult(result),
    onEngineInput: (input) => engine.input(input),
    onHeartbeatDelay: (node, delayMs) => history.noteHeartbeat(node, delayMs),
    isolationProblem: (node, isolation) => (spec ? isolationTimingProblem(spec, node, isolation) : undefined),
  })

  const clusterFilter = `${TOPIC_ROOT}/${config.cluster}/#`
  const filters: { filter: string; qos: 0 | 1 }[] = [{ filter: clusterFilter, qos: 1 }]
  if (!broker) filters.push({ filter: '$SYS/broker/clients/connected', qos: 0 })
  link.start(filters, {
    onReady: () => {
      metrics.brokerConnected.set(1)
      health.up('broker')
      broker?.markReady()
    },
    onDown: () => {
      metrics.brokerConnected.set(0)
      health.down('broker', `not connected to the MQTT broker at ${mqttUrl}`)
    },
    onMessage: (topic, payload) => {
      if (closing) return // the store may already be closed
      if (topic === '$SYS/broker/clients/connected') {
        const n = Number(payload.toString())
        if (Number.isFinite(n)) brokerClients = n
        return
      }
      try {
        ingest.handle(topic, payload)
      } catch (err) {
        // A bug or a store failure must not take down ingest for every other node. A database
        // that cannot be written was reported once, when it failed, not once per message.
        if (store.failing === null) log.error({ err, topic }, 'ingest failed')
      }
    },
  })

  const flushTimer = setInterval(() => {
    try {
      store.flushHeartbeats(table.takeDirtyHeartbeats())
    } catch (err) {
      // Heartbeat times are kept in memory and written again with the next ones.
      if (store.failing === null) log.error({ err }, 'writing heartbeat times failed')
    }
  }, HEARTBEAT_FLUSH_MS)
  const engineTimer = setInterval(engineStep, config.engine.tickMs)
  const historyTimer = setInterval(() => {
    history.sample(clock.wallMs(), table.healths(), engine.resourceTally())
  }, history.everyMs)
  const retention = new Retention(store, config.store.retention, {
    now: () => clock.wallMs(),
    log: log.child({ part: 'retention' }),
    metrics,
  })
  retention.start()
  undo.push(() => {
    closing = true
    retention.close()
    clearInterval(flushTimer)
    clearInterval(historyTimer)
    clearInterval(engineTimer)
    if (stepQueued) clearImmediate(stepQueued)
  })
  if (!tokens.enabled)
    log.warn(
      'api.tokensFile is not set: anyone who reaches the API can move, maintain and fence (fine for a demo)',
    )
  const operatorRequests = new OperatorRequests({
    engine,
    confirmMeatware: (node, by) => fencing.confirm(node, by),
    audit: (e) => {
      const event = store.appendEvent(e)
      live?.broadcast({ type: 'event', event })
    },
    now: () => clock.wallMs(),
    log,
  })
  const api = createApi({
    auth: tokens,
    limiter: new RateLimiter(config.api.rateLimit.perSecond, config.api.rateLimit.burst),
    now: () => clock.wallMs(),
    table,
    store,
    commands,
    metrics,
    plan: () => engine.freshWhatIf(),
    peers: () => engine.peerMatrix(),
    resources: () => withHypervisors(engine.resourceViews(), table.views()),
    history: () => history.view(),
    reloadCluster: async (apply, by) => {
      const file = config.engine.clusterFile
      if (!file || !spec) return { refused: 'this hub has no cluster file (observe mode): nothing to reload' }
      let next: { spec: ClusterSpec; text: string }
      try {
        next = loadClusterFile(file, (s) => fencing.problemsWith(s))
      } catch (err) {
        return { invalid: err instanceof ConfigError ? err.message : String(err) }
      }
      const changes = specChanges(spec, next.spec)
      const refused = reloadRefusal(spec, next.spec, {
        fencePhase: (node) => engine.condition(node)?.fence ?? 'idle',
        resources: () => engine.resourceViews(),
      })
      if (refused) return { refused }
      if (apply) {
        // In a hub group the leader (a standby sends changes to it) records the file in etcd
        // first: any hub that takes over runs it, whatever its own copy says.
        if (group && !(await group.commitClusterFile(committedFile(next.text, by))))
          return {
            refused:
              'the cluster file could not be recorded in the hub group (etcd, or no longer the leader): nothing changed',
          }
        runSpec(next.spec, next.text, changes)
        log.info({ by, changes }, 'cluster file reloaded')
      }
      return { changes, applied: apply }
    },
    operator: (op, by, from) => operatorRequests.request(op, by, from),
    fencing: {
      view: () => ({
        devices: fencing.devicesView(),
        pending: fencing.pendingConfirmations(),
        nodes: (spec?.nodes ?? []).map((n) => ({
          node: n.id,
          levels: n.fencing.map((l) => l.devices),
          fenceableNow: fencing.fenceable(n.id),
          phase: engine.condition(n.id)?.fence ?? 'idle',
        })),
        history: store.fenceOps({ limit: 100 }),
      }),
      confirm: (node, by) => operatorRequests.confirmOff(node, by),
    },
    health: () => ({ ready: health.ready(), healthy: health.healthy(), parts: health.views() }),
    refuseChanges: () =>
      store.failing === null
        ? null
        : `this hub does not act while its database cannot be written (${store.failing})`,
    group: config.group
      ? {
          view: () => (group as HubGroup).view(),
          changesGoTo: () => {
            const g = group as HubGroup
            if (g.isLeader()) return null
            const v = g.view()
            return v.leader && v.leader.hub !== config.name
              ? { leaderUrl: v.leader.url }
              : { error: notLeaderError(v).message }
          },
        }
      : null,
    info: () => ({
      name: config.name,
      cluster: config.cluster,
      epoch,
      version: deps.version,
      mqttUrl,
      commandPublicKey: signing.publicPem(),
      maintenance: engine.clusterMaintenance(),
    }),
  })
  const { host, port } = splitHostPort(config.http.listen)
  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: api.fetch, hostname: host, port }, () => resolve(s as Server)) as Server
    s.once('error', reject)
  })
  undo.push(() => new Promise<void>((resolve) => server.close(() => resolve())))
  live = new LiveFeed(() => table.views(), metrics)
  undo.push(() => live?.close())
  live.attach(server, '/live', (header) => allows(tokens.identify(header)?.role ?? null, 'viewer'))
  const bound = server.address() as AddressInfo
  const httpHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address
  const httpUrl = `http://${httpHost}:${bound.port}`

  /** A new cluster definition, run from now on (a reload, or the group's at a takeover). */
  const runSpec = (next: ClusterSpec, text: string, changes: string[]) => {
    spec = next
    specText = text
    fencing.setSpec(next)
    engine.setSpec(next)
    engine.input({ type: 'operator', op: { op: 'reload', changes } })
  }
  const committedFile = (text: string, by: string): CommittedClusterFile => ({
    digest: createHash('sha256').update(text).digest('hex'),
    text,
    hub: config.name,
    by,
    at: clock.wallMs(),
  })
  /**
   * A takeover runs the cluster file the group runs: the one its leaders committed, when this
   * hub's own copy differs (said as a warning); none committed yet, this hub's own, committed now.
   */
  const runGroupClusterFile = (committed: CommittedClusterFile | null) => {
    if (!spec || specText === null || !group) return
    const mine = committedFile(specText, `${config.name}'s takeover`)
    if (committed === null) {
      void group.commitClusterFile(mine).then((ok) => {
        if (!ok)
          log.warn(
            "could not record this hub's cluster file in the group: the next takeover runs its own copy",
          )
      })
      return
    }
    if (committed.digest === mine.digest) return
    const file = `${config.engine.clusterFile} (the group's, committed by ${committed.hub})`
    let next: ClusterSpec
    try {
      next = parseClusterSpec(committed.text, file, (s) => fencing.problemsWith(s))
    } catch (err) {
      const problem = err instanceof ConfigError ? err.message : String(err)
      log.error({ problem }, "cannot run the group's cluster file: runs its own copy")
      hubEvent({
        at: clock.wallMs(),
        node: null,
        source: 'hub',
        kind: 'hub.cluster-file',
        severity: 'critical',
        message: `${config.name} cannot run the group's cluster file (committed by ${committed.hub}) and runs its own copy: ${problem}`,
        attrs: { digest: committed.digest },
      })
      return
    }
    const changes = specChanges(spec, next)
    runSpec(next, committed.text, changes)
    hubEvent({
      at: clock.wallMs(),
      node: null,
      source: 'hub',
      kind: 'hub.cluster-file',
      severity: 'warning',
      message: `${config.name} runs the group's cluster file (committed by ${committed.hub}, reloaded by ${committed.by}); its own copy differs: ${changes.join('; ') || 'in form only'}`,
      attrs: { digest: committed.digest, changes },
    })
  }

  if (config.group) {
    const groupLog = log.child({ part: 'group' })
    group = new HubGroup(
      await loadEtcd(),
      config.group,
      { name: config.name, cluster: config.cluster, url: config.group.advertiseUrl ?? httpUrl },
      {
        ...leadershipEvents(
          config.name,
          () => group as HubGroup,
          {
            setEpoch: (newEpoch) => {
              epoch = newEpoch
              commands.setEpoch(newEpoch)
            },
            runClusterFile: (committed) => runGroupClusterFile(committed),
            takeOver: (committed, why) => engine.takeOver(committed, why),
            standDown: () => engine.standDown(),
            step: engineStep,
            resumeFences,
            announceEpoch: () => {
              const heard = table.running()
              for (const id of heard) commands.send(id, 'ping').catch(() => {})
              return heard.length
            },
            countTakeover: () => metrics.takeovers.inc(),
            event: hubEvent,
            closing: () => closing,
            now: () => clock.wallMs(),
          },
          groupLog,
        ),
        mayLead: () => store.failing,
      },
      clock,
      groupLog,
    )
    group.start()
    const g = group
    const watchGroup = () => {
      const v = g.view()
      if (v.etcd.reachable) health.up('group')
      else health.down('group', `etcd does not answer (${v.etcd.lastError ?? 'no answer yet'})`)
    }
    groupHealthTimer = setInterval(watchGroup, 1000)
    undo.push(() => clearInterval(groupHealthTimer ?? undefined))
  }

  const storeGuard = new StoreGuard({
    store,
    probeEveryMs: STORE_PROBE_MS,
    stopActing: () => {
      if (group) group.stepDown('its database cannot be written')
      else engine.standDown()
    },
    actAgain: () => {
      if (group) return // the next campaign decides
      engine.takeOver(
        null,
        'the database can be written again',
        'hub acts again: its database can be written',
      )
      resumeFences('resuming a fence that was in flight when the database failed (power read first)')
    },
    partDown: (problem) => health.down('store', problem),
    partUp: () => health.up('store'),
    event: hubEvent,
    closing: () => closing,
    now: () => clock.wallMs(),
    log,
  })
  undo.push(() => storeGuard.close())

  watchdog = startLoopWatchdog({
    name: 'hub',
    stallMs: config.watchdog.stallMs,
    pauseMs: config.watchdog.pauseMs,
    now: () => clock.monoMs(),
    onResumed: (ms) => {
      metrics.pauses.inc()
      log.warn(
        { stoodStillMs: Math.round(ms) },
        'the hub stood still (frozen, or its event loop blocked): failure detectors re-armed',
      )
      engine.input({ type: 'hub-paused', forMs: Math.round(ms) })
      hubEvent({
        at: clock.wallMs(),
        node: null,
        source: 'hub',
        kind: 'hub.paused',
        severity: 'warning',
        message: `the hub stood still for ${(ms / 1000).toFixed(1)} s (its process frozen, or its event loop blocked): it heard nothing meanwhile, and re-armed its failure detectors`,
        attrs: { stoodStillMs: Math.round(ms) },
      })
    },
  })
  undo.push(() => watchdog?.close())

  if (!broker && config.mqtt.startDeadlineMs > 0) {
    // An external broker that cannot be reached at start: exit (the supervisor retries) rather
    // than run connected to nothing. Once connected, a lost broker is waited for without end.
    const deadline = config.mqtt.startDeadlineMs
    const connected = await new Promise<boolean>((resolve) => {
      const poll = setInterval(() => {
        if (health.state('broker') === 'up') done(true)
      }, 50)
      const timer = setTimeout(() => done(false), deadline)
      const done = (ok: boolean) => {
        clearInterval(poll)
        clearTimeout(timer)
        resolve(ok)
      }
    })
    if (!connected)
      throw new VigilError(
        'unavailable',
        `cannot reach the MQTT broker at ${mqttUrl} within ${deadline / 1000} s (mqtt.startDeadlineMs; 0 waits for ever)`,
      )
  }

  return {
    httpUrl,
    mqttUrl,
    liveUrl: `ws://${httpHost}:${bound.port}/live`,
    metricsUrl: `${httpUrl}/metrics`,
    commandPublicKeyFile: signing.publicKeyFile,
    get epoch() {
      return epoch
    },
    registry: metrics.registry,
    fatal: broker ? broker.died : new Promise<string>(() => {}),
    async close() {
      closing = true
      storeGuard.close()
      retention.close()
      if (groupHealthTimer) clearInterval(groupHealthTimer)
      await watchdog?.close()
      clearInterval(flushTimer)
      clearInterval(historyTimer)
      clearInterval(engineTimer)
      if (stepQueued) clearImmediate(stepQueued)
      await group?.close()
      if (engine.acting) engine.persist()
      await fencing.close()
      commands.close()
      live?.close()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await link.close()
      store.flushHeartbeats(table.takeDirtyHeartbeats())
      store.close()
      if (broker) await broker.close()
      tracer.close()
      await tracing.shutdown()
    },
  }
}
