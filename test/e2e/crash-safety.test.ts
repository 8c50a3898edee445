import { expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import {
  confirmAndExpectFailoverOnce,
  decisionsOf,
  fenceWaitsForPerson,
  killNodeB,
  webRunsOn,
  writeMeatwareFailoverFiles,
} from '../harness/failover.js'
import { type HubProcess, startHub } from '../harness/hub.js'
import { freePort } from '../harness/mosquitto.js'
import type { VigilProcess } from '../harness/processes.js'
import { startWebAgent, webTestFixture } from '../harness/web.js'

// kill -9 of the hub in the middle of a failover: node-b is dead and being fenced (its fence level
// is a person, so the fence stays in flight as long as we like), the hub is SIGKILLed and started
// again on the same database. It must resume the fence (the person is asked again), never decide
// it twice, and start the application exactly once when the fence is confirmed.

const { dir, cleanups } = webTestFixture('crash-safety')

test('a hub killed mid-fence resumes it, decides nothing twice and starts the application once', async () => {
  // Fixed ports: the agents reconnect to the restarted hub's embedded broker where they left it.
  const args = [
    ...writeMeatwareFailoverFiles(dir.path),
    '--listen',
    `127.0.0.1:${await freePort()}`,
    '--broker-listen',
    `127.0.0.1:${await freePort()}`,
  ]
  let hub: HubProcess = await startHub(dir.path, args)
  cleanups.push(() => hub.process.stop())
  const agents = new Map<string, VigilProcess>()
  for (const node of ['node-a', 'node-b']) {
    const agent = startWebAgent(dir.path, node, hub)
    agents.set(node, agent)
    cleanups.push(() => agent.stop())
  }
  await webRunsOn(hub, dir.path, 'node-b')
  await killNodeB(hub, dir.path, agents.get('node-b'))

  // kill -9 mid-fence, then start again on the same database.
  hub.process.kill('SIGKILL')
  await hub.process.exited
  hub = await startHub(dir.path, args)
  await hub.process.waitForLog(
    'fence resumed',
    (l) => l.msg === 'resuming a fence that was in flight when the hub stopped',
  )
  await eventually('the person is asked again', () => fenceWaitsForPerson(hub))
  const beforeConfirm = await decisionsOf(hub)
  expect(beforeConfirm.filter((d) => d.rule === 'fence.dead')).toHaveLength(1) // decided once, resumed
  expect(beforeConfirm.filter((d) => d.kind === 'place' && d.node === 'node-a')).toHaveLength(0)

  // The resumed fence ran once (fence_ops has a single run, the one the person confirmed).
  await confirmAndExpectFailoverOnce(hub, dir.path)
})
