import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { decisionsOf } from '../harness/failover.js'
import { hubKeyArgs, startHub } from '../harness/hub.js'
import { freePort } from '../harness/mosquitto.js'
import { tempDir, VigilProcess, writeLines } from '../harness/processes.js'

// A monitor that acts, through the hub (ExpressCluster's monitor resource, ApplicationHA's app
// monitor): a real HTTP service whose process lives on but whose port stops answering is seen only
// by the HTTP check that vouches for it. The hub restarts it in place; failing again past its
// ladder's restarts, it is relocated to the other node.
const repo = join(import.meta.dirname, '../..')
const dir = tempDir('monitors-live')
const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  dir.remove()
})

test('a service that stops answering is restarted by the check vouching for it, then relocated', async () => {
  const port = await freePort()
  const clusterFile = writeLines(dir.path, 'cluster.yaml', [
    'nodes:',
    '  - id: node-a',
    '  - id: node-b',
    'resources:',
    '  - id: web',
    '    preferred: { node-a: 10 }',
    '    policy: { maxRestarts: 1 }',
    '',
  ])
  const hub = await startHub(dir.path, ['--cluster-file', clusterFile])
  cleanups.push(() => hub.process.stop())
  const pidfile = (node: string) => join(dir.path, `${node}-web.pid`)
  for (const node of ['node-a', 'node-b']) {
    const config = writeLines(dir.path, `${node}.yaml`, [
      `node: ${node}`,
      'resources:',
      '  - id: web',
      '    driver: process',
      `    config: { command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(join(repo, 'scripts/demo-app.mjs'))}, web, --port, '${port}', --node, ${node}], pidfile: ${pidfile(node)} }`,
      '  - id: web-http',
      '    driver: check',
      '    vouchesFor: web',
      '    monitorIntervalMs: 200',
      `    config: { kind: http, url: 'http://127.0.0.1:${port}/', failuresBeforeCritical: 2, timeoutMs: 500 }`,
      '',
    ])
    const agent = new VigilProcess(
      ['agent', '--config', config, '--mqtt-url', hub.mqttUrl, ...hubKeyArgs(hub)],
      {
        cwd: dir.path,
      },
    )
    cleanups.push(async () => {
      await agent.stop()
      try {
        process.kill(Number(readFileSync(pidfile(node), 'utf8')), 'SIGKILL')
      } catch {
        // not running there
      }
    })
  }
  const answer = async () =>
    fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.text(),
      () => '',
    )
  const serving = await eventually('web answering on node-a', async () => {
    const text = await answer()
    return text.startsWith('web on node-a') ? text : undefined
  })

  // 1. The service hangs: its process alive, its port closed. Only the check can tell.
  const hang = (node: string) => process.kill(Number(readFileSync(pidfile(node), 'utf8')), 'SIGUSR1')
  hang('node-a')
  const restarted = await eventually('a new web answering on node-a', async () => {
    const text = await answer()
    return text.startsWith('web on node-a') && text !== serving ? text : undefined
  })
  expect(restarted).not.toBe(serving)
  const first = (await decisionsOf(hub)).find((d) => d.rule === 'ladder.restart')
  expect((first as { summary?: string } | undefined)?.summary).toMatch(/web-http \(check\) failed/)

  // 2. It hangs again: past its ladder's one restart, it moves to node-b.
  hang('node-a')
  await eventually('web answering on node-b', async () => (await answer()).startsWith('web on node-b'), {
    timeoutMs: 30_000,
  })
  const rules = (await decisionsOf(hub)).map((d) => d.rule)
  expect(rules).toContain('ladder.relocate')
  expect(rules.filter((r) => r.startsWith('fence.'))).toEqual([]) // an application fault, not a host's
}, 90_000)
