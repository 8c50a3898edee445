import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  type Bmc,
  type EtcdCluster,
  NetnsLab,
  netnsPowerControl,
  startBmc,
  startEtcdCluster,
} from '@vigil/testbed'
import { Etcd3 } from 'etcd3'
import { afterAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { type HubProcess, startHub } from '../harness/hub.js'
import { runVigil, tempDir, VigilProcess, writeLines } from '../harness/processes.js'

// Two hubs in a hub group on a real 3-member etcd cluster, each on a lab host of its own (a network
// namespace) with its embedded broker; two lab hosts whose agents are connected to both brokers and
// trust both hubs' keys; node-b's power is a real IPMI BMC
// (ipmi_sim) whose chassis control kills every process of node-b's namespace. The leader hub is
// killed (its broker with it) or paused, then node-b crashes: the other hub must take over, fence node-b once (read
// back off), and only then start web on node-a. A witness file is the ground truth of where web ran.

const dir = tempDir('hub-group')
const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  dir.remove()
})

interface GroupView {
  enabled: boolean
  role: string
  self: string
  epoch: number | null
  leader: { hub: string; epoch: number } | null
}

interface GroupLab {
  lab: NetnsLab
  bmc: Bmc
  etcd: EtcdCluster
  hubs: Map<string, HubProcess>
  agents: Map<string, VigilProcess>
  witnessFile: string
  cluster: string
  /** node-b's power control program (its `.off-requested` marker tells a fence is in flight). */
  powerCtl: string
  /** Each hub's own copy of the cluster file. */
  clusterFiles: Map<string, string>
}

let labSeq = 0

/** `slowOffMs`: node-b's BMC takes that long to power it off, answering nothing meanwhile. */
async function startGroupLab(opts: { slowOffMs?: number } = {}): Promise<GroupLab> {
  const name = `g${++labSeq}`
  const cluster = `group${labSeq}`
  const base = join(dir.path, name)
  mkdirSync(base, { recursive: true })
  // The hubs are lab hosts too, so that one can be cut from etcd and nothing else.
  const lab = NetnsLab.create(['node-a', 'node-b', 'hub-a', 'hub-b'])
  cleanups.push(() => lab.destroy())
  const etcd = await startEtcdCluster({ dir: join(base, 'etcd'), host: lab.hubIp })
  cleanups.push(() => etcd.stop())
  const nodeB = lab.host('node-b')

  const hostCtl = netnsPowerControl(join(base, 'node-b-power.sh'), nodeB.netns, {
    ...(opts.slowOffMs ? { offDelayMs: opts.slowOffMs } : {}),
  })
  const bmc = await startBmc({ hostCtl, listen: lab.hubIp })
  cleanups.push(() => bmc.stop())

  // The agents start after the hubs, each loading Node.js and its drivers: on a loaded CI machine
  // that took longer than the default 10 s startup grace, and a node never heard within it is
  // fenced by design. The grace is not what these tests are about.
  const clusterLines = [
    'detection: { startupGraceMs: 30000 }',
    'nodes:',
    '  - id: node-a',
    '  - id: node-b',
    '    fencing: [{ devices: [bmc-b], timeoutMs: 10000 }]',
    'resources:',
    '  - id: web',
    '    preferred: { node-b: 10 }',
    '',
  ]
  const hubs = new Map<string, HubProcess>()
  const clusterFiles = new Map<string, string>()
  for (const hub of ['hub-a', 'hub-b']) {
    const clusterFile = writeLines(base, `cluster-${hub}.yaml`, clusterLines)
    clusterFiles.set(hub, clusterFile)
    const hubFile = writeLines(base, `${hub}.yaml`, [
      `cluster: ${cluster}`,
      `name: ${hub}`,
      `group: { endpoints: [${etcd.endpoints.join(', ')}], leaseTtlSeconds: 2, pollMs: 100 }`,
      'fencing:',
      // A lab host's crash kills all it runs, which its BMC reads as power off: with the power poll
      // the node would be proven off by a reading. These tests are about the fence a takeover runs.
      '  powerPollMs: 0',
      '  devices:',
      '    - id: bmc-b',
      '      driver: ipmi',
      '      hosts: { node-b: [] }',
      `      config: { host: ${bmc.host}, port: ${bmc.port}, username: ${bmc.username}, passwordFile: ${bmc.passwordFile}${
        // A slow BMC's answer comes after its off: no resend of the off in the meantime.
        opts.slowOffMs ? `, attemptTimeoutS: ${Math.ceil(opts.slowOffMs / 1000) + 3}` : ''
      } }`,
      '',
    ])
    const proc = await startHub(
      base,
      [
        '--config',
        hubFile,
        '--cluster-file',
        clusterFile,
        '--db',
        join(base, `${hub}.sqlite`),
        '--listen',
        `${lab.host(hub).ip}:0`,
        // Each hub's embedded broker, on its own machine: the agents connect to both.
        '--broker-listen',
        `${lab.host(hub).ip}:0`,
      ],
      {},
      lab.host(hub).exec([]),
    )
    cleanups.push(() => proc.process.stop())
    hubs.set(hub, proc)
  }
  // Agents trust every hub of the group: each signs with its own key.
  const keys = join(base, 'hub-keys.pem')
  writeFileSync(keys, [...hubs.values()].map((h) => readFileSync(h.hubKey, 'utf8')).join(''))

  const witnessFile = join(base, 'witness.log')
  const agents = new Map<string, VigilProcess>()
  for (const node of ['node-a', 'node-b']) {
    const file = writeLines(base, `${node}.yaml`, [
      `node: ${node}`,
      `cluster: ${cluster}`,
      `mqtt: { url: [${[...hubs.values()].map((h) => `'${h.mqttUrl}'`).join(', ')}] }`,
      `commands: { hubPublicKeyFile: ${keys} }`,
      'resources:',
      '  - id: web',
      '    driver: process',
      '    config:',
      `      command: [sh, -c, 'while :; do echo "${node} $(date +%s%N)" >> ${witnessFile}; sleep 0.05; done']`,
      `      pidfile: ${join(base, `${node}-web.pid`)}`,
      '',
    ])
    const agent = new VigilProcess(['agent', '--config', file], { cwd: base, wrap: lab.host(node).exec([]) })
    cleanups.push(() => agent.stop())
    agents.set(node, agent)
  }
  return { lab, bmc, etcd, hubs, agents, witnessFile, cluster, powerCtl: hostCtl, clusterFiles }
}

