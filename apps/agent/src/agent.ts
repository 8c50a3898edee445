import type { KeyObject } from 'node:crypto'
import { statSync } from 'node:fs'
import { DriverError } from '@vigil/driver-kit'
import {
  brokerCredentials,
  type Clock,
  type Logger,
  readConfigFile,
  systemClock,
  VigilError,
  withTimeout,
} from '@vigil/kit'
import {
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
import type { IClientOptions } from 'mqtt'
import { BrokerLinks } from './broker-links.js'
import type { AgentConfig } from './config.js'
import { DiskHeartbeat } from './disk-heartbeat.js'
import type { ResourceEntry } from './drivers.js'
import { type EventInput, EventOutbox } from './event-outbox.js'
import { CommandGate, refusal } from './executor.js'
import { collectFacts } from './facts.js'
import { HeartbeatSender } from './heartbeat.js'
import { IsolationGuard, isolationTiming } from './isolation.js'
import { ObservationSender } from './observations.js'
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
  emit(event: EventInput): void
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
  const self = { node: config.node, incarnation }
  const topic = (channel: NodeChannel) => nodeTopic(config.cluster, config.node, channel)
  const gate = new CommandGate(config.node, config.commands.stateFile)
  const hubKeys = config.commands.hubPublicKeyFile
    ? trustedHubKeys(config.commands.hubPublicKeyFile, log)
    : null
  if (!hubKeys)
    log.warn(
      "commands.allowUnsigned: commands are not authenticated; set commands.hubPublicKeyFile to the hub's public key (its <db>.pub.pem)",
    )
  // Resources may report a change before there is anywhere to send it: until then, nobody is told.
  let observations: ObservationSender | undefined
  const resources = new ResourceRunner(
    config.resources as ResourceEntry[],
    log,
    () => observations?.publish(),
    clock,
  )

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
  const links = new BrokerLinks(
    {
      urls: config.mqtt.url,
      options,
      reconnect: config.reconnect,
      commandTopic: topic('cmd'),
      birth: { topic: topic('status'), payload: () => status('online') },
      incarnation,
    },
    log,
  )

  const publishFacts = async () => {
    try {
      const facts = await collectFacts(config.node, incarnation, clock.wallMs())
      if (links.connected)
        await links.publishAllAsync(topic('facts'), encode('facts', facts), { qos: 1, retain: true })
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'could not publish facts')
    }
  }

  const outbox = new EventOutbox(self, config.eventBuffer.capacity, {
    clock,
    log,
    connected: () => links.connected,
    publish: (event, done) =>
      links.publishAll(topic('event'), encode('event', event), { qos: 1 }, false, done),
  })
  const emit: RunningAgent['emit'] = (e) => outbox.emit(e)

  const reply = (result: CommandResult) => {
    links.publishAll(topic('ack'), encode('ack', result), { qos: 1 })
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

  links.connect({
    onMessage,
    onConnect: (first) => {
      if (first)
        emit({
          kind: 'agent.started',
          severity: 'info',
          message: `agent ${deps.version} started`,
          attrs: { incarnation },
        })
      outbox.flush()
      void publishFacts()
    },
  })

  observations = new ObservationSender(self, {
    clock,
    observations: () => resources.observations(),
    canSend: () => links.commandable,
    send: (batch) => links.publishAll(topic('obs'), encode('obs', batch), { qos: 0 }, true),
  })
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
  // (see HeartbeatSender): the hub then hears a slot's advance one sampling stage after the write,
  // not two (a read on its own timer, then the next heartbeat), which makes the disk channel's
  // arrivals regular and its silence after a crash quick to call.
  const diskInStep = config.diskHeartbeat.intervalMs === config.heartbeat.intervalMs
  if (!diskInStep) diskHeartbeat.start()
  const isolation = new IsolationGuard(config.isolation, {
    clock,
    log,
    hearsPeers: () => mesh.hears().length > 0,
    stopAll: () => resources.stopAll(),
    emit: (kind, severity, message) => emit({ kind, severity, message }),
  })
  links.onPacket(() => isolation.contact())
  isolation.start()
  observations.start()
  const heartbeat = new HeartbeatSender(
    { ...self, intervalMs: config.heartbeat.intervalMs },
    {
      clock,
      mesh,
      disk: diskHeartbeat,
      diskInStep,
      canSend: () => links.commandable,
      send: (hb) => links.publishAll(topic('hb'), encode('hb', hb), { qos: 0 }, true),
    },
  )
  heartbeat.start()
  const factsTimer = setInterval(() => void publishFacts(), config.facts.intervalMs)

  return {
    node: config.node,
    incarnation,
    get connected() {
      return links.connected
    },
    emit,
    async stop() {
      heartbeat.close()
      clearInterval(factsTimer)
      observations?.close()
      isolation.close()
      mesh.close()
      diskHeartbeat.close()
      await resources.close()
      if (links.connected) {
        try {
          await withTimeout(
            links.publishAllAsync(topic('status'), status('offline'), { qos: 1, retain: true }),
            1000,
          )
        } catch (err) {
          log.warn({ err: (err as Error).message }, 'could not announce shutdown')
        }
      }
      await links.close()
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
