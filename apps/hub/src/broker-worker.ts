import { parentPort, workerData } from 'node:worker_threads'
import { ConfigError, createLogger, type LogLevel, VigilError } from '@vigil/kit'
import { type EmbeddedBroker, startEmbeddedBroker } from './broker.js'
import type { BrokerThreadData, FromBroker, ToBroker } from './broker-thread.js'

/**
 * The embedded broker's thread (broker-thread.ts): aedes, its sockets and the agents' MQTT
 * sessions run here, the hub's event loop gets what its subscriptions match in batches: at 10,000
 * agents the broker's share of one thread was a quarter of the hub's time (issue #21).
 */
const port = parentPort
if (!port) throw new Error('broker-worker runs only as a worker thread')
const data = workerData as BrokerThreadData
const { component, ...bindings } = data.log.bindings
const log = createLogger(component ?? 'hub', data.log.level as LogLevel).child(bindings)
const post = (msg: FromBroker, transfer?: ArrayBuffer[]) => port.postMessage(msg, transfer ?? [])

/** Messages the hub has not yet taken: past the limit, agents' publishes wait (TCP backpressure). */
let unacknowledged = 0
let held: (() => void)[] = []

/** Per subscription: what is waiting for the next batch, sent once the thread's I/O turn ends. */
const batches = new Map<number, { topics: string[]; payloads: Buffer[]; bytes: number }>()
let flushScheduled = false

function flush(): void {
  flushScheduled = false
  for (const [sub, batch] of batches) {
    if (batch.topics.length === 0) continue
    const all = Buffer.allocUnsafeSlow(batch.bytes)
    const lengths = new Uint32Array(batch.payloads.length)
    let at = 0
    batch.payloads.forEach((p, i) => {
      p.copy(all, at)
      at += p.length
      lengths[i] = p.length
    })
    post({ type: 'messages', sub, topics: batch.topics, payloads: all.buffer as ArrayBuffer, lengths }, [
      all.buffer as ArrayBuffer,
      lengths.buffer,
    ])
    batches.set(sub, { topics: [], payloads: [], bytes: 0 })
  }
}

let broker: EmbeddedBroker | null = null
let clientsTimer: NodeJS.Timeout | null = null

port.on('message', (msg: ToBroker) => {
  switch (msg.type) {
    case 'subscribe':
      if (!broker) return
      batches.set(msg.id, { topics: [], payloads: [], bytes: 0 })
      broker
        .subscribe(msg.filter, (topic, payload) => {
          const batch = batches.get(msg.id)
          if (!batch) return
          batch.topics.push(topic)
          batch.payloads.push(payload)
          batch.bytes += payload.length
          if (!flushScheduled) {
            flushScheduled = true
            setImmediate(flush)
          }
          if (++unacknowledged < data.maxUnacknowledged) return
          return new Promise<void>((release) => held.push(release))
        })
        .then(() => post({ type: 'subscribed', id: msg.id }))
      return
    case 'taken':
      unacknowledged -= msg.count
      if (unacknowledged < data.maxUnacknowledged && held.length > 0) {
        const release = held
        held = []
        for (const done of release) done()
      }
      return
    case 'publish':
      broker
        ?.publish(msg.topic, msg.payload)
        .then(() => post({ type: 'published', id: msg.id }))
        .catch((err: Error) => post({ type: 'published', id: msg.id, error: err.message }))
      return
    case 'ready':
      broker?.markReady()
      return
    case 'close':
      if (clientsTimer) clearInterval(clientsTimer)
      for (const done of held) done()
      held = []
      void (broker ? broker.close() : Promise.resolve()).then(() => post({ type: 'closed' }))
      return
  }
})

startEmbeddedBroker(data.listen, { ...data.options, log }).then(
  (started) => {
    broker = started
    started.died.then((why) => post({ type: 'died', why }))
    const tellClients = () => post({ type: 'clients', count: started.clientCount() })
    clientsTimer = setInterval(tellClients, data.clientsEveryMs)
    post({ type: 'started', url: started.url })
  },
  (err: unknown) => {
    const e = err as Error & { code?: string; address?: string; port?: number; syscall?: string }
    post({
      type: 'failed',
      error: {
        message: e.message,
        ...(typeof e.code === 'string' ? { code: e.code } : {}),
        // What the hub's start-up report names: `cannot listen on <address>:<port>`.
        ...(typeof e.address === 'string' ? { address: e.address } : {}),
        ...(typeof e.port === 'number' ? { port: e.port } : {}),
        ...(typeof e.syscall === 'string' ? { syscall: e.syscall } : {}),
        ...(err instanceof ConfigError ? { problems: err.problems } : {}),
        vigil: err instanceof VigilError,
      },
    })
  },
)
