import { Worker } from 'node:worker_threads'
import { ConfigError, type ConfigProblem, type Logger, VigilError, type VigilErrorCode } from '@vigil/kit'
import type { BrokerOptions, EmbeddedBroker } from './broker.js'

/**
 * The embedded broker on a thread of its own, behind the same interface as in-process
 * (`startEmbeddedBroker`): aedes parses, authorises and routes every agent's packets there, and the
 * hub's event loop gets what its subscriptions match in batches (one message per batch, payloads
 * moved, not copied). At 10,000 agents and 20,000 messages/s the broker was a quarter of the hub's
 * single thread, and the heartbeat latency's tail grew with that thread's load (issue #21).
 *
 * Contract: messages reach `deliver` in the order the broker routed them. Past MAX_UNACKNOWLEDGED
 * messages the hub has not taken, the broker holds its publishers (TCP backpressure), as the
 * in-process broker does when the event loop is busy.
 */
export interface BrokerThreadData {
  listen: { host: string; port: number }
  options: Omit<BrokerOptions, 'log'>
  log: { level: string; bindings: Record<string, string> }
  maxUnacknowledged: number
  clientsEveryMs: number
}

export type ToBroker =
  | { type: 'subscribe'; id: number; filter: string }
  | { type: 'taken'; count: number }
  | { type: 'publish'; id: number; topic: string; payload: string }
  | { type: 'ready' }
  | { type: 'close' }

export type FromBroker =
  | { type: 'started'; url: string }
  | {
      type: 'failed'
      error: {
        message: string
        code?: string
        /** A listen failure's address, port and call, as the system error had them. */
        address?: string
        port?: number
        syscall?: string
        problems?: ConfigProblem[]
        vigil: boolean
      }
    }
  | { type: 'subscribed'; id: number }
  | { type: 'messages'; sub: number; topics: string[]; payloads: ArrayBuffer; lengths: Uint32Array }
  | { type: 'published'; id: number; error?: string }
  | { type: 'clients'; count: number }
  | { type: 'died'; why: string }
  | { type: 'closed' }

const MAX_UNACKNOWLEDGED = 50_000
/** How often the thread tells how many clients it has (a gauge, scraped every 15 s or so). */
const CLIENTS_EVERY_MS = 1000

export function startBrokerThread(
  listen: { host: string; port: number },
  options: BrokerOptions,
  /** The worker's module (its built file: a test from sources points at dist). */
  workerUrl: URL = new URL('./broker-worker.js', import.meta.url),
  /** Messages the hub may leave untaken before publishers are held (a test sets it low). */
  maxUnacknowledged = MAX_UNACKNOWLEDGED,
): Promise<EmbeddedBroker> {
  const { log, ...rest } = options
  const data: BrokerThreadData = {
    listen,
    options: rest,
    log: { level: log.level, bindings: stringBindings(log) },
    maxUnacknowledged,
    clientsEveryMs: CLIENTS_EVERY_MS,
  }
  const worker = new Worker(workerUrl, { workerData: data })
  const send = (msg: ToBroker) => worker.postMessage(msg)
  const subscribers = new Map<
    number,
    { deliver: (topic: string, payload: Buffer) => unknown; ready: () => void }
  >()
  const publishes = new Map<number, { resolve: () => void; reject: (err: Error) => void }>()
  let nextId = 0
  let clients = 0
  let closed: (() => void) | null = null
  let stopping = false
  let reportDeath: (why: string) => void = () => {}
  const died = new Promise<string>((resolve) => {
    reportDeath = resolve
  })

  return new Promise<EmbeddedBroker>((resolve, reject) => {
    let url: string | null = null
    worker.on('message', (msg: FromBroker) => {
      switch (msg.type) {
        case 'started':
          url = msg.url
          resolve(broker(msg.url))
          return
        case 'failed':
          void worker.terminate()
          reject(rebuildError(msg.error))
          return
        case 'subscribed':
          subscribers.get(msg.id)?.ready()
          return
        case 'messages': {
          const sub = subscribers.get(msg.sub)
          const all = Buffer.from(msg.payloads)
          let at = 0
          for (let i = 0; i < msg.topics.length; i++) {
            const length = msg.lengths[i] as number
            const payload = all.subarray(at, at + length)
            at += length
            // One message's failure is the subscriber's to report; the rest of the batch goes on.
            try {
              sub?.deliver(msg.topics[i] as string, payload)
            } catch (err) {
              log.error({ err }, 'a message from the broker thread failed')
            }
          }
          send({ type: 'taken', count: msg.topics.length })
          return
        }
        case 'published': {
          const p = publishes.get(msg.id)
          publishes.delete(msg.id)
          if (msg.error === undefined) p?.resolve()
          else p?.reject(new Error(msg.error))
          return
        }
        case 'clients':
          clients = msg.count
          return
        case 'died':
          if (!stopping) reportDeath(msg.why)
          return
        case 'closed':
          closed?.()
          return
      }
    })
    worker.on('error', (err) => {
      if (url === null) reject(err)
      else if (!stopping) reportDeath(`the embedded MQTT broker's thread failed: ${err.message}`)
    })
    worker.on('exit', (code) => {
      for (const p of publishes.values()) p.reject(new Error('the broker thread stopped'))
      publishes.clear()
      closed?.()
      if (url === null) reject(new Error(`the broker thread exited (${code}) before it listened`))
      else if (!stopping) reportDeath(`the embedded MQTT broker's thread exited (${code})`)
    })
  })

  function broker(url: string): EmbeddedBroker {
    return {
      url,
      died,
      clientCount: () => clients,
      subscribe: (filter, deliver) =>
        new Promise<void>((ready) => {
          const id = ++nextId
          subscribers.set(id, { deliver, ready })
          send({ type: 'subscribe', id, filter })
        }),
      publish: (topic, payload) =>
        new Promise<void>((resolve, reject) => {
          const id = ++nextId
          publishes.set(id, { resolve, reject })
          send({ type: 'publish', id, topic, payload })
        }),
      markReady: () => send({ type: 'ready' }),
      close: async () => {
        if (stopping) return
        stopping = true
        await new Promise<void>((resolve) => {
          closed = resolve
          send({ type: 'close' })
        })
        await worker.terminate()
      },
    }
  }
}

/** The logger's bindings the thread's own logger repeats (component, part), as strings. */
function stringBindings(log: Logger): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(log.bindings())) if (typeof v === 'string') out[k] = v
  return out
}

/** The thread's start failure as the hub would have seen it in-process: a config error stays one. */
function rebuildError(e: Extract<FromBroker, { type: 'failed' }>['error']): Error {
  if (e.problems) return new ConfigError(e.problems)
  if (e.vigil && e.code) return new VigilError(e.code as VigilErrorCode, e.message)
  const { message, problems: _problems, vigil: _vigil, ...fields } = e
  return Object.assign(new Error(message), fields)
}