function witness(g: GroupLab): { node: string; at: bigint }[] {
  if (!existsSync(g.witnessFile)) return []
  return readFileSync(g.witnessFile, 'utf8')
    .split('\n')
    .filter((l) => /^node-[ab] \d+$/.test(l))
    .map((l) => {
      const [node, at] = l.split(' ')
      return { node: node as string, at: BigInt(at as string) }
    })
}

async function groupOf(hub: HubProcess): Promise<GroupView | null> {
  try {
    return (await hub.api<GroupView>('/api/group')).body
  } catch {
    return null // killed or paused
  }
}

/** The hub that leads now (asked of each live hub), with its epoch. */
async function leaderOf(g: GroupLab, among = [...g.hubs.keys()]): Promise<{ name: string; epoch: number }> {
  return eventually(
    'one hub leads',
    async () => {
      for (const name of among) {
        const view = await groupOf(g.hubs.get(name) as HubProcess)
        if (view?.role === 'leader' && view.epoch !== null) return { name, epoch: view.epoch }
      }
      return undefined
    },
    { timeoutMs: 20_000 },
  )
}

async function webRunsOnB(g: GroupLab): Promise<void> {
  await eventually('web running on node-b', () => witness(g).some((w) => w.node === 'node-b'), {
    timeoutMs: 40_000,
  }).catch(async (err: Error) => {
    // What the hubs and agents did instead, for whoever reads a CI failure.
    const report: string[] = [err.message]
    for (const [name, hub] of g.hubs) {
      report.push(`${name}: ${JSON.stringify(await groupOf(hub))}`)
      const ds = await hub
        .api<{ decisions: { rule: string; node?: string; resource?: string }[] }>('/api/decisions?limit=20')
        .then((r) => r.body.decisions.map((d) => `${d.rule} ${d.node ?? ''} ${d.resource ?? ''}`))
        .catch(() => [])
      report.push(...ds.map((d) => `  ${d}`))
    }
    for (const [name, agent] of g.agents) {
      let alive = true
      try {
        process.kill(agent.pid, 0)
      } catch {
        alive = false
      }
      report.push(
        `${name} (pid ${agent.pid}, ${alive ? 'alive' : 'gone'}): ${agent.lines
          .slice(-8)
          .map((l) => `${l.msg ?? ''} ${JSON.stringify(l.err ?? l.reason ?? '')}`)
          .join(' | ')}`,
        `  stderr: ${agent.stderr.join('').slice(-400)}`,
      )
    }
    report.push(`bmc power log: ${JSON.stringify(g.bmc.powerLog())}`)
    throw new Error(report.join('\n'))
  })
}

