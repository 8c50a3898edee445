import type { KeyObject } from 'node:crypto'
import { statSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { DriverError } from '@vigil/driver-kit'
import {
  BoundedQueue,
  brokerCredentials,
  type Clock,
  type Logger,
  readConfigFile,
  systemClock,
  VigilError,
  withTimeout,
} from '@vigil/kit'
import {
  type AgentEvent,
  type Command,
  type CommandResult,
  decode,
  encode,
  type NodeChannel,
  nodeTopic,
  publicKeysFromPem,
  type Status,
  verifyCommand,
} from '@vigil/protocol'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import type { AgentConfig } from './config.js'
import { DiskHeartbeat } from './disk-heartbeat.js'
import type { ResourceEntry } from './drivers.js'
import { CommandGate, refusal } from './executor.js'
import { collectFacts } from './facts.js'
import { IsolationGuard, isolationTiming } from './isolation.js'
import { PeerMesh } from './peers.js'
import { ResourceRunner } from './resources.js'

export interface AgentDeps {
  log: Logger
  clock?: Clock
  mqttPassword?: string
  version: string
}

export interface RunningAgent {
  node: string
  incarnation: number
  /** True while connected to the broker. */
  readonly connected: boolean
  /** Queue an edge event; sent now if connected, else buffered (bounded, oldest dropped). */
  emit(event: Pick<AgentEvent, 'kind' | 'severity' | 'message'> & { attrs?: AgentEvent['attrs'] }): void
  stop(): Promise<void>
}

const CAPABILITIES = ['ping', 'refresh-facts', 'start', 'stop', 'restart']

/**
 * Connects to the broker with a retained birth message and a last will, sends heartbeats, publishes
 * facts, and carries out the hub's commands. Reconnects with exponential backoff and jitter; events
 * raised while disconnected wait in a bounded buffer and are sent in order on reconnect.
 */
export async function startAgent(config: AgentConfig, deps: AgentDeps): Promise<RunningAgent> {
  const clock = deps.clock ?? systemClock
  const log = deps.log.child({ node: config.node })
  const incarnation = Math.floor(clock.wallMs())
  const topic = (channel: NodeChannel) => nodeTopic(config.cluster, config.node, channel)
  const gate = new CommandGate(config.node, config.commands.stateFile)
  const hubKeys = config.commands.hubPublicKeyFile
    ? trustedHubKeys(config.commands.hubPublicKeyFile, log)
    : null
  if (!hubKeys)
    log.warn(
      "commands.allowUnsigned: commands are not authenticated; set commands.hubPublicKeyFile to the hub's public key (its <db>.pub.pem)",
    )
  const buffer = new BoundedQueue<AgentEvent>(config.eventBuffer.capacity)
  let eventSeq = 0
  let hbSeq = 0
  let obsSeq = 0
  let publishObservations = () => {}
  const resources = new ResourceRunner(
    config.resources as ResourceEntry[],
    log,
    () => publishObservations(),
    clock,
  )
  let stopping = false
  let reportedDrops = 0

  const isolationAnnounced = isolationTiming(
    config.isolation,
    config.diskHeartbeat.path !== undefined,
    resources.longestStopMs(),
  )
  const actionTimeouts = resources.actionTimeouts()
  const status = (state: Status['state']): string =>
    encode('status', {
      v: 1,
      node: config.node,
      incarnation,
      state,
      at: clock.wallMs(),
      agentVersion: deps.version,
      role: config.role,
      capabilities: [...CAPABILITIES, ...resources.capabilities()].slice(0, 256),
      actionTimeouts,
      ...(isolationAnnounced ? { isolation: isolationAnnounced } : {}),
    })

  const options: IClientOptions = {
    clientId: `vigil-agent-${config.cluster}-${config.node}`,
    clean: true,
    keepalive: config.mqtt.keepaliveSeconds,
    reconnectPeriod: config.reconnect.minMs,
    connectTimeout: 5000,
    queueQoSZero: false,
    // Keep retrying after a refused CONNACK (broker not ready, credentials being rotated): without
    // this mqtt.js gives up for good, and a Vigil process must never stop trying to reach its broker.
    reconnectOnConnackError: true, // a heartbeat that could not be sent now is worthless later
    will: { topic: topic('status'), payload: Buffer.from(status('gone')), qos: 1, retain: true },
  }
  Object.assign(options, brokerCredentials(config.mqtt, deps.mqttPassword))

  /**
   * One connection per broker: alone, the hub's; in a hub group, every hub's embedded broker. The
   * agent says everything on each, so a hub hears it on its own broker, and losing any one broker
   * (or hub machine) loses nothing. Commands come from the leader's broker.
   */
  interface Link {
    url: string
    client: MqttClient
    /** This broker has confirmed the command subscription (see `commandable` below). */
    commandable: boolean
    backoffMs: number
  }
  const links: Link[] = config.mqtt.url.map((url) => ({
    url,
    client: mqtt.connect(url, { ...options }),
    commandable: false,
    backoffMs: config.reconnect.minMs,
  }))
  const connected = () => links.some((l) => l.client.connected)
  /** Heard means commandable (see the connect handler): some broker can deliver a command. */
  const commandable = () => links.some((l) => l.client.connected && l.commandable)
  /**
   * Publishes on every connected broker (`heard`: only those whose command subscription is
   * confirmed); `done` is called once, with an error only if no broker took the message.
   */
  const publishAll = (
    t: string,
    payload: string,
    opts: { qos: 0 | 1; retain?: boolean },
    heard = false,
    done?: (err?: Error) => void,
  ) => {
    const targets = links.filter((l) => l.client.connected && (!heard || l.commandable))
    if (targets.length === 0) {
      done?.(new Error('no broker connected'))
      return
    }
    let waiting = targets.length
    let taken = false
    for (const l of targets)
      l.client.publish(t, payload, opts, (err) => {
        if (!err) taken = true
        if (--waiting === 0) done?.(taken ? undefined : err)
      })
  }
  const publishAllAsync = (t: string, payload: string, opts: { qos: 0 | 1; retain?: boolean }) =>
    new Promise<void>((resolve, reject) =>
      publishAll(t, payload, opts, false, (err) => (err ? reject(err) : resolve())),
    )

  const publishFacts = async () => {
    try {
      const facts = await collectFacts(config.node, incarnation, clock.wallMs())
      if (connected()) await publishAllAsync(topic('facts'), encode('facts', facts), { qos: 1, retain: true })
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'could not publish facts')
    }
  }

  const sendEvent = (event: AgentEvent) => {
    publishAll(topic('event'), encode('event', event), { qos: 1 }, false, (err) => {
      if (err) buffer.unshiftAll([event])
    })
  }

  const flushBuffer = () => {
    // Drain before anything new is emitted, or a new event would evict a buffered one.
    // Sorted: a send that failed was put back after newer events; the hub expects seq order.
    const pending = buffer.drain().sort((x, y) => x.seq - y.seq)
    for (const event of pending) sendEvent(event)
    if (pending.length > 0) log.info({ replayed: pending.length }, 'buffered events sent')
    const dropped = buffer.dropped - reportedDrops
    if (dropped > 0) {
      reportedDrops = buffer.dropped
      emit({
        kind: 'agent.events_dropped',
        severity: 'warning',
        message: `${dropped} events were dropped while the broker was unreachable (buffer capacity ${buffer.capacity})`,
        attrs: { dropped },
      })
    }
  }

  const emit: RunningAgent['emit'] = (e) => {
    const event: AgentEvent = {
      v: 1,
      node: config.node,
      incarnation,
      seq: eventSeq++,
      at: clock.wallMs(),
      kind: e.kind,
      severity: e.severity,
      message: e.message,
      ...(e.attrs ? { attrs: e.attrs } : {}),
    }
    if (connected() && buffer.size === 0) sendEvent(event)
    else buffer.push(event)
  }

  const reply = (result: CommandResult) => {
    publishAll(topic('ack'), encode('ack', result), { qos: 1 })
  }

  /** The driver action a resource command runs (the hub's reset-vm and reboot-vm are reset, reboot). */
  const driverAction = (action: Exclude<Command['action'], 'ping' | 'refresh-facts'>) =>
    action === 'reset-vm' ? 'reset' : action === 'reboot-vm' ? 'reboot' : action

  const resourceDeadline = (cmd: Command): number | null => {
    if (cmd.action === 'ping' || cmd.action === 'refresh-facts') return null
    return resources.deadlineMs(String(cmd.args.resource ?? ''), driverAction(cmd.action))
  }

  const execute = async (cmd: Command, receivedAt: number): Promise<CommandResult> => {
    const base = { v: 1 as const, id: cmd.id, node: config.node, incarnation, receivedAt }
    switch (cmd.action) {
      case 'ping':
        return {
          ...base,
          status: 'ok',
          finishedAt: clock.wallMs(),
          result: { pong: true, agentTime: clock.wallMs() },
        }
      case 'refresh-facts':
        await publishFacts()
        return { ...base, status: 'ok', finishedAt: clock.wallMs(), result: { refreshed: true } }
      case 'start':
      case 'stop':
      case 'restart':
      case 'reset-vm':
      case 'reboot-vm':
      case 'suspend':
      case 'resume':
      case 'migrate': {
        const id = String(cmd.args.resource ?? '')
        const action = driverAction(cmd.action)
        // The hub engine's action id, echoed: a hub of the group that did not send this command
        // (it took over meanwhile) still knows which action the result answers.
        const echo: Record<string, string> =
          typeof cmd.args.action === 'string' ? { action: cmd.args.action } : {}
        // migrate: the hub names the node to move to; the driver maps the name to its address.
        const target = cmd.action === 'migrate' ? String(cmd.args.to ?? '') : undefined
        try {
          await resources.run(id, action, target === undefined ? {} : { target })
          return { ...base, status: 'ok', finishedAt: clock.wallMs(), result: { resource: id, ...echo } }
        } catch (err) {
          // The error's kind is the recovery scope the hub's engine acts on.
          const kind = err instanceof DriverError ? err.kind : 'transient'
          return {
            ...base,
            status: 'failed',
            finishedAt: clock.wallMs(),
            result: { resource: id, ...echo },
            error: { code: kind, message: (err as Error).message },
          }
        }
      }
    }
  }

  /** Ids of the commands handled lately: the same command reaching it through two brokers runs once. */
  const handled = new Set<string>()
  /** The outcome of each resource action lately run here, by its idempotency key (see below). */
  const actions = new Map<string, Promise<CommandResult>>()
  const onMessage = (t: string, payload: Buffer) => {
    if (t !== topic('cmd')) return
    const receivedAt = clock.wallMs()
    const decoded = decode('cmd', payload)
    if (!decoded.ok) {
      log.warn({ field: decoded.error.field, reason: decoded.error.reason }, 'malformed command ignored')
      emit({ kind: 'command.malformed', severity: 'warning', message: decoded.error.message })
      return
    }
    const cmd = decoded.value
    if (handled.has(cmd.id)) return
    handled.add(cmd.id)
    if (handled.size > 1000) handled.delete(handled.values().next().value as string)
    // The signature first: an unverified command must not even move the replay floor.
    const refused = hubKeys
      ? !cmd.sig
        ? 'unsigned'
        : !verifyCommand(cmd, hubKeys())
          ? 'bad_signature'
          : gate.check(cmd, receivedAt)
      : gate.check(cmd, receivedAt)
    if (refused) {
      log.warn({ command: cmd.id, action: cmd.action, reason: refused }, 'command refused')
      emit({
        kind: 'command.refused',
        severity: 'warning',
        message: `${cmd.action} refused: ${refused}`,
        attrs: { command: cmd.id, reason: refused },
      })
      reply(refusal(cmd, config.node, incarnation, refused, receivedAt))
      return
    }
    log.info(
      { command: cmd.id, action: cmd.action, seq: cmd.seq, epoch: cmd.issuer.epoch },
      'command accepted',
    )
    // Said at once, with the action's deadline: the hub's command timeout covers only delivery and
    // acceptance; it then awaits the result for as long as the driver may take (a live migration
    // of minutes), never giving up on an action that is still running.
    const deadlineMs = resourceDeadline(cmd)
    if (deadlineMs !== null)
      reply({
        v: 1,
        id: cmd.id,
        node: config.node,
        incarnation,
        status: 'accepted',
        receivedAt,
        finishedAt: receivedAt,
        result: { timeoutMs: deadlineMs },
      })
    // The hub's action id is the idempotency key, apart from the command's id and nonce: a hub that
    // lost the answer (it could not hear this node, or restarted) asks again under a new command,
    // and a migration or a reset that ran (or runs) here is answered from its record, not run twice.
    const key = actionKeyOf(cmd)
    let outcome = key === null ? undefined : actions.get(key)
    if (outcome) {
      log.info(
        { command: cmd.id, action: cmd.action, resource: cmd.args.resource, key },
        'command repeats an action already run here: answered from its record, not run again',
      )
    } else {
      outcome = execute(cmd, receivedAt).catch(
        (err: unknown): CommandResult => ({
          v: 1,
          id: cmd.id,
          node: config.node,
          incarnation,
          status: 'failed',
          receivedAt,
          finishedAt: clock.wallMs(),
          error: { code: 'action_failed', message: err instanceof Error ? err.message : String(err) },
        }),
      )
      if (key !== null) {
        actions.set(key, outcome)
        if (actions.size > 1000) actions.delete(actions.keys().next().value as string)
      }
    }
    void outcome.then((result) => reply({ ...result, id: cmd.id, receivedAt }))
  }

  let firstConnect = true
  for (const link of links) {
    const { client } = link
    client.on('message', onMessage)
    /**
     * Heard means commandable: heartbeats and observations wait, on each connection, until the
     * broker has confirmed the command subscription. A command the hub sends on hearing the first
     * of them would otherwise be published before the subscription exists, and be lost unanswered.
     */
    client.on('connect', () => {
      link.commandable = false
      link.backoffMs = config.reconnect.minMs
      client.options.reconnectPeriod = link.backoffMs
      log.info({ mqttUrl: link.url, incarnation, reconnect: !firstConnect }, 'connected to broker')
      client.subscribe(topic('cmd'), { qos: 1 }, (err, granted) => {
        if (err || granted?.some((g) => g.qos >= 128))
          log.error(
            { err: err?.message, topic: topic('cmd'), mqttUrl: link.url },
            'the broker refused the command subscription: the hub cannot command this node',
          )
        link.commandable = true
      })
      client.publish(topic('status'), status('online'), { qos: 1, retain: true })
      if (firstConnect)
        emit({
          kind: 'agent.started',
          severity: 'info',
          message: `agent ${deps.version} started`,
          attrs: { incarnation },
        })
      firstConnect = false
      flushBuffer()
      void publishFacts()
    })
    client.on('close', () => {
      if (stopping) return
      // Exponential backoff with full jitter, bounded by reconnect.maxMs.
      link.backoffMs = Math.min(config.reconnect.maxMs, link.backoffMs * 2)
      client.options.reconnectPeriod = Math.max(
        config.reconnect.minMs,
        Math.round(Math.random() * link.backoffMs),
      )
    })
    client.on('offline', () =>
      log.warn(
        { mqttUrl: link.url },
        connected() ? 'broker unreachable; the others carry on' : 'broker unreachable; buffering events',
      ),
    )
    client.on('error', (err) => log.warn({ err: err.message, mqttUrl: link.url }, 'broker connection error'))
  }

  publishObservations = () => {
    if (!commandable() || !resources) return
    // Sent even when empty: "this node runs none of the cluster's resources" is information too.
    const observations = resources.observations()
    publishAll(
      topic('obs'),
      encode('obs', {
        v: 1,
        node: config.node,
        incarnation,
        seq: obsSeq++,
        at: clock.wallMs(),
        observations,
        complete: true,
      }),
      { qos: 0 },
      true,
    )
  }
  resources.start()
  const mesh = new PeerMesh(
    config.peers,
    { cluster: config.cluster, node: config.node, incarnation },
    { clock, log },
  )
  await mesh.start()
  const diskHeartbeat = new DiskHeartbeat(
    config.diskHeartbeat,
    { node: config.node, incarnation },
    { clock, log },
  )
  // At the heartbeat's own rhythm the disk is read at each heartbeat tick, just before it is sent
  // (below): the hub then hears a slot's advance one sampling stage after the write, not two (a
  // read on its own timer, then the next heartbeat), which makes the disk channel's arrivals
  // regular and its silence after a crash quick to call.
  const diskInStep = config.diskHeartbeat.intervalMs === config.heartbeat.intervalMs
  if (!diskInStep) diskHeartbeat.start()
  const isolation = new IsolationGuard(config.isolation, {
    clock,
    log,
    hearsPeers: () => mesh.hears().length > 0,
    stopAll: () => resources.stopAll(),
    emit: (kind, severity, message) => emit({ kind, severity, message }),
  })
  for (const { client } of links) client.on('packetreceive', () => isolation.contact())
  isolation.start()
  const obsTimer = setInterval(() => publishObservations(), 1000)

  const heartbeatTimer = setInterval(async () => {
    const seq = hbSeq++ // advances while disconnected too, so the hub sees the gap
    // A slow or hung device delays a heartbeat by a quarter interval at most, never more: the
    // network channel must not depend on the disk's health (a skipped beat is still in flight).
    if (diskInStep && diskHeartbeat.enabled)
      await Promise.race([diskHeartbeat.beat(), sleep(config.heartbeat.intervalMs / 4)])
    if (!commandable()) return
    publishAll(
      topic('hb'),
      encode('hb', {
        v: 1,
        node: config.node,
        incarnation,
        seq,
        sentMono: clock.monoMs(),
        sentAt: clock.wallMs(),
        intervalMs: config.heartbeat.intervalMs,
        ...(mesh.enabled ? { hears: mesh.hears() } : {}),
        ...(diskHeartbeat.enabled ? { disk: diskHeartbeat.sightings() } : {}),
      }),
      { qos: 0 },
      true,
    )
  }, config.heartbeat.intervalMs)
  const factsTimer = setInterval(() => void publishFacts(), config.facts.intervalMs)

  return {
    node: config.node,
    incarnation,
    get connected() {
      return connected()
    },
    emit,
    async stop() {
      stopping = true
      clearInterval(heartbeatTimer)
      clearInterval(factsTimer)
      clearInterval(obsTimer)
      isolation.close()
      mesh.close()
      diskHeartbeat.close()
      await resources.close()
      if (connected()) {
        try {
          await withTimeout(
            publishAllAsync(topic('status'), status('offline'), { qos: 1, retain: true }),
            1000,
          )
        } catch (err) {
          log.warn({ err: (err as Error).message }, 'could not announce shutdown')
        }
      }
      // A broker that went away with us must not hold the shutdown: force the close after a second.
      await Promise.all(
        links.map(({ client }) => withTimeout(client.endAsync(), 1000).catch(() => client.end(true))),
      )
    },
  }
}

