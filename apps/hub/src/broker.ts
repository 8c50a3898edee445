import { createServer, type Server } from 'node:net'
import type { Logger } from '@vigil/kit'
import { AGENT_CHANNELS, parseTopic } from '@vigil/protocol'
import { Aedes, type AuthenticateError } from 'aedes'

export interface EmbeddedBroker {
  url: string
  clientCount(): number
  /** In-process subscription: `deliver` runs for every message matching `filter`. */
  subscribe(filter: string, deliver: (topic: string, payload: Buffer) => void): Promise<void>
  /** In-process publish (QoS 1 to subscribers that asked for it), as the hub. */
  publish(topic: string, payload: string): Promise<void>
  /** Call once the hub's own subscription is in place: until then other clients are turned away. */
  markReady(): void
  close(): Promise<void>
}

/**
 * Starts an in-process MQTT broker. The hub itself uses it in-process (link.ts); network clients
 * may publish only agent channels (hb, status, facts, obs, event, ack), never `cmd`, which only the
 * hub's in-process publishes can carry. Per-agent credentials and topic ownership: issue #8.
 */
export async function startEmbeddedBroker(
  listen: { host: string; port: number },
  options: { allowAnonymous: boolean; log: Logger },
): Promise<EmbeddedBroker> {
  // Until the hub has subscribed, anything an agent publishes would reach no subscriber and be lost
  // (a buffered event replayed right after a hub restart): refuse agents as "server unavailable",
  // and they retry with backoff.
  let ready = false
  const broker = await Aedes.createBroker({ drainTimeout: 10_000 })
  broker.authenticate = (_client, username, _password, done) => {
    if (!ready) {
      const err = new Error('hub not ready yet') as AuthenticateError
      err.returnCode = 3
      return done(err, null)
    }
    if (username === undefined && options.allowAnonymous) return done(null, true)
    const err = new Error('bad user name or password') as AuthenticateError
    err.returnCode = 4
    done(err, null)
  }
  broker.authorizePublish = (client, packet, callback) => {
    if (client === null) return callback(null) // in-process: the hub's own publishes, wills
    const parsed = parseTopic(packet.topic)
    if (parsed && (AGENT_CHANNELS as readonly string[]).includes(parsed.channel)) return callback(null)
    if (!parsed && packet.topic.startsWith('vigil/')) return callback(null) // the hub counts it as unknown_topic
    options.log.warn({ clientId: client.id, topic: packet.topic }, 'broker refused a publish')
    callback(new Error('not authorised to publish on this topic'))
  }
  const server: Server = createServer(broker.handle)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(listen.port, listen.host, () => resolve())
  })
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : listen.port
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host
  return {
    url: `mqtt://${host}:${port}`,
    clientCount: () => broker.connectedClients,
    subscribe: (filter, deliver) =>
      new Promise<void>((resolve) => {
        broker.subscribe(
          filter,
          (packet, cb) => {
            deliver(
              packet.topic,
              Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload),
            )
            cb()
          },
          () => resolve(),
        )
      }),
    publish: (topic, payload) =>
      new Promise<void>((resolve, reject) => {
        broker.publish(
          { cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false },
          (err) => (err ? reject(err) : resolve()),
        )
      }),
    markReady: () => {
      ready = true
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close()
        broker.close(() => resolve())
      }),
  }
}
