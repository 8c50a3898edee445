import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Input } from '@vigil/engine'
import { createLogger } from '@vigil/kit'
import { encode, nodeTopic, type Observation } from '@vigil/protocol'
import { afterEach, expect, test } from 'vitest'
import { Ingest } from './ingest.js'
import { emptyHubMetrics } from './metrics.test-helper.js'
import { NodeTable } from './nodes.js'
import { type EventRow, HubStore } from './store.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-ingest-'))
  dirs.push(dir)
  const inputs: Input[] = []
  const events: EventRow[] = []
  const checked: string[] = []
  const updated: string[] = []
  const table = new NodeTable()
  const ingest = new Ingest(
    'c1',
    table,
    new HubStore(join(dir, 'hub.sqlite')),
    emptyHubMetrics(),
    { wallMs: () => Date.now(), monoMs: () => performance.now() },
    createLogger('test', 'silent'),
    {
      onNodeUpdated: (id) => updated.push(id),
      onEvent: (e) => events.push(e),
      onCommandResult: () => {},
      onEngineInput: (i) => inputs.push(i),
      // A hub whose detection fences before 5 s: a response done later is late.
      isolationProblem: (node, isolation) => {
        checked.push(node)
        return isolation.doneWithinMs >= 5000
          ? { key: 'isolation.afterMs', message: `${node} late` }
          : undefined
      },
    },
  )
  let seq = 0
  const observe = (observations: Observation[]) =>
    ingest.handle(
      nodeTopic('c1', 'n1', 'obs'),
      Buffer.from(
        encode('obs', {
          v: 1,
          node: 'n1',
          incarnation: 1,
          seq: seq++,
          at: Date.now(),
          observations,
          complete: true,
        }),
      ),
    )
  let hbSeq = 0
  /** A heartbeat of n1 (its disk sightings, if any). */
  const heartbeat = (incarnation: number, disk?: { node: string; incarnation: number; counter: number }[]) =>
    ingest.handle(
      nodeTopic('c1', 'n1', 'hb'),
      Buffer.from(
        encode('hb', {
          v: 1,
          node: 'n1',
          incarnation,
          seq: hbSeq++,
          sentMono: 1,
          sentAt: Date.now(),
          intervalMs: 250,
          ...(disk ? { disk } : {}),
        }),
      ),
    )
  /** n1's status: its birth message (announcing an isolation response done within `doneWithinMs`) or another. */
  const hello = (
    incarnation: number,
    doneWithinMs: number,
    state: 'online' | 'offline' | 'gone' = 'online',
  ) =>
    ingest.handle(
      nodeTopic('c1', 'n1', 'status'),
      Buffer.from(
        encode('status', {
          v: 1,
          node: 'n1',
          incarnation,
          state,
          at: Date.now(),
          agentVersion: '0.1.0',
          role: 'host',
          capabilities: [],
          isolation: { afterMs: 3000, action: 'stop', doneWithinMs, diskHeartbeat: true },
        }),
      ),
    )
  return { inputs, events, checked, updated, table, observe, heartbeat, hello }
}

test("an agent's isolation response is checked at its hello, once per incarnation; a late one is an event", () => {
  const { events, checked, hello } = setup()
  hello(1, 4000)
  hello(1, 4000) // a reconnect repeats the birth message
  const late = () => events.filter((e) => e.kind === 'config.isolation-late')
  expect(checked).toEqual(['n1'])
  expect(late()).toEqual([])
  hello(2, 23_000)
  hello(2, 23_000)
  expect(checked).toEqual(['n1', 'n1'])
  expect(late()).toHaveLength(1)
  expect(late()[0]).toMatchObject({
    node: 'n1',
    kind: 'config.isolation-late',
    severity: 'warning',
    message: 'n1 late',
    attrs: { key: 'isolation.afterMs', afterMs: 3000, doneWithinMs: 23_000, diskHeartbeat: true },
  })
})

test.each([
  {
    what: 'every link up',
    nics: [{ driver: 'nic', target: 'eth0', state: 'running', metrics: { degraded: 0 } }],
    expected: { degraded: false, detail: 'all links up' },
  },
  {
    what: 'a bond lost a slave',
    nics: [
      {
        driver: 'nic',
        target: 'bond0',
        state: 'running',
        detail: 'bond0 degraded: bond slave eth2 down',
        metrics: { degraded: 1 },
      },
      { driver: 'nic', target: 'eth0', state: 'running', metrics: { degraded: 0 } },
    ],
    expected: { degraded: true, detail: 'bond0 degraded: bond slave eth2 down' },
  },
  {
    what: 'a link down',
    nics: [{ driver: 'nic', target: 'eth1', state: 'failed', detail: 'eth1: down, no carrier' }],
    expected: { degraded: true, detail: 'eth1: down, no carrier' },
  },
  {
    what: 'its ESX host, as vCenter sees it, cannot reach a datastore',
    nics: [
      { driver: 'nic', target: 'eth0', state: 'running', metrics: { degraded: 0 } },
      {
        driver: 'vsphere-host',
        target: 'esx',
        state: 'failed',
        detail: 'cannot reach datastore LocalDS_0',
        metrics: { datastoresUnreachable: 1 },
      },
    ],
    expected: { degraded: true, detail: 'cannot reach datastore LocalDS_0' },
  },
] as { what: string; nics: Observation[]; expected: object }[])(
  'nic and vsphere-host observations become link-state: $what',
  ({ nics, expected }) => {
    const { inputs, observe } = setup()
    observe(nics)
    expect(inputs.find((i) => i.type === 'link-state')).toEqual({
      type: 'link-state',
      node: 'n1',
      ...expected,
    })
  },
)