/**
 * The hub keys this agent trusts, from a PEM file of one or several public keys, re-read when it
 * changes: a key rotation adds the new key beside the old, moves the hub to it, then drops the
 * old one, with no restart anywhere. A file that turns unreadable keeps the last good keys.
 */
function trustedHubKeys(file: string, log: Logger): () => KeyObject[] {
  const load = () => publicKeysFromPem(readConfigFile(file, 'commands.hubPublicKeyFile').toString('utf8'))
  let keys: KeyObject[]
  try {
    keys = load()
  } catch (err) {
    if (err instanceof VigilError) throw err
    throw new VigilError('config_invalid', `commands.hubPublicKeyFile: ${file} holds no PEM public key`, {
      cause: err,
    })
  }
  let mtime = statSync(file).mtimeMs
  return () => {
    try {
      const now = statSync(file).mtimeMs
      if (now !== mtime) {
        mtime = now
        keys = load()
        log.info({ file, keys: keys.length }, 'hub public keys reloaded')
      }
    } catch (err) {
      log.error({ err, file }, 'hub public key file unreadable or invalid: keeping the previous keys')
    }
    return keys
  }
}

/**
 * A resource command's idempotency key: the hub engine's action id with what it asks. Null for a
 * command without one (ping, facts, an older hub), which is simply run.
 */
function actionKeyOf(cmd: Command): string | null {
  const action = cmd.args.action
  if (typeof action !== 'string' || cmd.action === 'ping' || cmd.action === 'refresh-facts') return null
  return `${action}/${cmd.action}/${String(cmd.args.resource ?? '')}`
}
