import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { NetnsHost } from '@vigil/testbed'
import { afterAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import type { Decision } from '../harness/failover.js'
import { type HubProcess, hubKeyArgs, startHub } from '../harness/hub.js'
import { tempDir, VigilProcess, writeLines } from '../harness/processes.js'

// Placement through a real hub and real agents, three behaviours the simulator's scenarios prove
// (three-tier-start-order, three-tier-reverse-stop, operator-stop-then-start,
// connectivity-loss-moves-running-resource, nic-degraded-deprioritized): dependency order on real
// processes, ping connectivity scoring on real ICMP to addresses whose link is cut, and a real NIC
// whose link goes down deprioritising its node.
const dir = tempDir('placement-live')
const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) {
    try {
      await c()
    } catch {
      // best effort: the next cleanup still runs
    }
  }
  dir.remove()
})

interface ResourceView {
  id: string
  phase: string
  node: string | null
  stoppedByOperator: boolean
}

/**
 * A workload the process driver supervises: a shell that appends `start <id> <node>` to a log
 * shared by every node as its first act, and `stop <id> <node>` when it is stopped (SIGTERM), so the
 * log is the order in which the real processes came and went. (A shell, not node: it is up in a
 * millisecond, well within the driver's startupMs, so its line is written before its start counts
 * as done.) Arguments: $0 id, $1 node, $2 log.
 */
const SERVICE = [
  'echo "start $0 $1" >> "$2"',
  'trap \'echo "stop $0 $1" >> "$2"; exit 0\' TERM',
  'while :; do sleep 1 & wait $!; done',
].join('\n')

/** One cluster of the file: its own folder, hub, agents and service processes. */
async function cluster(name: string, clusterLines: string[]) {
  const path = join(dir.path, name)
  mkdirSync(path)
  const log = join(path, 'services.log')
  writeFileSync(log, '')
  const clusterFile = writeLines(path, 'cluster.yaml', [
    // Tolerant detection: a busy machine stalling an agent must not make a node suspect here.
    'detection: { hub: { acceptablePauseMs: 2000 } }',
    ...clusterLines,
    '',
  ])
  const hub = await startHub(path, ['--cluster-file', clusterFile])
  cleanups.push(() => hub.process.stop())
  const pidfiles: string[] = []
  cleanups.push(() => {
    // Supervised processes outlive their agent on purpose: ended here, by their pidfile (each is
    // the leader of its own process group: the group goes, its sleep too).
    for (const file of pidfiles) {
      try {
        process.kill(-Number(readFileSync(file, 'utf8')), 'SIGKILL')
      } catch {
        // never started there, or stopped already
      }
    }
  })
  return {
    hub,
    /** A `process` resource running the service, as lines of an agent's `resources:`. */
    service(node: string, id: string): string[] {
      const pidfile = join(path, `${node}-${id}.pid`)
      pidfiles.push(pidfile)
      const argv = ['/bin/sh', '-c', SERVICE, id, node, log].map((a) => JSON.stringify(a)).join(', ')
      return [
        `  - id: ${id}`,
        '    driver: process',
        `    config: { command: [${argv}], pidfile: ${JSON.stringify(pidfile)} }`,
      ]
    },
    pidfile: (node: string, id: string) => join(path, `${node}-${id}.pid`),
    agent(node: string, resources: string[]): VigilProcess {
      const config = writeLines(path, `${node}.yaml`, [`node: ${node}`, 'resources:', ...resources, ''])
      const agent = new VigilProcess(
        ['agent', '--config', config, '--mqtt-url', hub.mqttUrl, ...hubKeyArgs(hub)],
        { cwd: path },
      )
      cleanups.push(() => agent.stop())
      return agent
    },
    /** What the services did, in order: `start db node-a`, `stop app node-a`, ... */
    events: () => readFileSync(log, 'utf8').split('\n').filter(Boolean),
  }
}

const recordsOf = async (hub: HubProcess, query = ''): Promise<Decision[]> =>
  (await hub.api<{ decisions: Decision[] }>(`/api/decisions?limit=1000${query}`)).body.decisions.reverse()

const resourcesOf = async (hub: HubProcess): Promise<ResourceView[]> =>
  (await hub.api<{ resources: ResourceView[] }>('/api/resources')).body.resources