/** node-b crashes: every process of its namespace (agent and web) dies at once. */
function crashNodeB(g: GroupLab): bigint {
  const at = BigInt(Date.now()) * 1_000_000n
  g.lab.host('node-b').killAll()
  return at
}

/**
 * After the failover: web ran on node-b, then on node-a, never both; node-b was powered off once
 * by the BMC; the fencing hub recorded the fence as an intent in etcd under its epoch (the acting
 * hub's, unless it resumed one in flight), and the acting hub the start.
 */
async function expectFailedOverOnce(
  g: GroupLab,
  actingEpoch: number,
  fenceEpoch = actingEpoch,
): Promise<void> {
  await eventually('web running on node-a', () => witness(g).some((w) => w.node === 'node-a'), {
    timeoutMs: 40_000,
  })
  await new Promise((r) => setTimeout(r, 1500)) // anything that would repeat has had its chance
  const lines = witness(g)
  const lastB = lines.filter((w) => w.node === 'node-b').at(-1)?.at ?? 0n
  const firstA = lines.find((w) => w.node === 'node-a')?.at ?? 0n
  expect(firstA).toBeGreaterThan(lastB)
  expect(g.bmc.powerLog().filter((l) => l.includes('off'))).toHaveLength(1)
  const etcd = new Etcd3({ hosts: g.etcd.endpoints })
  try {
    const intents = Object.values(await etcd.getAll().prefix(`/vigil/${g.cluster}/intents/`).strings()).map(
      (v) => JSON.parse(v) as { type: string; node: string; epoch: number; resource?: string },
    )
    const fences = intents.filter((i) => i.type === 'fence' && i.node === 'node-b')
    expect(fences.map((f) => f.epoch)).toEqual([fenceEpoch])
    expect(intents.some((i) => i.type === 'start' && i.node === 'node-a' && i.epoch === actingEpoch)).toBe(
      true,
    )
  } finally {
    etcd.close()
  }
}

