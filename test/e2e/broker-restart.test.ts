import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { startHub } from '../harness/hub.js'
import { type Mosquitto, startMosquitto } from '../harness/mosquitto.js'
import { runVigil, tempDir, type VigilProcess } from '../harness/processes.js'
import { killWebCopies, startWebAgent, webPidfile } from '../harness/web.js'

// The broker (Debian's mosquitto, passwords and the shipped ACL) restarts in the middle of a
// failover: node-b is dead and its fence waits for a person when mosquitto goes away and comes
// back. The failover then completes once: one fence run, one decision to fence, web started once
// on node-a.

const dir = tempDir('broker-restart')
const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  killWebCopies(dir.path, ['node-a', 'node-b'])
  dir.remove()
})

interface Decision {
  kind: string
  rule: string
  node?: string
}

test('a broker restart in the middle of a failover: it completes once', async () => {
  const acl = join(import.meta.dirname, '../../deploy/mosquitto/vigil.acl')
  const users = { hub: 'hub-secret', 'node-a': 'a-secret', 'node-b': 'b-secret' }
  const brokerDir = (name: string) => {
    const d = join(dir.path, name)
    mkdirSync(d)
    return d
  }
  let broker: Mosquitto = await startMosquitto(brokerDir('broker-1'), users, acl)
  cleanups.push(() => broker.stop())
  const clusterFile = join(dir.path, 'cluster.yaml')
  writeFileSync(
    clusterFile,
    [
      'detection: { hub: { acceptablePauseMs: 2000 } }',
      'nodes:',
      '  - id: node-a',
      '  - id: node-b',
      '    fencing: [{ devices: [people], timeoutMs: 600000 }]',
      'resources:',
      '  - id: web',
      '    preferred: { node-b: 10 }',
      '',
    ].join('\n'),
  )
  const hubFile = join(dir.path, 'hub.yaml')
  writeFileSync(
    hubFile,
    [
      'fencing:',
      '  devices:',
      '    - { id: people, driver: meatware, hosts: { node-b: [node-b] } }',
      '',
    ].join('\n'),
  )
  const hub = await startHub(
    dir.path,
    ['--config', hubFile, '--cluster-file', clusterFile, '--mqtt-url', broker.url, '--mqtt-username', 'hub'],
    { VIGIL_MQTT_PASSWORD: users.hub },
  )
  cleanups.push(() => hub.process.stop())
  const agents = new Map<string, VigilProcess>()
  for (const node of ['node-a', 'node-b'] as const) {
    const agent = startWebAgent(dir.path, node, broker.url, {
      args: ['--mqtt-username', node],
      env: { VIGIL_MQTT_PASSWORD: users[node] },
    })
    agents.set(node, agent)
    cleanups.push(() => agent.stop())
  }
  const decisions = async () =>
    (await hub.api<{ decisions: Decision[] }>('/api/decisions?limit=1000')).body.decisions.reverse()
  await eventually(
    'web running on node-b',
    async () =>
      (await decisions()).some((d) => d.rule === 'action.start' && d.node === 'node-b') &&
      existsSync(webPidfile(dir.path, 'node-b')),
    { timeoutMs: 30_000 },
  )

  // node-b dies; its fence waits for a person.
  agents.get('node-b')?.kill('SIGKILL')
  process.kill(Number(readFileSync(webPidfile(dir.path, 'node-b'), 'utf8')), 'SIGKILL')
  const waiting = async () =>
    (
      await hub.api<{ pending: { node: string; confirmedBy: string | null }[] }>('/api/fence')
    ).body.pending.some((p) => p.node === 'node-b' && p.confirmedBy === null)
  await eventually('the fence waits for a person', waiting, { timeoutMs: 30_000 })

  // The broker goes away and comes back on the same port.
  await broker.stop()
  await eventually('the hub sees the broker gone', async () => (await hub.api('/readyz')).status === 503)
  broker = await startMosquitto(brokerDir('broker-2'), users, acl, undefined, broker.port)
  await eventually('the hub reconnected', async () => (await hub.api('/readyz')).status === 200, {
    timeoutMs: 30_000,
  })
  await eventually(
    'node-a heard again',
    async () =>
      (await hub.api<{ engine: { condition: string } }>('/api/nodes/node-a')).body.engine?.condition ===
      'healthy',
  )
  expect(await waiting()).toBe(true) // the fence is still in flight, not forgotten, not re-decided

  const confirmed = await runVigil(['fence', 'confirm', 'node-b', '--by', 'oncall', '--hub', hub.httpUrl])
  expect(confirmed.code, confirmed.stderr).toBe(0)
  await eventually(
    'web running on node-a',
    async () =>
      (await decisions()).some((d) => d.rule === 'action.start' && d.node === 'node-a') &&
      existsSync(webPidfile(dir.path, 'node-a')),
    { timeoutMs: 30_000 },
  )
  await new Promise((r) => setTimeout(r, 1000)) // anything that would repeat has had its chance
  const all = await decisions()
  expect(all.filter((d) => d.rule === 'fence.dead')).toHaveLength(1)
  expect(all.filter((d) => d.rule === 'fence.confirmed')).toHaveLength(1)
  expect(all.filter((d) => d.kind === 'place' && d.node === 'node-a')).toHaveLength(1)
  const db = new Database(hub.dbPath, { readonly: true })
  const starts = db
    .prepare("SELECT node FROM commands WHERE action = 'start' AND json_extract(args, '$.resource') = 'web'")
    .all() as { node: string }[]
  const fenceRuns = db.prepare("SELECT outcome FROM fence_ops WHERE node = 'node-b'").all() as {
    outcome: string
  }[]
  db.close()
  expect(starts.map((s) => s.node)).toEqual(['node-b', 'node-a'])
  expect(fenceRuns.map((f) => f.outcome)).toEqual(['off'])
})