/** Waits until the engine has `id` running on `node` (placed, started, reported running there). */
async function runsOn(hub: HubProcess, id: string, node: string, timeoutMs = 30_000): Promise<void> {
  await eventually(
    `${id} running on ${node}`,
    async () => (await resourcesOf(hub)).some((r) => r.id === id && r.phase === 'running' && r.node === node),
    { timeoutMs },
  ).catch(async (err: Error) => {
    const trail = (await recordsOf(hub))
      .slice(-25)
      .map((d) => `${d.rule} ${d.resource ?? d.node}: ${d.summary}`)
    throw new Error(`${err.message}\nlast decisions:\n${trail.join('\n')}`)
  })
}

/** Index of the first record (from `from` on) of `resource` by `rule` whose summary matches; -1 if none. */
const find = (records: Decision[], resource: string, rule: string, summary: RegExp, from = 0): number =>
  records.findIndex(
    (d, i) => i >= from && d.resource === resource && d.rule === rule && summary.test(d.summary),
  )

const post = (hub: HubProcess, path: string, body: unknown) =>
  hub.api(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })

test('dependsOn: app starts only once db runs, and stops before db when db moves or is stopped', async () => {
  const c = await cluster('order', [
    'nodes:',
    '  - id: node-a',
    '  - id: node-b',
    'resources:',
    '  - id: db',
    '    preferred: { node-a: 10 }',
    '  - id: app',
    '    dependsOn: [db]',
    '    colocate: true',
  ])
  for (const node of ['node-a', 'node-b'])
    c.agent(node, [...c.service(node, 'db'), ...c.service(node, 'app')])

  // 1. Start order: db first; app, which waited for it, after it, on the same node.
  await runsOn(c.hub, 'app', 'node-a')
  expect(c.events()).toEqual(['start db node-a', 'start app node-a'])
  let records = await recordsOf(c.hub)
  const appWaited = find(records, 'app', 'order.depends-on', /waiting for db/)
  const dbRunning = find(records, 'db', 'action.start', /-> running/)
  const appPlaced = find(records, 'app', 'placement.best-score', /^starting on node-a\b/)
  expect(appWaited).toBeGreaterThanOrEqual(0)
  expect(dbRunning).toBeGreaterThan(appWaited)
  expect(appPlaced).toBeGreaterThan(dbRunning) // placed only once db's start had succeeded
  expect(records[appPlaced]?.summary).toMatch(/node-b: must be colocated with db/)

  // 2. An operator moves db: app stops first, then db; db starts on node-b, then app after it.
  expect(
    (await post(c.hub, '/api/resources/db/move', { node: 'node-b', for: '10m', by: 'test' })).status,
  ).toBe(202)
  await runsOn(c.hub, 'app', 'node-b')
  expect(c.events()).toEqual([
    'start db node-a',
    'start app node-a',
    'stop app node-a',
    'stop db node-a',
    'start db node-b',
    'start app node-b',
  ])
  // The engine's record of why: db waited for app to stop, app stopped for db, db was placed only
  // once app had stopped, app only once db ran again.
  records = await recordsOf(c.hub)
  const moved = find(records, 'db', 'operator.move', /relocating from node-a/, appPlaced)
  const dbWaits = find(records, 'db', 'order.stop-dependents-first', /^running -> stopping/, moved)
  const appStops = find(
    records,
    'app',
    'order.stop-dependents-first',
    /^running -> stopping: .*depends on db/,
    moved,
  )
  const appStopped = find(records, 'app', 'order.depends-on', /-> waiting/, moved)
  const dbPlaced = find(records, 'db', 'operator.move', /^starting on node-b\b/, moved)
  const dbRuns = find(records, 'db', 'action.start', /-> running: .*node-b/, moved)
  const appFollows = find(records, 'app', 'placement.best-score', /^starting on node-b\b/, moved)
  expect(moved).toBeGreaterThanOrEqual(0)
  expect(dbWaits).toBeGreaterThan(moved)
  expect(appStops).toBeGreaterThan(moved)
  expect(appStopped).toBeGreaterThan(appStops)
  expect(dbPlaced).toBeGreaterThan(appStopped)
  expect(dbRuns).toBeGreaterThan(dbPlaced)
  expect(appFollows).toBeGreaterThan(dbRuns)

  // 3. An operator stops db: app first again, then db; both stay stopped.
  expect((await post(c.hub, '/api/resources/db/stop', { by: 'test' })).status).toBe(202)
  await eventually('db stopped by the operator', async () =>
    (await resourcesOf(c.hub)).some((r) => r.id === 'db' && r.phase === 'stopped' && r.stoppedByOperator),
  )
  expect(c.events().slice(6)).toEqual(['stop app node-b', 'stop db node-b'])
  await new Promise((r) => setTimeout(r, 1000)) // anything that would restart them has had its chance
  expect(c.events()).toHaveLength(8)
  expect((await resourcesOf(c.hub)).find((r) => r.id === 'app')).toMatchObject({
    phase: 'waiting',
    node: null,
  })
  records = await recordsOf(c.hub)
  const stopped = find(records, 'db', 'operator.stop', /^stopping on node-b/, appFollows)
  const appFirst = find(records, 'app', 'order.stop-dependents-first', /^running -> stopping/, stopped)
  const dbLast = find(records, 'db', 'operator.stopped', /-> stopped/, stopped)
  expect(stopped).toBeGreaterThan(appFollows)
  expect(appFirst).toBeGreaterThan(stopped)
  const appDown = find(records, 'app', 'order.depends-on', /-> waiting/, appFirst)
  expect(appDown).toBeGreaterThan(appFirst)
  expect(dbLast).toBeGreaterThan(appDown)

  // 4. Started again: db placed as usual (the stop ended its move: back on its preferred node-a),
  // then app after it.
  expect((await post(c.hub, '/api/resources/db/start', { by: 'test' })).status).toBe(202)
  await runsOn(c.hub, 'app', 'node-a')
  expect(c.events().slice(8)).toEqual(['start db node-a', 'start app node-a'])
  // One copy of each: node-b's were stopped (the driver removes the pidfile of what it stopped).
  expect(existsSync(c.pidfile('node-b', 'db'))).toBe(false)
  expect(existsSync(c.pidfile('node-b', 'app'))).toBe(false)
}, 60_000)

