import type { Logger } from '@vigil/kit'
import mqtt, { type IClientOptions } from 'mqtt'
import type { EmbeddedBroker } from './broker.js'

export interface LinkHandlers {
  onMessage(topic: string, payload: Buffer): void
  /** Subscribed (after every reconnection, for an external broker). */
  onReady(): void
  onDown(): void
}

/**
 * How the hub talks to its broker: the same few operations whether the broker is external (an
 * MQTT client over the network) or embedded (in-process calls on aedes, no socket in between).
 */
export interface BrokerLink {
  readonly connected: boolean
  start(filters: { filter: string; qos: 0 | 1 }[], handlers: LinkHandlers): void
  publish(topic: string, payload: string): Promise<void>
  close(): Promise<void>
}

/** An external broker through mqtt.js, with a persistent session and endless reconnection. */
export function clientLink(url: string, options: IClientOptions, log: Logger): BrokerLink {
  const client = mqtt.connect(url, options)
  return {
    get connected() {
      return client.connected
    },
    start(filters, handlers) {
      client.on('connect', () => {
        log.info({ mqttUrl: url }, 'connected to broker')
        client.subscribe(
          filters.map((f) => f.filter),
          { qos: 1 },
          (err) => {
            if (err) log.error({ err: err.message }, 'subscription failed')
            else handlers.onReady()
          },
        )
      })
      client.on('close', () => handlers.onDown())
      client.on('error', (err) => log.warn({ err: err.message, mqttUrl: url }, 'broker connection error'))
      client.on('message', (topic, payload) => handlers.onMessage(topic, payload))
    },
    async publish(topic, payload) {
      await client.publishAsync(topic, payload, { qos: 1, retain: false })
    },
    async close() {
      await client.endAsync()
    },
  }
}

/**
 * The embedded broker, in-process: the hub subscribes and publishes through aedes itself. This
 * removes a loopback hop from every message, and with it the hub's own socket, whose backpressure
 * could hold every publisher (docs/design/hub-and-store.md).
 */
export function inProcessLink(broker: EmbeddedBroker, log: Logger): BrokerLink {
  let ready = false
  return {
    get connected() {
      return ready
    },
    start(filters, handlers) {
      Promise.all(filters.map((f) => broker.subscribe(f.filter, handlers.onMessage))).then(
        () => {
          ready = true
          log.info({ mqttUrl: broker.url }, 'connected to broker')
          handlers.onReady()
        },
        (err: Error) => log.error({ err: err.message }, 'subscription failed'),
      )
    },
    publish: (topic, payload) => broker.publish(topic, payload),
    async close() {
      ready = false
    },
  }
}