test('ping observations become the node connectivity, summed over its ping resources', () => {
  const { inputs, observe } = setup()
  observe([
    { driver: 'ping', target: 'gw', state: 'running', metrics: { reachable: 1, total: 1 } },
    { driver: 'ping', target: 'peers', state: 'failed', metrics: { reachable: 0, total: 2 } },
    { driver: 'process', target: 'web', state: 'running' },
  ])
  expect(inputs.find((i) => i.type === 'connectivity')).toEqual({
    type: 'connectivity',
    node: 'n1',
    reachable: 1,
    total: 3,
  })
  expect(inputs.some((i) => i.type === 'link-state')).toBe(false) // no nic resource: no link opinion
})

test('shared-disk sightings become disk heartbeats only when the counter goes up', () => {
  const { inputs, heartbeat } = setup()
  const hb = (disk: { node: string; incarnation: number; counter: number }[]) => heartbeat(1, disk)
  hb([{ node: 'n2', incarnation: 5, counter: 10 }]) // baseline: an old slot proves nothing
  hb([{ node: 'n2', incarnation: 5, counter: 10 }]) // not advancing (n2 stopped writing)
  hb([{ node: 'n2', incarnation: 5, counter: 11 }]) // advancing
  hb([{ node: 'n2', incarnation: 6, counter: 1 }]) // restarted: a new incarnation counts
  hb([{ node: 'n2', incarnation: 5, counter: 99 }]) // an older incarnation never does
  expect(inputs.filter((i) => i.type === 'disk-heartbeat')).toEqual([
    { type: 'disk-heartbeat', node: 'n2' },
    { type: 'disk-heartbeat', node: 'n2' },
  ])
})

test("a vm's guest heartbeat counter becomes guest heartbeats only when it goes up", () => {
  const { inputs, observe } = setup()
  const vm = (guestHeartbeats: number, state: Observation['state'] = 'running'): Observation => ({
    driver: 'libvirt',
    target: 'vm1',
    state,
    metrics: { vcpus: 1, guestHeartbeats },
  })
  observe([vm(40)]) // baseline: lines seen before prove nothing now
  observe([vm(40)]) // stalled (a hung guest)
  observe([vm(41)])
  observe([vm(43)])
  observe([vm(44, 'paused')]) // not running: no opinion
  observe([vm(2)]) // the agent restarted: a new baseline
  observe([vm(3)])
  expect(inputs.filter((i) => i.type === 'guest-heartbeat')).toEqual([
    { type: 'guest-heartbeat', resource: 'vm1' },
    { type: 'guest-heartbeat', resource: 'vm1' },
    { type: 'guest-heartbeat', resource: 'vm1' },
  ])
})

test("a vm observation's age goes to the engine with it: a stale guest count is not a silent guest", () => {
  const { inputs, observe } = setup()
  const vm = (ageMs?: number): Observation => ({
    driver: 'libvirt',
    target: 'vm1',
    state: 'running',
    metrics: { guestHeartbeats: 7 },
    ...(ageMs === undefined ? {} : { ageMs }),
  })
  observe([vm(120)])
  observe([vm(4200)]) // its monitor hangs: the same answer, older
  observe([vm()]) // an agent that does not say: judged as before
  expect(inputs.filter((i) => i.type === 'guest-sample')).toEqual([
    { type: 'guest-sample', node: 'n1', resource: 'vm1', ageMs: 120 },
    { type: 'guest-sample', node: 'n1', resource: 'vm1', ageMs: 4200 },
  ])
})

test('a new incarnation of a known agent tells the engine it restarted, once; its first run does not', () => {
  const { inputs, heartbeat: hb } = setup()
  hb(1) // first heard: nothing was sent to an earlier run
  hb(1)
  hb(2) // restarted
  hb(2)
  hb(1) // a late message of the old run is rejected, not a restart
  expect(inputs.filter((i) => i.type === 'agent-restarted')).toEqual([
    { type: 'agent-restarted', node: 'n1' },
  ])
})

// The hub judges no node itself (the engine does); what it keeps is the agent's word, a clean
// shutdown among it, shown beside the engine's condition until a new run of the agent is heard.
test("a clean shutdown is the agent's word: kept until a new run of it, told once, never undone by a straggler", () => {
  const { events, updated, table, heartbeat, hello } = setup()
  hello(1, 1000)
  heartbeat(1)
  expect(table.view('n1')?.shutdownAt).toBeNull()
  expect(table.running()).toEqual(['n1'])
  hello(1, 1000, 'gone') // the broker's last will: the engine hears the silence for itself
  expect(table.view('n1')?.shutdownAt).toBeNull()

  updated.length = 0
  hello(1, 1000, 'offline')
  hello(1, 1000, 'offline') // retained, read again at a reconnect
  heartbeat(1) // sent before the shutdown, delivered after it
  expect(table.view('n1')?.shutdownAt).toEqual(expect.any(Number))
  expect(table.running()).toEqual([])
  expect(updated).toContain('n1')
  const told = events.filter((e) => e.kind === 'node.shutdown')
  expect(told).toHaveLength(1)
  expect(told[0]).toMatchObject({ node: 'n1', severity: 'info', attrs: { incarnation: 1 } })

  heartbeat(2) // the agent's next run
  expect(table.view('n1')?.shutdownAt).toBeNull()
  expect(table.running()).toEqual(['n1'])
  // No judgement of the hub's own: without the engine a node's state is unknown.
  expect(table.view('n1')).toMatchObject({ state: 'unknown', stateSince: null, engine: null })
})