test('ping: a node that loses its ping targets hands its running resource to a node that reaches them', async () => {
  // Each node's ping target is a host of its own (a network namespace behind a veth pair): cutting
  // node-a's link makes its target really unreachable, by ICMP, while node-b's still answers.
  const targets = { 'node-a': NetnsHost.create(), 'node-b': NetnsHost.create() }
  for (const t of Object.values(targets)) cleanups.push(() => t.destroy())
  // 200 points per target reached: node-a (10 + 200 + 100 stickiness) keeps web while it reaches
  // its target; without it (10 + 100) it loses to node-b (200), once that has held for 2 s.
  const c = await cluster('ping', [
    'connectivityWeight: 200',
    'nodes:',
    '  - id: node-a',
    '  - id: node-b',
    'resources:',
    '  - id: web',
    '    preferred: { node-a: 10 }',
    '    policy: { failbackStableMs: 2000 }',
  ])
  for (const node of ['node-a', 'node-b'] as const)
    c.agent(node, [
      ...c.service(node, 'web'),
      '  - id: upstream',
      '    driver: ping',
      '    monitorIntervalMs: 300',
      `    config: { targets: ['${targets[node].ip}'], timeoutMs: 500 }`,
    ])
  await runsOn(c.hub, 'web', 'node-a')
  expect(c.events()).toEqual(['start web node-a'])
  // Both reach their target: 10 + 200 on node-a against 200 on node-b.
  const placed = (await recordsOf(c.hub, '&resource=web')).find((d) => d.kind === 'place')
  expect(placed?.summary).toMatch(/^starting on node-a \(score 210; node-b: score 200\)/)

  targets['node-a'].link(false)
  await runsOn(c.hub, 'web', 'node-b')
  expect(c.events()).toEqual(['start web node-a', 'stop web node-a', 'start web node-b'])
  const records = await recordsOf(c.hub, '&resource=web')
  // Dampened: the loss had to hold for failbackStableMs before anything moved; the reason named.
  const waited = find(records, 'web', 'placement.failback-wait', /moving to node-b .*held for 2 s/)
  const moved = find(records, 'web', 'placement.better-node', /^moving to node-b/, waited)
  expect(waited).toBeGreaterThanOrEqual(0)
  expect(moved).toBeGreaterThan(waited)
  for (const i of [waited, moved]) {
    expect(records[i]?.summary).toMatch(/scores 200 against 110 on node-a/)
    expect(records[i]?.summary).toMatch(/node-a reaches 0 of 1 ping targets/)
  }
  expect(
    records[find(records, 'web', 'placement.best-score', /^starting on node-b/, moved)]?.summary,
  ).toMatch(/^starting on node-b \(score 200; node-a: score 10\)/)
  // A placement preference, not a fault: node-a is still healthy, nothing was fenced.
  const nodeA = await c.hub.api<{ engine: { condition: string } }>('/api/nodes/node-a')
  expect(nodeA.body.engine.condition).toBe('healthy')
  expect((await recordsOf(c.hub)).filter((d) => d.rule.startsWith('fence.'))).toEqual([])
}, 60_000)

