import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { hubKeyArgs, startHub } from '../harness/hub.js'
import { VigilProcess, writeLines } from '../harness/processes.js'
import { startWebAgent, webTestFixture } from '../harness/web.js'

const { dir, cleanups } = webTestFixture('resource-live')

interface Decision {
  kind: string
  rule: string
  node?: string
  resource?: string
  summary: string
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

// The whole loop on real processes: engine -> command -> agent -> process driver -> real process,
// and back: a SIGKILLed process is noticed by the agent at once and restarted in place.
test('the engine starts an application on its preferred node and restarts it in place after a crash', async () => {
  const clusterFile = writeLines(dir.path, 'cluster.yaml', [
    'nodes:',
    '  - id: node-a',
    '  - id: node-b',
    '  - id: node-c',
    'resources:',
    '  - id: web',
    '    preferred: { node-a: 10 }',
    '',
  ])
  const hub = await startHub(dir.path, ['--cluster-file', clusterFile])
  cleanups.push(() => hub.process.stop())
  for (const node of ['node-a', 'node-b']) {
    const agent = startWebAgent(dir.path, node, hub)
    cleanups.push(() => agent.stop())
  }
  // A third node whose agent manages no resources: its complete (empty) inventory tells the engine
  // that web is not there, so web can be placed; without it, safety would wait for a report forever.
  const c = new VigilProcess(['agent', '--node', 'node-c', '--mqtt-url', hub.mqttUrl, ...hubKeyArgs(hub)], {
    cwd: dir.path,
  })
  cleanups.push(() => c.stop())
  const pidfileA = join(dir.path, 'node-a-web.pid')
  const pidfileB = join(dir.path, 'node-b-web.pid')
  const decisions = async () =>
    (
      await hub.api<{ decisions: Decision[] }>('/api/decisions?resource=web&limit=200')
    ).body.decisions.reverse()

  // Placed on the preferred node, started by its agent: a real process.
  const firstPid = await eventually('web running on node-a', async () => {
    const list = await decisions()
    if (!list.some((d) => d.rule === 'observed.running' || d.summary.includes('succeeded'))) return undefined
    return existsSync(pidfileA) ? Number(readFileSync(pidfileA, 'utf8')) : undefined
  })
  expect(alive(firstPid)).toBe(true)
  const placed = (await decisions()).find((d) => d.kind === 'place')
  expect(placed).toMatchObject({ node: 'node-a' })
  expect(placed?.summary).toContain('node-b: score 0')
  expect(placed?.summary).toContain('node-c: score 0')

  // Crash it behind everyone's back: restarted in place (the ladder's first step), new process.
  process.kill(firstPid, 'SIGKILL')
  const secondPid = await eventually('web restarted on node-a', () => {
    const pid = existsSync(pidfileA) ? Number(readFileSync(pidfileA, 'utf8')) : 0
    return pid !== firstPid && pid > 0 && alive(pid) ? pid : undefined
  })
  expect(secondPid).not.toBe(firstPid)
  const rules = (await decisions()).map((d) => d.rule)
  expect(rules).toContain('ladder.restart')
  expect((await decisions()).filter((d) => d.kind === 'place')).toHaveLength(1) // never placed anew
  expect(existsSync(pidfileB)).toBe(false) // never ran on node-b
  // What-if: if node-a died now, web would go to node-b; exported as a plan and as metrics.
  const plan = (
    await hub.api<{
      plan: { node: string; moves: { resource: string; to: string }[]; unplaceable: unknown[] }[]
    }>('/api/plan')
  ).body.plan
  expect(plan).toHaveLength(1)
  expect(plan[0]?.node).toBe('node-a')
  expect(['node-b', 'node-c']).toContain(plan[0]?.moves[0]?.to)
  expect(plan[0]?.unplaceable).toEqual([])
  expect(await hub.metric('vigil_plan_unplaceable_resources', { node: 'node-a' })).toBe(0)
  // Running again, but its crash still counts against it until it decays (hysteresis): 100 - 20.
  await eventually(
    'web running again, its crash still counted',
    async () => (await hub.metric('vigil_resource_health_score', { resource: 'web' })) === 80,
  )
  await eventually('node-a reports web running again', async () =>
    (
      await hub.api<{ observations: { target: string; state: string }[] }>('/api/nodes/node-a')
    ).body.observations.some((o) => o.target === 'web' && o.state === 'running'),
  )
})
