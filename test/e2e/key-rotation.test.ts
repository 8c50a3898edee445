import { generateKeyPairSync } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { startHub } from '../harness/hub.js'
import { tempDir, VigilProcess } from '../harness/processes.js'

// Rotating the hub's command signing key with nothing restarted: agents trust the old and the new
// public key, the hub moves to the new key, agents drop the old one. Afterwards a command signed
// with the old key is refused by a real agent.

const dir = tempDir('key-rotation')
const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  dir.remove()
})

function keyPair() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return {
    private: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    public: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  }
}

test('the signing key rotates without a restart, and the old key is refused afterwards', async () => {
  const oldKey = keyPair()
  const newKey = keyPair()
  const hubKeyFile = join(dir.path, 'hub-signing.pem')
  const trustedFile = join(dir.path, 'trusted-hub-keys.pem')
  writeFileSync(hubKeyFile, oldKey.private, { mode: 0o600 })
  writeFileSync(trustedFile, oldKey.public)
  const hubFile = join(dir.path, 'hub.yaml')
  writeFileSync(hubFile, `signing: { keyFile: ${hubKeyFile} }\n`)
  const hub = await startHub(dir.path, ['--config', hubFile])
  cleanups.push(() => hub.process.stop())
  const agent = new VigilProcess(
    ['agent', '--node', 'node-a', '--mqtt-url', hub.mqttUrl, '--hub-key', trustedFile],
    {
      cwd: dir.path,
    },
  )
  cleanups.push(() => agent.stop())
  const ping = async () =>
    await hub.api<{ status?: string; error?: { code: string } }>('/api/nodes/node-a/ping', { method: 'POST' })
  await eventually(
    'node-a answers a ping signed with the old key',
    async () => (await ping()).body.status === 'ok',
  )

  // 1. Agents trust both keys. 2. The hub signs with the new one (it re-reads its key file).
  writeFileSync(trustedFile, `${oldKey.public}${newKey.public}`)
  writeFileSync(hubKeyFile, newKey.private)
  await eventually(
    'the hub publishes the new key',
    async () => (await hub.api<{ commandPublicKey: string }>('/api')).body.commandPublicKey === newKey.public,
  )
  expect((await ping()).body.status).toBe('ok')
  // 3. Agents drop the old key.
  writeFileSync(trustedFile, newKey.public)
  expect((await ping()).body.status).toBe('ok')

  // A hub (or a thief) still signing with the old key is refused by the agent.
  writeFileSync(hubKeyFile, oldKey.private)
  await eventually(
    'the hub signs with the old key again',
    async () => (await hub.api<{ commandPublicKey: string }>('/api')).body.commandPublicKey === oldKey.public,
  )
  const refused = await ping()
  expect(refused.status).toBe(502)
  expect(refused.body.error?.code).toBe('command_refused')
  await agent.waitForLog(
    'refused as bad_signature',
    (l) => l.msg === 'command refused' && l.reason === 'bad_signature',
  )
})
