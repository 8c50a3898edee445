import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { type HubProcess, startHub } from '../harness/hub.js'
import { freePort } from '../harness/mosquitto.js'
import { runVigil, tempDir, type VigilProcess } from '../harness/processes.js'
import { killWebCopies, startWebAgent } from '../harness/web.js'

// kill -9 of the hub in the middle of a failover: node-b is dead and being fenced (its fence level
// is a person, so the fence stays in flight as long as we like), the hub is SIGKILLed and started
// again on the same database. It must resume the fence (the person is asked again), never decide
// it twice, and start the application exactly once when the fence is confirmed.

const dir = tempDir('crash-safety')
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
  resource?: string
}

test('a hub killed mid-fence resumes it, decides nothing twice and starts the application once', async () => {
  const clusterFile = join(dir.path, 'cluster.yaml')
  writeFileSync(
    clusterFile,
    [
      // Tolerant detection: a CI machine running other suites beside this one can stall an agent
      // for a second or two, and this test is about what follows a real death, not about speed.
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
  // Fixed ports: the agents reconnect to the restarted hub's embedded broker where they left it.
  const args = [
    '--config',
    hubFile,
    '--cluster-file',
    clusterFile,
    '--listen',
    `127.0.0.1:${await freePort()}`,
    '--broker-listen',
    `127.0.0.1:${await freePort()}`,
  ]
  let hub: HubProcess = await startHub(dir.path, args)
  cleanups.push(() => hub.process.stop())
  const agents = new Map<string, VigilProcess>()
  for (const node of ['node-a', 'node-b']) {
    const agent = startWebAgent(dir.path, node, hub.mqttUrl)
    agents.set(node, agent)
    cleanups.push(() => agent.stop())
  }
  const decisions = async () =>
    (await hub.api<{ decisions: Decision[] }>('/api/decisions?limit=1000')).body.decisions.reverse()
  const pidfileB = join(dir.path, 'node-b-web.pid')
  await eventually(
    'web running on node-b',
    async () =>
      (await decisions()).some((d) => d.rule === 'action.start' && d.node === 'node-b') &&
      existsSync(pidfileB),
  )

  // node-b dies; the fence starts and waits for a person.
  agents.get('node-b')?.kill('SIGKILL')
  process.kill(Number(readFileSync(pidfileB, 'utf8')), 'SIGKILL')
  const pending = async () =>
    (
      await hub.api<{ pending: { node: string; confirmedBy: string | null }[] }>('/api/fence')
    ).body.pending.filter((p) => p.node === 'node-b' && p.confirmedBy === null)
  await eventually('the fence waits for a person', async () => (await pending()).length === 1)

  // kill -9 mid-fence, then start again on the same database.
  hub.process.kill('SIGKILL')
  await hub.process.exited
  hub = await startHub(dir.path, args)
  await hub.process.waitForLog(
    'fence resumed',
    (l) => l.msg === 'resuming a fence that was in flight when the hub stopped',
  )
  await eventually('the person is asked again', async () => (await pending()).length === 1)
  const beforeConfirm = await decisions()
  expect(beforeConfirm.filter((d) => d.rule === 'fence.dead')).toHaveLength(1) // decided once, resumed
  expect(beforeConfirm.filter((d) => d.kind === 'place' && d.node === 'node-a')).toHaveLength(0)

  const confirmed = await runVigil(['fence', 'confirm', 'node-b', '--by', 'oncall', '--hub', hub.httpUrl])
  expect(confirmed.code, confirmed.stderr).toBe(0)
  const pidfileA = join(dir.path, 'node-a-web.pid')
  await eventually(
    'web running on node-a',
    async () =>
      (await decisions()).some((d) => d.rule === 'action.start' && d.node === 'node-a') &&
      existsSync(pidfileA),
    { timeoutMs: 40_000 },
  ).catch(async (err: Error) => {
    // What the engine did instead, for whoever reads a CI failure.
    const trail = (await decisions()).slice(-25).map((d) => `${d.rule} ${d.node ?? ''} ${d.resource ?? ''}`)
    throw new Error(`${err.message}\nlast decisions:\n${trail.join('\n')}`)
  })
  await new Promise((r) => setTimeout(r, 1000)) // anything that would repeat has had its chance
  const after = await decisions()
  expect(after.filter((d) => d.rule === 'fence.dead')).toHaveLength(1)
  expect(after.filter((d) => d.rule === 'fence.confirmed')).toHaveLength(1)
  expect(after.filter((d) => d.kind === 'place' && d.node === 'node-a')).toHaveLength(1)
  const db = new Database(hub.dbPath, { readonly: true })
  const starts = db
    .prepare(
      "SELECT node, action FROM commands WHERE action = 'start' AND json_extract(args, '$.resource') = 'web'",
    )
    .all() as { node: string }[]
  const fenceRuns = db.prepare("SELECT outcome FROM fence_ops WHERE node = 'node-b'").all() as {
    outcome: string
  }[]
  db.close()
  expect(starts.map((s) => s.node)).toEqual(['node-b', 'node-a']) // the first placement, then the failover
  expect(fenceRuns.map((f) => f.outcome)).toEqual(['off']) // one completed fence run, the resumed one
})
