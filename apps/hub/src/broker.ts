import { randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer, type Server } from 'node:net'
import type { Logger } from '@vigil/kit'
import { AGENT_CHANNELS, parseTopic } from '@vigil/protocol'
import { Aedes, type AuthenticateError } from 'aedes'

export interface EmbeddedBroker {
  url: string
  /** Credentials the hub's own client uses; only this client may publish commands. */
  hubCredentials: { username: string; password: string }
  clientCount(): number
  /** Call once the hub's own subscription is in place: until then other clients are turned away. */
  markReady(): void
  close(): Promise<void>
}

const HUB_USER = 'vigil-hub'

/**
 * Starts an in-process MQTT broker. The hub connects to it over loopback like any external broker,
 * so one code path serves both. Authorisation: the hub (random per-start password) may publish
 * anywhere under vigil/; any other client may publish only agent channels (hb, status, facts, obs,
 * event, ack), never `cmd`. Per-agent credentials and topic ownership come with issue #8.
 */
export async function startEmbeddedBroker(
  listen: { host: string; port: number },
  options: { allowAnonymous: boolean; log: Logger },
): Promise<EmbeddedBroker> {
  const hubPassword = randomBytes(24).toString('base64url')
  // Until the hub has subscribed, anything an agent publishes would reach no subscriber and be lost
  // (a buffered event replayed right after a hub restart): refuse agents as "server unavailable",
  // and they retry with backoff.
  let ready = false
  const broker = await Aedes.createBroker({ drainTimeout: 10_000 })
  broker.authenticate = (client, username, password, done) => {
    if (username === HUB_USER && password && safeEqual(password, Buffer.from(hubPassword))) {
      ;(client as unknown as { vigilRole: string }).vigilRole = 'hub'
      return done(null, true)
    }
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
    if (client === null) return callback(null) // the broker's own will/retained messages
    if ((client as unknown as { vigilRole?: string }).vigilRole === 'hub') return callback(null)
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
    hubCredentials: { username: HUB_USER, password: hubPassword },
    clientCount: () => broker.connectedClients,
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

function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}
