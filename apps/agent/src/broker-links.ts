/**
 * One connection per broker: alone, the hub's; in a hub group, every hub's embedded broker. The
 * agent says everything on each, so a hub hears it on its own broker, and losing any one broker
 * (or hub machine) loses nothing. Commands come from the leader's broker.
 *
 * Contract: `publishAll` says a message on every connected broker (or, `heard`, only on those whose
 * command subscription is confirmed) and calls `done` once, with an error only if no broker took
 * it. On each connection the links subscribe to the command topic, publish the birth message, then
 * tell the owner (`onConnect`, `first` for the agent's first connection to any broker). Each link
 * reconnects on its own, with exponential backoff and full jitter between `reconnect.minMs` and
 * `reconnect.maxMs`, reset on a successful connection.
 */
import { type Logger, withTimeout } from '@vigil/kit'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'

export interface BrokerLinksConfig {
  urls: string[]
  /** The options of every connection (client id, keepalive, will, credentials...). */
  options: IClientOptions
  reconnect: { minMs: number; maxMs: number }
  /** Subscribed on each connection, at QoS 1. */
  commandTopic: string
  /** Published on each connection (QoS 1, retained) right after the subscription is asked for. */
  birth: { topic: string; payload: () => string }
  /** Named in each "connected to broker" log line. */
  incarnation: number
}

export interface LinkHandlers {
  /** A broker accepted a connection; `first` on the first connection to any broker. */
  onConnect(first: boolean): void
  /** A message arrived on any broker (the same message may arrive on several). */
  onMessage(topic: string, payload: Buffer): void
}

export interface PublishOptions {
  qos: 0 | 1
  retain?: boolean
}

type Done = (err?: Error) => void

interface Link {
  url: string
  client: MqttClient
  /** This broker has confirmed the command subscription (see `commandable` below). */
  commandable: boolean
  backoffMs: number
}

export class BrokerLinks {
  private links: Link[] = []
  private firstConnect = true
  private stopping = false

  constructor(
    private readonly config: BrokerLinksConfig,
    private readonly log: Logger,
    /** The jitter's source (tests pass a fixed one). */
    private readonly random: () => number = Math.random,
  ) {}

  /** Opens one connection per broker; each then reconnects on its own until `close`. */
  connect(handlers: LinkHandlers): void {
    const { config, log } = this
    this.links = config.urls.map((url) => ({
      url,
      client: mqtt.connect(url, { ...config.options }),
      commandable: false,
      backoffMs: config.reconnect.minMs,
    }))
    for (const link of this.links) {
      const { client } = link
      client.on('message', handlers.onMessage)
      /**
       * Heard means commandable: heartbeats and observations wait, on each connection, until the
       * broker has confirmed the command subscription. A command the hub sends on hearing the first
       * of them would otherwise be published before the subscription exists, and be lost unanswered.
       */
      client.on('connect', () => {
        link.commandable = false
        link.backoffMs = config.reconnect.minMs
        client.options.reconnectPeriod = link.backoffMs
        log.info(
          { mqttUrl: link.url, incarnation: config.incarnation, reconnect: !this.firstConnect },
          'connected to broker',
        )
        client.subscribe(config.commandTopic, { qos: 1 }, (err, granted) => {
          if (err || granted?.some((g) => g.qos >= 128))
            log.error(
              { err: err?.message, topic: config.commandTopic, mqttUrl: link.url },
              'the broker refused the command subscription: the hub cannot command this node',
            )
          link.commandable = true
        })
        client.publish(config.birth.topic, config.birth.payload(), { qos: 1, retain: true })
        const first = this.firstConnect
        this.firstConnect = false
        handlers.onConnect(first)
      })
      client.on('close', () => {
        if (this.stopping) return
        const next = nextBackoff(link.backoffMs, config.reconnect, this.random)
        link.backoffMs = next.backoffMs
        client.options.reconnectPeriod = next.reconnectPeriod
      })
      client.on('offline', () =>
        log.warn(
          { mqttUrl: link.url },
          this.connected ? 'broker unreachable; the others carry on' : 'broker unreachable; buffering events',
        ),
      )
      client.on('error', (err) =>
        log.warn({ err: err.message, mqttUrl: link.url }, 'broker connection error'),
      )
    }
  }

  /** Called on every packet from any broker: proof the network to some broker works. */
  onPacket(listener: () => void): void {
    for (const { client } of this.links) client.on('packetreceive', listener)
  }

  /** True while connected to some broker. */
  get connected(): boolean {
    return this.links.some((l) => l.client.connected)
  }

  /** Heard means commandable (see the connect handler): some broker can deliver a command. */
  get commandable(): boolean {
    return this.links.some((l) => l.client.connected && l.commandable)
  }

  /**
   * Publishes on every connected broker (`heard`: only those whose command subscription is
   * confirmed); `done` is called once, with an error only if no broker took the message.
   */
  publishAll(topic: string, payload: string, opts: PublishOptions, heard = false, done?: Done): void {
    const targets = this.links.filter((l) => l.client.connected && (!heard || l.commandable))
    fanOut(
      targets.map((l) => (sent: Done) => l.client.publish(topic, payload, opts, sent)),
      done,
    )
  }

  publishAllAsync(topic: string, payload: string, opts: PublishOptions): Promise<void> {
    return new Promise<void>((resolve, reject) =>
      this.publishAll(topic, payload, opts, false, (err) => (err ? reject(err) : resolve())),
    )
  }

  /** Ends every connection. */
  async close(): Promise<void> {
    this.stopping = true
    // A broker that went away with us must not hold the shutdown: force the close after a second.
    await Promise.all(
      this.links.map(({ client }) => withTimeout(client.endAsync(), 1000).catch(() => client.end(true))),
    )
  }
}

/**
 * Starts every send at once and calls `done` once all have answered: with no error if any of them
 * succeeded, else with the last one's error; with "no broker connected" if there was none to start.
 */
export function fanOut(sends: ((sent: Done) => void)[], done?: Done): void {
  if (sends.length === 0) {
    done?.(new Error('no broker connected'))
    return
  }
  let waiting = sends.length
  let taken = false
  for (const send of sends)
    send((err) => {
      if (!err) taken = true
      if (--waiting === 0) done?.(taken ? undefined : err)
    })
}

/**
 * The backoff after a connection closed. Exponential backoff with full jitter, bounded by
 * reconnect.maxMs: the bound doubles (up to maxMs) and the next attempt waits a random share of it,
 * never less than minMs.
 */
export function nextBackoff(
  backoffMs: number,
  reconnect: { minMs: number; maxMs: number },
  random: () => number,
): { backoffMs: number; reconnectPeriod: number } {
  const next = Math.min(reconnect.maxMs, backoffMs * 2)
  return { backoffMs: next, reconnectPeriod: Math.max(reconnect.minMs, Math.round(random() * next)) }
}
