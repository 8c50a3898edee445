import type { KeyObject } from 'node:crypto'
import { statSync } from 'node:fs'
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
  encode,
  type NodeChannel,
  nodeTopic,
  publicKeysFromPem,
  type Status,
  verifyCommand,
} from '@vigil/protocol'
import type { IClientOptions } from 'mqtt'
import { BrokerLinks } from './broker-links.js'
import { CommandHandler } from './commands.js'
import type { AgentConfig } from './config.js'
import { DiskHeartbeat } from './disk-heartbeat.js'
import type { ResourceEntry } from './drivers.js'
import { type EventInput, EventOutbox } from './event-outbox.js'
import { CommandGate } from './executor.js'
import { collectFacts } from './facts.js'
import { HeartbeatSender } from './heartbeat.js'
import { IsolationGuard, isolationTiming } from './isolation.js'
import { ObservationSender } from './observations.js'
import { PeerMesh } from './peers.js'
import { ResourceRunner } from './resources.js'
import { hostShuttingDown } from './shutdown.js'

export interface AgentDeps {
  log: Logger
  clock?: Clock
  mqttPassword?: string
  version: string
  /** Whether the host is going down with the agent (default: systemd says it is stopping). */
  hostShuttingDown?: () => Promise<boolean>
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
  const status = (state: Status['state'], stopping?: Status['stopping']): string =>
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
      ...(stopping ? { stopping } : {}),
    })

  const options: IClientOptions = {
    clientId: `vigil-agent-${config.cluster}-${config.node}`,
    clean: true,
    keepalive: config.mqtt.keepaliveSeconds,
    reconnectPeriod: config.reconnect.minMs,
    connectTimeout: 5000,
    queueQoSZero: false,
    // mqtt-packet's cache of 65,536 pre-built buffers for packet ids and lengths: about 7 MiB of
    // heap (15 MiB of RSS) to save an allocation per packet, a few packets a second here (#20).
    writeCache: false,
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

  const commands = new CommandHandler(self, {
    clock,
    log,
    reply: (result) => links.publishAll(topic('ack'), encode('ack', result), { qos: 1 }),
    emit,
    verify: hubKeys ? (cmd) => verifyCommand(cmd, hubKeys()) : null,
    gate: (cmd, receivedAt) => {
      const refused = gate.check(cmd, receivedAt)
      if (refused === 'floor_unsaved')
        log.error(
          { problem: gate.lastSaveError },
          'the replay floor cannot be saved (commands.stateFile): every command is refused until it can',
        )
      return refused
    },
    refreshFacts: publishFacts,
    resources,
  })

  links.connect({
    onMessage: (t, payload) => {
      if (t === topic('cmd')) commands.receive(payload)
    },
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
      // Said before the heartbeats end, so that the hub never reads the silence as a death first:
      // a stop of the agent alone (a restart, an upgrade) is held, not fenced; a host shutdown not.
      if (links.connected) {
        try {
          const stopping = (await (deps.hostShuttingDown ?? hostShuttingDown)()) ? 'host' : 'agent'
          await withTimeout(
            links.publishAllAsync(topic('status'), status('offline', stopping), { qos: 1, retain: true }),
            1000,
          )
          log.info({ node: config.node, stopping }, 'shutdown announced')
        } catch (err) {
          log.warn({ err: (err as Error).message }, 'could not announce shutdown')
        }
      }
      heartbeat.close()
      clearInterval(factsTimer)
      observations?.close()
      isolation.close()
      mesh.close()
      diskHeartbeat.close()
      await resources.close()
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