test.each([
  { gapMs: 500, when: 'then a host crashes 0.5 s later' },
  { gapMs: 0, when: 'and a host crashes at the same moment' },
])(
  'the leader hub is killed, $when: the other hub takes over and fails over once',
  async ({ gapMs }) => {
    const g = await startGroupLab()
    const first = await leaderOf(g)
    await webRunsOnB(g)
    const standby = [...g.hubs.keys()].find((h) => h !== first.name) as string
    const standbyView = await groupOf(g.hubs.get(standby) as HubProcess)
    expect(standbyView).toMatchObject({ enabled: true, role: 'standby', leader: { hub: first.name } })

    // The leader's copy of the cluster file changes and is reloaded (asked of the standby, which
    // sends changes to the leader): the leader records it in etcd, and the standby, whose own copy
    // never changed, runs it once it takes over.
    const leaderFile = g.clusterFiles.get(first.name) as string
    writeFileSync(leaderFile, `policyVersion: reloaded\n${readFileSync(leaderFile, 'utf8')}`)
    const reload = await runVigil(['cluster', 'reload', '--hub', (g.hubs.get(standby) as HubProcess).httpUrl])
    expect(reload.code, reload.stderr).toBe(0)

    g.hubs.get(first.name)?.process.kill('SIGKILL')
    if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs))
    crashNodeB(g)

    const next = await leaderOf(g, [standby])
    expect(next.epoch).toBeGreaterThan(first.epoch)
    await expectFailedOverOnce(g, next.epoch)
    const hub = g.hubs.get(standby) as HubProcess
    // The new leader's account: it took over warm (no startup grace), judged node-b on the silence it
    // had witnessed as a standby, and placed web on node-a only after the fence was confirmed.
    const rules = (
      await hub.api<{ decisions: { rule: string; node?: string; resource?: string }[] }>(
        '/api/decisions?limit=200',
      )
    ).body.decisions
      .reverse()
      .map((d) => `${d.rule} ${d.node ?? ''}`)
    expect(rules).not.toContain('hub.restarted ')
    const at = (rule: string) => rules.indexOf(rule)
    expect(at('hub.takeover ')).toBeGreaterThanOrEqual(0)
    expect(at('hub.takeover ')).toBeLessThan(at('classify.dead node-b'))
    expect(at('fence.dead node-b')).toBeLessThan(at('fence.confirmed node-b'))
    expect(at('fence.confirmed node-b')).toBeLessThan(rules.lastIndexOf('placement.best-score node-a'))
    const events = (await hub.api<{ events: { kind: string; message: string }[] }>('/api/events?limit=200'))
      .body.events
    expect(events.some((e) => e.kind === 'hub.takeover')).toBe(true)
    // It ran the group's cluster file, not its own copy, and said so.
    expect(events.find((e) => e.kind === 'hub.cluster-file')?.message).toContain(
      `runs the group's cluster file (committed by ${first.name}`,
    )
    const placed = (
      await hub.api<{ decisions: { rule: string; node?: string; policyVersion: string }[] }>(
        '/api/decisions?limit=200',
      )
    ).body.decisions.find((d) => d.rule === 'placement.best-score' && d.node === 'node-a')
    expect(placed?.policyVersion).toBe('reloaded')
    expect(await hub.metric('vigil_hub_leader')).toBe(1)
    expect(await hub.metric('vigil_hub_takeovers_total')).toBe(1)
    expect(await hub.metric('vigil_hub_epoch')).toBe(next.epoch)
  },
  150_000,
)

// A host hangs (every process of it stopped, its power on), the leader fences it through a slow
// BMC, and dies while the off is under way. The fence is in the state the leader committed with its
// intent: the new leader reads node-b's power before anything else (the BMC answers once its off is
// done), finds it off, and starts web on node-a, with no second off and no fence of its own.
test('the leader dies with a fence in flight: the new leader reads the power back off and fences nothing twice', async () => {
  const slowOffMs = 2000
  const g = await startGroupLab({ slowOffMs })
  const first = await leaderOf(g)
  await webRunsOnB(g)
  const standby = [...g.hubs.keys()].find((h) => h !== first.name) as string

  g.lab.host('node-b').signalAll('SIGSTOP')
  const offRequested = `${g.powerCtl}.off-requested`
  await eventually("the leader sent the off to node-b's BMC", () => existsSync(offRequested), {
    timeoutMs: 30_000,
    intervalMs: 10,
  })
  g.hubs.get(first.name)?.process.kill('SIGKILL')
  const killedAt = Date.now()

  const next = await leaderOf(g, [standby])
  expect(next.epoch).toBeGreaterThan(first.epoch)
  await expectFailedOverOnce(g, next.epoch, first.epoch)
  const hub = g.hubs.get(standby) as HubProcess
  const rules = (
    await hub.api<{ decisions: { rule: string; node?: string; at: number }[] }>('/api/decisions?limit=200')
  ).body.decisions
    .filter((d) => d.at >= killedAt)
    .reverse()
    .map((d) => `${d.rule} ${d.node ?? ''}`)
  const at = (rule: string) => rules.indexOf(rule)
  expect(at('hub.takeover ')).toBeGreaterThanOrEqual(0)
  // Its only fence decision is the resumed fence's result: no fence of its own.
  expect(rules.filter((r) => r.startsWith('fence.'))).toEqual(['fence.confirmed node-b'])
  expect(at('fence.confirmed node-b')).toBeGreaterThan(at('hub.takeover '))
  expect(at('fence.confirmed node-b')).toBeLessThan(rules.lastIndexOf('placement.best-score node-a'))
  expect(
    hub.process.lines.some(
      (l) =>
        l.msg === 'resuming a fence the previous leader had in flight (power read first)' &&
        l.node === 'node-b',
    ),
  ).toBe(true)
}, 150_000)

