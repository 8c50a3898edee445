import { execFileSync } from 'node:child_process'
import { afterAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { PEER_LAB_NODES, settledFence, startPeerLab } from '../harness/lab.js'
import { tempDir } from '../harness/processes.js'

interface Decision {
  id: string
  kind: string
  rule: string
  node?: string
  summary: string
  at: number
  evidence?: { channel: string; alive: boolean | null; says: string }[]
}

const dir = tempDir('peers-live')

const nodes = PEER_LAB_NODES

const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  dir.remove()
})

// Three hosts as network namespaces with the UDP peer mesh between their agents. node-c loses the
// hub only (a blackhole route to it): its peers still hear it, so it is "partitioned", never
// fenced. Then node-c really dies (every process killed): nobody hears it, it is dead and fenced.
test('the peer mesh tells "cut from the hub" (never fenced) from "dead" (fenced)', async () => {
  const { lab, hub } = await startPeerLab(dir.path, 'partitioned', { disk: false, cleanups })
  const condition = async (node: string) =>
    (await hub.api<{ engine: { condition: string } | null }>(`/api/nodes/${node}`)).body.engine?.condition
  const decisions = async () =>
    (
      await hub.api<{ decisions: Decision[] }>('/api/decisions?node=node-c&limit=200')
    ).body.decisions.reverse()
  await eventually('all healthy', async () => {
    for (const n of nodes) if ((await condition(n)) !== 'healthy') return false
    return true
  })

  // A node slow to start can be fenced at startup (like Pacemaker's startup-fencing) before it was
  // ever heard; a running fence always completes. Start from a settled fence state, and count only
  // the decisions made after the fault.
  await settledFence(hub)
  // Cut node-c from the hub only.
  const before = new Set((await decisions()).map((d) => d.id))
  const hostC = lab.host('node-c')
  execFileSync('ip', ['-n', hostC.netns, 'route', 'add', 'blackhole', `${lab.hubIp}/32`])
  await eventually('node-c partitioned', async () => (await condition('node-c')) === 'partitioned', {
    timeoutMs: 20_000,
  })
  const partitioned = (await decisions()).find((d) => d.rule === 'classify.partitioned')
  expect(partitioned?.evidence?.find((e) => e.channel === 'peers')).toMatchObject({ alive: true })
  expect(partitioned?.evidence?.find((e) => e.channel === 'peers')?.says).toMatch(
    /^heard by node-[ab]/, // by one or both peers, as their reports arrive
  )
  // The reachability matrix (reported over the mesh): node-c's peers still hear it.
  const matrix = (await hub.api<{ peers: { node: string; hears: string[] | null }[] }>('/api/peers')).body
    .peers
  expect(matrix.find((p) => p.node === 'node-a')?.hears).toContain('node-c')
  expect(matrix.find((p) => p.node === 'node-b')?.hears).toContain('node-c')
  await new Promise((r) => setTimeout(r, 3000)) // well past detection and confirmation
  expect((await decisions()).filter((d) => d.kind === 'fence' && !before.has(d.id))).toEqual([])
  expect(await condition('node-c')).toBe('partitioned')

  // Heal, then really kill node-c: every channel goes silent and it is fenced.
  execFileSync('ip', ['-n', hostC.netns, 'route', 'del', 'blackhole', `${lab.hubIp}/32`])
  await eventually('node-c healthy again', async () => (await condition('node-c')) === 'healthy', {
    timeoutMs: 20_000,
  })
  hostC.killAll()
  await eventually('node-c dead and fenced', async () =>
    (await decisions()).some((d) => d.rule === 'fence.dead' && !before.has(d.id)),
  )
  const dead = (await decisions()).filter((d) => d.rule === 'classify.dead' && !before.has(d.id)).at(-1)
  expect(dead?.evidence?.find((e) => e.channel === 'peers')).toMatchObject({ alive: false })
})

