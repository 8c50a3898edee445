import { createSocket } from 'node:dgram'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger } from '@vigil/kit'
import { freePort } from '@vigil/testbed'
import { afterEach, expect, test } from 'vitest'
import { PeerMesh, peersSchema } from './peers.js'

const log = createLogger('test', 'silent')
const clock = { monoMs: () => performance.now(), wallMs: () => Date.now() }
const open: PeerMesh[] = []
afterEach(() => {
  for (const m of open.splice(0)) m.close()
})

async function mesh(names: string[], keyFile?: string) {
  const ports = await Promise.all(names.map(() => freePort('udp')))
  const members = names.map((node, i) => ({ node, address: `127.0.0.1:${ports[i]}` }))
  const meshes = await Promise.all(
    names.map(async (node, i) => {
      const m = new PeerMesh(
        peersSchema.parse({
          listen: members[i]?.address,
          mesh: members,
          intervalMs: 50,
          deadAfterMs: 300,
          keyFile,
        }),
        { cluster: 'c1', node, incarnation: 1 },
        { clock, log },
      )
      open.push(m)
      await m.start()
      return m
    }),
  )
  return { meshes, ports }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

test('each agent hears the others over real UDP, and stops hearing one that stops', async () => {
  const { meshes } = await mesh(['a', 'b', 'c'])
  await sleep(200)
  expect(meshes.map((m) => m.hears())).toEqual([
    ['b', 'c'],
    ['a', 'c'],
    ['a', 'b'],
  ])
  meshes[2]?.close()
  await sleep(500)
  expect(meshes[0]?.hears()).toEqual(['b'])
})

test('with a key, unsigned, wrongly signed and oversized datagrams are dropped', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-peers-'))
  writeFileSync(join(dir, 'key'), 'shared-secret\n')
  const { meshes, ports } = await mesh(['a', 'b'], join(dir, 'key'))
  await sleep(200)
  expect(meshes[0]?.hears()).toEqual(['b'])
  const dropped = meshes[0]?.dropped ?? 0
  const sock = createSocket('udp4')
  const send = (text: string) => new Promise((r) => sock.send(text, ports[0], '127.0.0.1', r))
  await send(JSON.stringify({ v: 1, c: 'c1', n: 'b', i: 99, s: 1 })) // unsigned
  await send(`${JSON.stringify({ v: 1, c: 'c1', n: 'b', i: 99, s: 1 })}\n${'0'.repeat(64)}`) // wrong signature
  await send('x'.repeat(600)) // oversized
  await sleep(100)
  sock.close()
  expect((meshes[0]?.dropped ?? 0) - dropped).toBe(3)
})

test.each([
  [{ listen: '127.0.0.1', mesh: [] }, 'listen'],
  [{ intervalMs: 500, deadAfterMs: 800 }, 'deadAfterMs'],
  [{ mesh: [{ node: 'a', address: 'x' }] }, 'mesh.0.address'],
])('invalid peers config %j names %s', (config, key) => {
  const r = peersSchema.safeParse(config)
  expect(r.error?.issues.map((i) => i.path.join('.'))).toContain(key)
})