test('a leader paused past its lease sends nothing any agent runs; the new leader fences once', async () => {
  const g = await startGroupLab()
  const first = await leaderOf(g)
  await webRunsOnB(g)
  const old = g.hubs.get(first.name) as HubProcess
  const standby = [...g.hubs.keys()].find((h) => h !== first.name) as string

  old.process.kill('SIGSTOP')
  const next = await leaderOf(g, [standby])
  expect(next.epoch).toBeGreaterThan(first.epoch)
  // The new leader announces its epoch to every agent it hears (a signed ping under it): from then
  // on they refuse whatever the frozen leader may still deliver.
  const agentA = g.agents.get('node-a') as VigilProcess
  await eventually('node-a ran a command of the new epoch', () =>
    agentA.lines.some((l) => l.msg === 'command accepted' && l.epoch === next.epoch),
  )
  crashNodeB(g)
  await expectFailedOverOnce(g, next.epoch)

  // The old leader wakes up believing, for a moment, what it believed when it froze.
  const wokeAt = Date.now()
  old.process.kill('SIGCONT')
  await eventually('the old leader knows it no longer leads', async () => {
    const view = await groupOf(old)
    return view !== null && view.role !== 'leader'
  })
  await new Promise((r) => setTimeout(r, 2000))
  expect(g.bmc.powerLog().filter((l) => l.includes('off'))).toHaveLength(1)
  // No agent ran a command of the old epoch after the pause ended.
  const accepted = agentA.lines.filter(
    (l) => l.msg === 'command accepted' && l.epoch === first.epoch && Date.parse(String(l.time)) >= wokeAt,
  )
  expect(accepted).toEqual([])
  // The operator's view from either hub: who leads, and what this hub is.
  const shown = await runVigil(['status', '--hub', old.httpUrl])
  expect(shown.code, shown.stderr).toBe(0)
  expect(shown.stdout).toContain(`Hub group: leader ${standby} (epoch ${next.epoch}`)
  expect(shown.stdout).toContain(`this hub ${first.name}: STANDBY`)
  // A change asked of the old leader goes to the new one: the CLI follows, the leader records it.
  const maintenance = await runVigil([
    'maintenance',
    'on',
    '--node',
    'node-a',
    '--for',
    '1m',
    '--hub',
    old.httpUrl,
  ])
  expect(maintenance.code, maintenance.stderr).toBe(0)
  const newLeader = g.hubs.get(standby) as HubProcess
  await eventually('the leader recorded the operator request', async () =>
    (await newLeader.api<{ decisions: { rule: string }[] }>('/api/decisions?limit=50')).body.decisions.some(
      (d) => d.rule === 'operator.maintenance',
    ),
  )
  const res = await fetch(new URL('/api/maintenance', old.httpUrl), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ on: false, by: 'test' }),
    redirect: 'manual',
  })
  expect(res.status).toBe(307)
  expect(res.headers.get('location')).toContain((g.hubs.get(standby) as HubProcess).httpUrl)
}, 150_000)

/** Drops every packet from `hub`'s host to etcd's client ports (a cut), or lets them through again. */
function cutFromEtcd(g: GroupLab, hub: string, cut: boolean): void {
  const ports = g.etcd.endpoints.map((e) => new URL(e).port).join(',')
  const argv = g.lab
    .host(hub)
    .exec([
      'iptables',
      cut ? '-I' : '-D',
      'OUTPUT',
      '-p',
      'tcp',
      '-d',
      g.lab.hubIp,
      '-m',
      'multiport',
      '--dports',
      ports,
      '-j',
      'DROP',
    ])
  execFileSync(argv[0] as string, argv.slice(1), { stdio: 'pipe' })
}