// A host that loses the network entirely (its link down) while its shared-disk heartbeat goes on:
// the hub and the peers cannot hear it, but it is alive, so it is isolated, not dead; it may still
// run its resources, so it is fenced (here by a person: meatware, which never confirms by itself).
test('the shared-disk heartbeat tells "isolated" (alive, cut off) from "dead"', async () => {
  const { lab, hub } = await startPeerLab(dir.path, 'isolated', { disk: true, cleanups })
  const condition = async (node: string) =>
    (await hub.api<{ engine: { condition: string } | null }>(`/api/nodes/${node}`)).body.engine?.condition
  await eventually('all healthy', async () => {
    for (const n of nodes) if ((await condition(n)) !== 'healthy') return false
    return true
  })

  await settledFence(hub)
  const seen = new Set(
    (await hub.api<{ decisions: Decision[] }>('/api/decisions?node=node-c&limit=200')).body.decisions.map(
      (d) => d.id,
    ),
  )
  lab.host('node-c').link(false)
  await eventually('node-c isolated', async () => (await condition('node-c')) === 'isolated', {
    timeoutMs: 20_000,
  })
  const list = (await hub.api<{ decisions: Decision[] }>('/api/decisions?node=node-c&limit=200')).body
    .decisions
  const isolated = list.find((d) => d.rule === 'classify.isolated' && !seen.has(d.id))
  expect(isolated?.evidence?.find((e) => e.channel === 'disk')).toMatchObject({ alive: true })
  expect(isolated?.evidence?.find((e) => e.channel === 'peers')).toMatchObject({ alive: false })
  await eventually('node-c fenced because it may still run resources', async () =>
    (await hub.api<{ decisions: Decision[] }>('/api/decisions?node=node-c&limit=200')).body.decisions.some(
      (d) => d.kind === 'fence' && d.rule === 'fence.isolated' && !seen.has(d.id),
    ),
  )
})

// A host that crashes while the hub is down is not left to the restarted hub's startup grace (10 s,
// for agents slow to reconnect): its disk heartbeat stays still while the others' advance, and no
// peer hears it, so it is judged dead and fenced within seconds of the restart.
test('a host that crashed while the hub restarted is judged on its disk and peers, not after the startup grace', async () => {
  const { lab, hub: first, restartHub } = await startPeerLab(dir.path, 'restart', { disk: true, cleanups })
  const conditionOn = async (hub: typeof first, node: string) =>
    (await hub.api<{ engine: { condition: string } | null }>(`/api/nodes/${node}`)).body.engine?.condition
  await eventually('all healthy', async () => {
    for (const n of nodes) if ((await conditionOn(first, n)) !== 'healthy') return false
    return true
  })
  await settledFence(first)
  // node-c's disk heartbeat known to the engine, and in the state it saves every 2 s.
  await eventually(
    "node-c's disk heartbeat followed",
    async () =>
      (await first.metric('vigil_heartbeat_phi', { node: 'node-c', channel: 'disk' })) !== undefined,
  )
  await new Promise((r) => setTimeout(r, 2500))
  // The hub dies first, so that only the restarted hub can have judged node-c.
  const restarting = restartHub()
  await new Promise((r) => setTimeout(r, 100))
  lab.host('node-c').killAll()
  const hub = await restarting
  const restartedAt = Date.now()
  const since = async () =>
    (await hub.api<{ decisions: Decision[] }>('/api/decisions?node=node-c&limit=200')).body.decisions.filter(
      (d) => d.at >= restartedAt - 5000,
    )
  const dead = await eventually(
    'node-c judged dead by the restarted hub',
    async () => (await since()).find((d) => d.rule === 'classify.dead'),
    { timeoutMs: 30_000 },
  )
  expect(dead.summary).toContain('the startup grace is not waited out')
  expect(dead.evidence?.find((e) => e.channel === 'disk')).toMatchObject({ alive: false })
  expect(dead.evidence?.find((e) => e.channel === 'peers')).toMatchObject({ alive: false })
  await eventually('node-c fenced', async () =>
    (await since()).some((d) => d.kind === 'fence' && d.rule === 'fence.dead'),
  )
  // The others were never suspected for reconnecting after the restart.
  const others = (await hub.api<{ decisions: Decision[] }>('/api/decisions?limit=500')).body.decisions.filter(
    (d) => d.at >= restartedAt - 5000 && d.node !== 'node-c' && d.kind === 'node-condition',
  )
  expect(others.filter((d) => /-> (suspect|dead|isolated)/.test(d.summary))).toEqual([])
  for (const n of ['node-a', 'node-b']) expect(await conditionOn(hub, n)).toBe('healthy')
})