test('nic: a node whose link is down is passed over when a resource fails over', async () => {
  // Each node watches a real NIC: the root end of a veth pair whose other end is in a namespace.
  const links = {
    'node-a': NetnsHost.create(),
    'node-b': NetnsHost.create(),
    'node-c': NetnsHost.create(),
  }
  for (const l of Object.values(links)) cleanups.push(() => l.destroy())
  // web prefers node-a, then node-b; node-c is its last choice. Its ladder relocates at once.
  const c = await cluster('nic', [
    'nodes:',
    '  - id: node-a',
    '  - id: node-b',
    '  - id: node-c',
    'resources:',
    '  - id: web',
    '    preferred: { node-a: 10, node-b: 5 }',
    '    policy: { ladder: [relocate] }',
  ])
  for (const node of ['node-a', 'node-b', 'node-c'] as const)
    c.agent(node, [
      ...c.service(node, 'web'),
      '  - id: uplink',
      '    driver: nic',
      `    config: { interface: ${links[node].outerLink} }`,
    ])
  await runsOn(c.hub, 'web', 'node-a')
  const first = (await recordsOf(c.hub, '&resource=web')).find((d) => d.kind === 'place')
  expect(first?.summary).toMatch(/^starting on node-a \(score 10; node-b: score 5, node-c: score 0\)/)

  // node-b's link goes down: it stays healthy (never fenced for it), but is degraded.
  links['node-b'].link(false)
  const degraded = await eventually('node-b degraded', async () =>
    (await recordsOf(c.hub, '&node=node-b')).find((d) => d.rule === 'classify.nic-degraded'),
  )
  expect(degraded.summary).toContain(`${links['node-b'].outerLink}: down`)
  const nodeB = async () =>
    (await c.hub.api<{ engine: { condition: string; health: number } }>('/api/nodes/node-b')).body.engine
  await eventually('node-b healthy, its health score lowered', async () => {
    const b = await nodeB()
    return b.condition === 'healthy' && b.health === 80
  })

  // web crashes on node-a: its ladder relocates it, to node-c, not to the degraded node-b that it
  // would otherwise prefer.
  process.kill(Number(readFileSync(c.pidfile('node-a', 'web'), 'utf8')), 'SIGKILL')
  await runsOn(c.hub, 'web', 'node-c')
  const records = await recordsOf(c.hub, '&resource=web')
  const relocated = find(records, 'web', 'ladder.relocate', /failed on node-a/)
  const placed = find(records, 'web', 'placement.best-score', /^starting on node-c/, relocated)
  expect(relocated).toBeGreaterThanOrEqual(0)
  expect(placed).toBeGreaterThan(relocated)
  // 5 for its preference, 50 off for its link: -45 against node-c's 0.
  expect(records[placed]?.summary).toMatch(/^starting on node-c \(score 0; node-b: score -45\b/)
  expect(c.events()).toEqual(['start web node-a', 'start web node-c'])
  expect(existsSync(c.pidfile('node-b', 'web'))).toBe(false)

  // The link back: restored, and node-b was never fenced.
  links['node-b'].link(true)
  await eventually('node-b links restored', async () =>
    (await recordsOf(c.hub, '&node=node-b')).some((d) => d.rule === 'classify.nic-restored'),
  )
  await eventually('node-b healthy, its health score whole again', async () => {
    const b = await nodeB()
    return b.condition === 'healthy' && b.health === 100
  })
  expect((await recordsOf(c.hub)).filter((d) => d.rule.startsWith('fence.'))).toEqual([])
}, 60_000)