test('a leader cut from etcd but not from the agents stops acting within its lease; the other fences once', async () => {
  const g = await startGroupLab()
  const first = await leaderOf(g)
  await webRunsOnB(g)
  const standby = [...g.hubs.keys()].find((h) => h !== first.name) as string
  const old = g.hubs.get(first.name) as HubProcess

  const cutAt = Date.now()
  cutFromEtcd(g, first.name, true)
  // Within its lease (2 s) the cut leader says it no longer leads, though it still hears everyone.
  await eventually('the cut leader stops leading', async () => (await groupOf(old))?.role !== 'leader', {
    timeoutMs: 5000,
  })
  const stoppedAt = Date.now()
  expect(stoppedAt - cutAt).toBeLessThan(4000)
  const next = await leaderOf(g, [standby])
  expect(next.epoch).toBeGreaterThan(first.epoch)
  expect(await old.metric('vigil_hub_leader')).toBe(0)

  crashNodeB(g)
  await expectFailedOverOnce(g, next.epoch)
  // The witness of every command an agent ran: none of the cut leader's epoch after it was cut
  // (its lease, 2 s, bounds what it may have sent just before), and no two epochs interleaved.
  const agentA = g.agents.get('node-a') as VigilProcess
  const accepted = agentA.lines
    .filter((l) => l.msg === 'command accepted')
    .map((l) => ({ epoch: Number(l.epoch), at: Date.parse(String(l.time)) }))
  expect(accepted.filter((c) => c.epoch === first.epoch && c.at > cutAt + 2000)).toEqual([])
  const epochs = accepted.map((c) => c.epoch)
  expect(epochs).toEqual([...epochs].sort((x, y) => x - y))
  expect(epochs).toContain(next.epoch)

  // Back in touch with etcd it stays a standby: no second leader, no second fence.
  cutFromEtcd(g, first.name, false)
  await eventually('the old leader sees the new one', async () => {
    const view = await groupOf(old)
    return view?.role === 'standby' && view.leader?.hub === standby
  })
  expect(g.bmc.powerLog().filter((l) => l.includes('off'))).toHaveLength(1)
}, 150_000)

test('etcd losing its quorum freezes the group: nothing is fenced or moved, and nothing after it comes back', async () => {
  const g = await startGroupLab()
  await leaderOf(g)
  await webRunsOnB(g)
  const lost = g.etcd.members.slice(1)
  for (const m of lost) m.kill()
  await eventually(
    'no hub leads',
    async () => {
      const views = await Promise.all([...g.hubs.values()].map(groupOf))
      return views.every((v) => v !== null && v.role !== 'leader')
    },
    { timeoutMs: 6000 },
  )
  // Frozen for a while, then etcd comes back: the group elects a leader, which resumes.
  await new Promise((r) => setTimeout(r, 3000))
  for (const m of lost) await m.restart()
  const after = await leaderOf(g).catch(async (err: Error) => {
    const views = await Promise.all([...g.hubs.values()].map(groupOf))
    throw new Error(
      `${err.message}\netcd healthy: ${await g.etcd.healthy()}\nhubs: ${JSON.stringify(views)}\n${g.etcd.members.map((m) => m.daemon.log().slice(-1500)).join('\n')}`,
    )
  })
  await new Promise((r) => setTimeout(r, 4000)) // a false verdict would have been acted on by now
  expect(g.bmc.powerLog()).toEqual([])
  const lines = witness(g)
  expect(lines.some((w) => w.node === 'node-a')).toBe(false)
  // web ran on node-b throughout (its witness kept writing, every 50 ms).
  const lastB = lines.filter((w) => w.node === 'node-b').at(-1)?.at ?? 0n
  expect(BigInt(Date.now()) * 1_000_000n - lastB).toBeLessThan(1_000_000_000n)
  const hub = g.hubs.get(after.name) as HubProcess
  const rules = (
    await hub.api<{ decisions: { rule: string }[] }>('/api/decisions?limit=200')
  ).body.decisions.map((d) => d.rule)
  expect(rules.filter((r) => r.startsWith('fence.'))).toEqual([])
}, 150_000)
