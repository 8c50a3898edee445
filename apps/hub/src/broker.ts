import { createServer, type Server } from 'node:net'
import { createServer as createTlsServer, type TLSSocket } from 'node:tls'
import { type Logger, loadConfigFile, readConfigFile } from '@vigil/kit'
import { AGENT_CHANNELS, nameSchema, nodeTopic, parseTopic } from '@vigil/protocol'
import { Aedes, type AuthenticateError, type Client } from 'aedes'
import { z } from 'zod'
import { matchDigest, WatchedFile } from './auth.js'

export const brokerTlsSchema = z.strictObject({
  certFile: z.string().min(1),
  keyFile: z.string().min(1),
  /** CA that signs agents' client certificates (required with requireClientCert). */
  caFile: z.string().min(1).optional(),
  /** Mutual TLS: every client presents a certificate from caFile; its CN is its node name. */
  requireClientCert: z.boolean().default(false),
})
export type BrokerTls = z.infer<typeof brokerTlsSchema>

/** Agents' broker passwords: SHA-256 digests only (`vigil credentials issue` writes this file). */
export const agentCredentialsSchema = z.strictObject({
  agents: z
    .array(
      z.strictObject({
        node: nameSchema,
        sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits'),
      }),
    )
    .default([]),
})

export interface BrokerOptions {
  cluster: string
  /** Clients with neither credentials nor a certificate may publish any node's agent channels. */
  allowAnonymous: boolean
  credentialsFile?: string | undefined
  tls?: BrokerTls | undefined
  log: Logger
}

export interface EmbeddedBroker {
  url: string
  clientCount(): number
  /**
   * In-process subscription: `deliver` runs for every message matching `filter`. A deliver that
   * returns a promise holds the publishing client's next messages until it settles (backpressure).
   */
  subscribe(filter: string, deliver: (topic: string, payload: Buffer) => void | Promise<void>): Promise<void>
  /** In-process publish (QoS 1 to subscribers that asked for it), as the hub. */
  publish(topic: string, payload: string): Promise<void>
  /** Call once the hub's own subscription is in place: until then other clients are turned away. */
  markReady(): void
  /**
   * Resolves with why, if the listener stops or fails while the hub runs (not at `close`): agents
   * can no longer reach the hub, which then has nothing left to do but exit and be restarted.
   */
  readonly died: Promise<string>
  close(): Promise<void>
}

/**
 * Connections the kernel may hold for the broker before it accepts them (capped by
 * net.core.somaxconn). Node's default, 511, overflows when thousands of agents connect at once (a
 * hub restart, a large cluster's start) while the event loop is busy: their SYNs are dropped and
 * retried after 1, 3, 7, 15 s..., which spreads a reconnection over minutes.
 */
const LISTEN_BACKLOG = 4096

/**
 * Starts an in-process MQTT broker with the rules of deploy/mosquitto/vigil.acl. The hub itself
 * uses it in-process (link.ts) and is the only one that can publish commands. A network client is
 * a node (its user name with the password in `credentialsFile`, or the CN of its client
 * certificate under mutual TLS): it may publish only its own agent channels and subscribe only to
 * its own commands. Anonymous clients (a demo) may publish any node's agent channels and subscribe
 * to one node's commands at a time, never to a wildcard.
 */
