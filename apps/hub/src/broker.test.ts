import type { Server } from 'node:net'
import { createLogger } from '@vigil/kit'
import { expect, test } from 'vitest'
import { startEmbeddedBroker } from './broker.js'

/** The listening socket of this process on `port` (what an outside failure would close). */
function listenerOn(port: number): Server {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles()
  const server = handles.find(
    (h): h is Server =>
      typeof (h as Server).address === 'function' &&
      typeof (h as Server).listen === 'function' &&
      ((h as Server).address() as { port?: number } | null)?.port === port,
  )
  if (!server) throw new Error(`no listener on ${port}`)
  return server
}

test("the embedded broker's listener closing while the hub runs is reported as its death, in one line", async () => {
  const broker = await startEmbeddedBroker(
    { host: '127.0.0.1', port: 0 },
    { cluster: 'c', allowAnonymous: true, log: createLogger('test', 'silent') },
  )
  const port = Number(new URL(broker.url).port)
  listenerOn(port).close()
  expect(await broker.died).toBe(`the embedded MQTT broker stopped listening on 127.0.0.1:${port}`)
  await broker.close()
})

test('a broker closed by the hub itself has not died', async () => {
  const broker = await startEmbeddedBroker(
    { host: '127.0.0.1', port: 0 },
    { cluster: 'c', allowAnonymous: true, log: createLogger('test', 'silent') },
  )
  await broker.close()
  const outcome = await Promise.race([broker.died, new Promise((r) => setTimeout(() => r('alive'), 200))])
  expect(outcome).toBe('alive')
})
