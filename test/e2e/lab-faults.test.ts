import { execFileSync } from 'node:child_process'
import { afterAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import type { HubProcess } from '../harness/hub.js'
import { PEER_LAB_NODES, settledFence, startPeerLab } from '../harness/lab.js'
import { tempDir } from '../harness/processes.js'

// Faults that must NOT end in a fence, on three hosts made of network namespaces with the peer
// mesh between their agents: the hub losing every host at once (its own link, or a switch), a
// host's link flapping for less than the detection grace, and heavy packet loss on a host's link.

interface Decision {
  id: string
  kind: string
  rule: string
  node?: string
}

const dir = tempDir('lab-faults')
/** These faults must not fence; an agent stalled by a loaded CI must not be what fences either. */
const TOLERANT = ['detection: { hub: { acceptablePauseMs: 1500 } }']
const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  dir.remove()
})

const condition = async (hub: HubProcess, node: string) =>
  (await hub.api<{ engine: { condition: string } | null }>(`/api/nodes/${node}`)).body.engine?.condition
const allHealthy = (hub: HubProcess) =>
  eventually(
    'every host healthy',
    async () => {
      for (const n of PEER_LAB_NODES) if ((await condition(hub, n)) !== 'healthy') return false
      return true
    },
    { timeoutMs: 20_000 },
  )
const decisions = async (hub: HubProcess) =>
  (await hub.api<{ decisions: Decision[] }>('/api/decisions?limit=1000')).body.decisions

/** A settled peer lab (every host healthy, no fence in flight) and the decisions made since. */
async function settledLab(name: string) {
  const { lab, hub } = await startPeerLab(dir.path, name, { disk: false, cleanups, clusterLines: TOLERANT })
  await allHealthy(hub)
  await settledFence(hub)
  const before = new Set((await decisions(hub)).map((d) => d.id))
  const since = async () => (await decisions(hub)).filter((d) => !before.has(d.id))
  return { lab, hub, since }
}

/** The fault cost node-c nothing: never called dead or isolated, never fenced, healthy now. */
async function expectUnharmed(hub: HubProcess, since: () => Promise<Decision[]>): Promise<void> {
  const after = await since()
  expect(after.filter((d) => d.rule === 'classify.dead' || d.rule === 'classify.isolated')).toEqual([])
  expect(after.filter((d) => d.kind === 'fence')).toEqual([])
  expect(await condition(hub, 'node-c')).toBe('healthy')
}

test('the hub cut from every host at once freezes: nothing is fenced, and all return healthy', async () => {
  const { lab, hub, since } = await settledLab('hub-partition')
  lab.hubLinkUp(false)
  // Every host goes silent together: a hub-side partition, not three deaths.
  await eventually(
    'the hosts frozen',
    async () => {
      for (const n of PEER_LAB_NODES) if ((await condition(hub, n)) !== 'frozen') return false
      return true
    },
    { timeoutMs: 20_000 },
  )
  await new Promise((r) => setTimeout(r, 3000)) // well past detection, confirmation and a fence level
  const during = await since()
  expect(during.some((d) => d.rule === 'governor.freeze-share')).toBe(true)
  expect(during.filter((d) => d.kind === 'fence')).toEqual([])
  lab.hubLinkUp(true)
  await allHealthy(hub)
  const after = await since()
  expect(after.filter((d) => d.kind === 'fence')).toEqual([])
  expect(await hub.metric('vigil_nodes_by_condition', { condition: 'frozen' })).toBe(0)
})

test('a link flap shorter than the detection grace costs nothing: no node dead, no fence', async () => {
  const { lab, hub, since } = await settledLab('flap')
  const host = lab.host('node-c')
  for (let i = 0; i < 3; i++) {
    host.link(false)
    await new Promise((r) => setTimeout(r, 300))
    host.link(true)
    await new Promise((r) => setTimeout(r, 1000))
  }
  await new Promise((r) => setTimeout(r, 2000))
  await expectUnharmed(hub, since)
})

test('30 % packet loss each way on a host link for 10 s costs nothing: no node dead, no fence', async () => {
  const { lab, hub, since } = await settledLab('loss')
  const host = lab.host('node-c')
  host.loss(30)
  let dropped = 0
  try {
    await new Promise((r) => setTimeout(r, 10_000))
    // The loss was real: the host's own firewall counted what it dropped (heartbeats, peer datagrams).
    const [cmd, ...args] = host.exec(['iptables', '-L', 'INPUT', '-v', '-n', '-x'])
    const table = execFileSync(cmd as string, args, { encoding: 'utf8' })
    dropped = Number(/^\s*(\d+)\s+\d+\s+DROP/m.exec(table)?.[1] ?? 0)
  } finally {
    host.loss(0)
  }
  expect(dropped).toBeGreaterThan(10)
  await new Promise((r) => setTimeout(r, 2000))
  await expectUnharmed(hub, since)
}, 60_000)

test('500 ms of jitter each way on a host link for 10 s costs nothing: no node dead, no fence', async () => {
  const { lab, hub, since } = await settledLab('jitter')
  // netem's `delay 500ms 500ms`: each packet, each way, held 0-1,000 ms, so they also arrive reordered.
  const jitter = await lab.host('node-c').delay({ delayMs: 500, jitterMs: 500 })
  let held = 0
  try {
    await new Promise((r) => setTimeout(r, 10_000))
  } finally {
    held = (await jitter.stop()).packets
  }
  // The delay was real: heartbeats, peer datagrams and MQTT segments went through the hold.
  expect(held).toBeGreaterThan(10)
  await new Promise((r) => setTimeout(r, 2000))
  await expectUnharmed(hub, since)
}, 60_000)