export async function startEmbeddedBroker(
  listen: { host: string; port: number },
  options: BrokerOptions,
): Promise<EmbeddedBroker> {
  const credentials = options.credentialsFile
    ? new WatchedFile(options.credentialsFile, 'broker.credentialsFile', options.log, (file) =>
        loadConfigFile(agentCredentialsSchema, file).agents.map((a) => ({
          node: a.node,
          digest: Buffer.from(a.sha256, 'hex'),
        })),
      )
    : null
  /** Who each network client is: a node name, or null for an anonymous client. */
  const identities = new WeakMap<Client, string | null>()
  // Until the hub has subscribed, anything an agent publishes would reach no subscriber and be lost
  // (a buffered event replayed right after a hub restart): refuse agents as "server unavailable",
  // and they retry with backoff.
  let ready = false
  const broker = await Aedes.createBroker({ drainTimeout: 10_000 })
  const refuse = (code: 3 | 4 | 5, message: string) => {
    const err = new Error(message) as AuthenticateError
    err.returnCode = code
    return err
  }
  broker.authenticate = (client, username, password, done) => {
    if (!ready) return done(refuse(3, 'hub not ready yet'), null)
    const socket = client.conn as Partial<TLSSocket>
    // Only a certificate the CA vouched for names anyone (with caFile but without requireClientCert,
    // a client may present any certificate: an unverified CN is no identity).
    const cn = socket.authorized === true ? socket.getPeerCertificate?.()?.subject?.CN : undefined
    const certNode = typeof cn === 'string' && cn !== '' ? cn : null
    if (certNode && username !== undefined && username !== certNode)
      return done(refuse(5, `user name ${username} is not the certificate's CN ${certNode}`), null)
    if (username !== undefined) {
      const entry = credentials
        ? matchDigest(
            credentials.current().filter((c) => c.node === username),
            password ? password.toString() : '',
          )
        : null
      if (!entry) {
        options.log.warn(
          { clientId: client.id, username },
          'broker refused a client: bad user name or password',
        )
        return done(refuse(4, 'bad user name or password'), null)
      }
      identities.set(client, username)
      return done(null, true)
    }
    if (certNode) {
      identities.set(client, certNode)
      return done(null, true)
    }
    if (!options.allowAnonymous)
      return done(refuse(5, 'credentials or a client certificate are required'), null)
    identities.set(client, null)
    done(null, true)
  }
  broker.authorizePublish = (client, packet, callback) => {
    if (client === null) return callback(null) // in-process: the hub's own publishes, wills
    const node = identities.get(client) ?? null
    const parsed = parseTopic(packet.topic)
    const agentChannel = parsed !== null && (AGENT_CHANNELS as readonly string[]).includes(parsed.channel)
    if (agentChannel && (node === null || (parsed.node === node && parsed.cluster === options.cluster)))
      return callback(null)
    // Anonymous junk under vigil/ reaches the hub, which counts it as unknown_topic.
    if (node === null && !parsed && packet.topic.startsWith('vigil/')) return callback(null)
    options.log.warn({ clientId: client.id, node, topic: packet.topic }, 'broker refused a publish')
    callback(new Error('not authorised to publish on this topic'))
  }
  broker.authorizeSubscribe = (client, sub, callback) => {
    if (client === null) return callback(null, sub)
    const node = identities.get(client) ?? null
    const parsed = parseTopic(sub.topic)
    const own =
      parsed !== null &&
      parsed.channel === 'cmd' &&
      (node === null ? true : sub.topic === nodeTopic(options.cluster, node, 'cmd'))
    if (own) return callback(null, sub)
    options.log.warn({ clientId: client.id, node, topic: sub.topic }, 'broker refused a subscription')
    callback(null, null) // a SUBACK failure code (0x80), not a disconnect
  }
  const tls = options.tls
  const server: Server = tls
    ? createTlsServer(
        {
          cert: readConfigFile(tls.certFile, 'broker.tls.certFile'),
          key: readConfigFile(tls.keyFile, 'broker.tls.keyFile'),
          ...(tls.caFile ? { ca: readConfigFile(tls.caFile, 'broker.tls.caFile') } : {}),
          requestCert: tls.requireClientCert || tls.caFile !== undefined,
          rejectUnauthorized: tls.requireClientCert,
        },
        broker.handle,
      )
    : createServer(broker.handle)
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(listen.port, listen.host, LISTEN_BACKLOG, () => resolve())
    })
  } catch (err) {
    // Nothing of a broker that could not listen may keep the process alive (aedes' timers).
    await new Promise<void>((resolve) => broker.close(() => resolve()))
    throw err
  }
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : listen.port
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host
  let closing = false
  const died = new Promise<string>((resolve) => {
    server.on('error', (err) => {
      if (!closing)
        resolve(`the embedded MQTT broker's listener on ${listen.host}:${port} failed: ${err.message}`)
    })
    server.on('close', () => {
      if (!closing) resolve(`the embedded MQTT broker stopped listening on ${listen.host}:${port}`)
    })
  })
  return {
    died,
    url: `${tls ? 'mqtts' : 'mqtt'}://${host}:${port}`,
    clientCount: () => broker.connectedClients,
    subscribe: (filter, deliver) =>
      new Promise<void>((resolve) => {
        broker.subscribe(
          filter,
          (packet, cb) => {
            const held = deliver(
              packet.topic,
              Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload),
            )
            if (held)
              held.then(
                () => cb(),
                () => cb(),
              )
            else cb()
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
        closing = true
        server.close()
        broker.close(() => resolve())
      }),
  }
}
