import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Libvirt, startLibvirt, startPeerLibvirt, startPrometheus } from '@vigil/testbed'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { dashboardProblems, dashboardQueries, needsGuest } from '../harness/dashboards.js'
import { eventually } from '../harness/eventually.js'
import { decisionsOf } from '../harness/failover.js'
import { type HubProcess, hubKeyArgs, startHub } from '../harness/hub.js'
import { runVigil, tempDir, VigilProcess, writeLines } from '../harness/processes.js'

// A real QEMU guest (TCG) managed through the libvirt driver by the agents of two hosts, each with
// its own libvirtd (the second in its own mount namespace, as another host): the engine places it,
// an operator's `vigil migrate` and the evacuation of its node each live-migrate it, the agent
// carrying out the hub's signed command.
const dir = tempDir('vm-live')
const MIGRATE_MIBS = process.env.VIGIL_TEST_MIGRATE_MIBS
/** How long a live migration may take here: the guest's data over the bandwidth set, three times over. */
const MIGRATION_WAIT_MS = MIGRATE_MIBS ? 60_000 + (3 * 40 * 1000) / Number(MIGRATE_MIBS) : 60_000
const cleanups: (() => Promise<void> | void)[] = []
/** Two hosts and vm1, which may move live, preferring node-a. */
const MIGRATABLE_VM_CLUSTER = [
  'nodes:',
  '  - id: node-a',
  '  - id: node-b',
  'resources:',
  '  - id: vm1',
  '    kind: vm',
  '    liveMigrate: true',
  '    preferred: { node-a: 10 }',
  '',
]
let hostA: Libvirt
let hostB: Libvirt
let hub: HubProcess
let domain: string

beforeAll(async () => {
  hostA = await startLibvirt()
  cleanups.push(() => hostA.stop())
  hostB = await startPeerLibvirt()
  cleanups.push(() => hostB.stop())
  // Defined on both hosts, as an HA guest is (VCS KVMGuest's rule): either can start it.
  // Slowed on purpose: a booted guest holding 40 MiB of random data, which the migration must copy
  // at the bandwidth set (an idle guest's zero pages cost nothing, whatever the limit).
  domain = await hostA.defineGuest(MIGRATE_MIBS ? { os: true, fillMiB: 40 } : {})
  const xml = join(dir.path, `${domain}.xml`)
  writeFileSync(xml, await hostA.virsh(['dumpxml', domain]))
  await hostB.virsh(['define', xml])
}, 300_000)

afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  dir.remove()
})

function startVmAgent(
  hub: HubProcess,
  node: string,
  domain: string,
  libvirt: { uri: string; peerUri: string },
  extra: string[] = [],
): VigilProcess {
  const file = join(dir.path, `${node}-${domain}.yaml`)
  writeFileSync(
    file,
    [
      `node: ${node}`,
      'resources:',
      '  - id: vm1',
      '    driver: libvirt',
      '    config:',
      `      domain: ${domain}`,
      `      uri: ${libvirt.uri}`,
      '      shutdownTimeoutMs: 0',
      // Both hosts are this machine: the other node's libvirt is reached by its port, not its name.
      `      migrateUri: ${libvirt.peerUri}`,
      '      migrateAddress: tcp://127.0.0.1',
      // A migration slowed on purpose (2 MiB/s: about 20 s for the 40 MiB the guest then holds) proves
      // the hub waits for a long one: VIGIL_TEST_MIGRATE_MIBS=2 pnpm --filter @vigil/tests exec vitest run e2e/vm-live
      ...(MIGRATE_MIBS ? [`      migrateBandwidthMiBs: ${MIGRATE_MIBS}`] : []),
      ...extra,
      '',
    ].join('\n'),
  )
  return new VigilProcess(['agent', '--config', file, '--mqtt-url', hub.mqttUrl, ...hubKeyArgs(hub)], {
    cwd: dir.path,
  })
}

test('a vm placed by the engine, live-migrated by an operator (vigil migrate), then evacuated live', async () => {
  const clusterFile = writeLines(dir.path, 'cluster.yaml', MIGRATABLE_VM_CLUSTER)
  hub = await startHub(dir.path, ['--cluster-file', clusterFile])
  cleanups.push(() => hub.process.stop())
  const a = startVmAgent(hub, 'node-a', domain, { uri: hostA.uri, peerUri: hostB.uri })
  cleanups.push(() => a.stop())
  const b = startVmAgent(hub, 'node-b', domain, { uri: hostB.uri, peerUri: hostA.uri })
  cleanups.push(() => b.stop())

  // Placed on its preferred node and started there by that node's agent: a QEMU process.
  await eventually('vm1 running on node-a', async () => (await hostA.domstate(domain)) === 'running', {
    timeoutMs: 60_000,
  }).catch(async (err: Error) => {
    const why = (await decisionsOf(hub)).map((d) => `${d.rule} ${d.node ?? ''} ${d.resource ?? ''}`)
    const logs = [...a.lines, ...b.lines].map((l) => JSON.stringify(l)).slice(-20)
    throw new Error(
      `${err.message}\ndecisions:\n${why.join('\n')}\nagents' last lines:\n${logs.join('\n')}\n${a.stderr.join('')}${b.stderr.join('')}`.slice(
        -6000,
      ),
    )
  })
  expect(await hostB.domstate(domain)).toBe('shut off')
  await eventually('the hub sees vm1 running on node-a', async () =>
    (
      await hub.api<{ observations: { target: string; state: string; metrics?: Record<string, number> }[] }>(
        '/api/nodes/node-a',
      )
    ).body.observations.some(
      (o) => o.target === 'vm1' && o.state === 'running' && (o.metrics?.vcpus ?? 0) >= 1,
    ),
  )
  // And what runs it, from its definition: the testbed's guests run under TCG (`<domain type='qemu'>`).
  await eventually('vigil status shows vm1 on node-a under qemu', async () => {
    const status = await runVigil(['status', '--brief', '--hub', hub.httpUrl])
    return /vm1\s+RUNNING\s+node-a\s+qemu\s/.test(status.stdout) ? status : undefined
  })

  // An operator moves it: live, through the CLI, by node-a's agent (the hub's signed command).
  const migrate = await runVigil(['migrate', 'vm1', 'node-b', '--for', '1h', '--hub', hub.httpUrl])
  expect(migrate.code, migrate.stderr).toBe(0)
  // Moved without a stop: running on node-b's libvirt, gone from node-a's, one copy throughout.
  await eventually('vm1 running on node-b', async () => (await hostB.domstate(domain)) === 'running', {
    timeoutMs: MIGRATION_WAIT_MS,
  }).catch(async (err: Error) => {
    const why = (await decisionsOf(hub)).map((d) => `${d.rule} ${d.node ?? ''} ${d.resource ?? ''}`)
    const logs = [...a.lines, ...b.lines].map((l) => JSON.stringify(l)).slice(-12)
    throw new Error(`${err.message}\ndecisions:\n${why.slice(-10).join('\n')}\nagents:\n${logs.join('\n')}`)
  })
  expect(await hostA.domstate(domain)).toBe('shut off')
  const migrated = async (times: number) =>
    eventually(`${times} migrations recorded as done`, async () => {
      const rules = (await decisionsOf(hub)).map((d) => d.rule)
      return rules.filter((r) => r === 'action.migrate').length >= times ? rules : undefined
    })
  expect(await migrated(1)).toContain('operator.move-live')
  await eventually('the hub sees vm1 running on node-b', async () =>
    (
      await hub.api<{ observations: { target: string; state: string }[] }>('/api/nodes/node-b')
    ).body.observations.some((o) => o.target === 'vm1' && o.state === 'running'),
  )

  // Evacuating node-b moves it live again, back to node-a (the operator's placement cannot hold it
  // on a node being emptied).
  const evacuate = await hub.api<{ accepted?: boolean }>('/api/nodes/node-b/evacuate', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ by: 'e2e' }),
  })
  expect(evacuate.status).toBe(202)
  await eventually('vm1 running on node-a', async () => (await hostA.domstate(domain)) === 'running', {
    timeoutMs: 60_000,
  })
  expect(await hostB.domstate(domain)).toBe('shut off')
  const rules = await migrated(2)
  expect(rules).toContain('evacuate.live-migrate')
  expect(rules).not.toContain('action.migrate-failed')
  expect((await decisionsOf(hub)).filter((d) => d.kind === 'place')).toHaveLength(1) // never placed anew
  await eventually('node-b evacuated: in maintenance', async () =>
    (await decisionsOf(hub)).some((d) => d.rule === 'operator.evacuated'),
  )
  await eventually('the hub sees vm1 running on node-a', async () =>
    (
      await hub.api<{ observations: { target: string; state: string }[] }>('/api/nodes/node-a')
    ).body.observations.some((o) => o.target === 'vm1' && o.state === 'running'),
  )
}, 240_000)

// ExpressCluster's VM heartbeat case on the real chain: the guest's kernel panics and hangs, libvirt
// still says "running", only the guest's own heartbeat (its console lines) stops; the engine calls
// it hung and the agent resets the vm, which boots and beats again.
test('a hung guest (running to libvirt, silent inside) is reset by the engine through its agent; a crashed one is started again', async () => {
  const hangDir = join(dir.path, 'hang')
  mkdirSync(hangDir)
  const guest = await hostA.defineGuest({ os: true })
  const consoleFile = hostA.consoleLog(guest)
  const clusterFile = writeLines(hangDir, 'cluster.yaml', [
    'nodes:',
    '  - id: node-a',
    'resources:',
    '  - id: vm1',
    '    kind: vm',
    '',
  ])
  const hangHub = await startHub(hangDir, ['--cluster-file', clusterFile])
  cleanups.push(() => hangHub.process.stop())
  // A Prometheus scraping this hub proves the dashboards' in-guest heartbeat panels (the
  // observability test has no vm to feed them).
  const promDir = join(hangDir, 'prometheus')
  mkdirSync(promDir)
  const prometheus = await startPrometheus({
    dir: promDir,
    job: 'vigil-hub',
    targets: [new URL(hangHub.httpUrl).host],
    labels: { cluster: 'lab' },
    scrapeMs: 500,
  })
  cleanups.push(() => prometheus.stop())
  const windowStart = Date.now() / 1000
  const agent = startVmAgent(hangHub, 'node-a', guest, { uri: hostA.uri, peerUri: hostB.uri }, [
    '      guestHeartbeat:',
    `        file: ${consoleFile}`,
    '        pattern: vigil guest heartbeat',
  ])
  cleanups.push(() => agent.stop())
  const beats = () =>
    existsSync(consoleFile)
      ? (readFileSync(consoleFile, 'utf8').match(/vigil guest heartbeat/g)?.length ?? 0)
      : 0

  // Started by the engine, booted, and its heartbeat followed by the hub (the guest detector armed).
  await eventually(
    'the guest beating and the hub following it',
    async () =>
      beats() >= 3 && (await hangHub.metric('vigil_guest_heartbeat_phi', { resource: 'vm1' })) !== undefined,
    { timeoutMs: 90_000 },
  )
  await hostA.virsh(['inject-nmi', guest])
  const hungBeats = beats()
  const decisions = async () =>
    (
      await hangHub.api<{ decisions: { rule: string; summary: string }[] }>(
        '/api/decisions?resource=vm1&limit=200',
      )
    ).body.decisions
  const stalled = await eventually(
    'the engine calls the guest hung and resets it',
    async () => (await decisions()).find((d) => /^guest heartbeat stalled/.test(d.summary)),
    { timeoutMs: 30_000 },
  )
  expect(stalled.summary).toContain('guest hung')
  expect(await hostA.domstate(guest)).toBe('running') // never stopped: reset in place
  await eventually('the reset guest boots and beats again', () => beats() > hungBeats + 2, {
    timeoutMs: 90_000,
  })
  await eventually('the reset recorded as done', async () =>
    (await decisions()).some((d) => /reset-vm on node-a succeeded/.test(d.summary)),
  )
  // One hang, one decision (the phase change it caused says so too): nothing acted on it twice.
  expect((await decisions()).filter((d) => /^guest heartbeat stalled/.test(d.summary))).toHaveLength(1)

  // Every dashboard query only a vm feeds (its guest heartbeat, its hypervisor) has data for this
  // hang and reset.
  const guestQueries = (await dashboardQueries()).filter(needsGuest)
  expect(guestQueries.length).toBeGreaterThan(0)
  await eventually(
    'Prometheus scraped the guest heartbeat',
    async () => (await prometheus.query('vigil_guest_heartbeat_phi')).length > 0,
  )
  const window = {
    start: windowStart,
    end: Date.now() / 1000,
    cluster: 'lab',
    nodes: ['node-a'],
    resource: 'vm1',
  }
  expect(await dashboardProblems(prometheus, guestQueries, window)).toEqual([])

  // Then the vm crashes (its QEMU killed): the lifecycle event, and the engine starts it again here.
  const qemuPid = Number(readFileSync(hostA.qemuPidFile(guest), 'utf8'))
  process.kill(qemuPid, 'SIGKILL')
  await eventually(
    'the crashed vm started again',
    async () => {
      if ((await hostA.domstate(guest)) !== 'running') return false
      return Number(readFileSync(hostA.qemuPidFile(guest), 'utf8')) !== qemuPid
    },
    { timeoutMs: 60_000 },
  )
  await eventually('the crash and the restart recorded', async () => {
    const list = await decisions()
    return list.some((d) => /failed on node-a/.test(d.summary) || /crash/.test(d.summary))
  })

  // Intended states (VCS's admin suspend): an operator suspends the vm through Vigil. Its guest
  // falls silent far past the hang threshold (phi 8), yet it is neither reset nor restarted; resumed,
  // it beats on in the same QEMU, its guest detector starting from a new baseline.
  const phase = async () =>
    (await hangHub.api<{ resources: { id: string; phase: string }[] }>('/api/resources')).body.resources.find(
      (r) => r.id === 'vm1',
    )?.phase
  await eventually('vm1 running and beating again', async () => (await phase()) === 'running' && beats() > 0)
  const qemuBefore = readFileSync(hostA.qemuPidFile(guest), 'utf8')
  const stallsBefore = (await decisions()).filter((d) => /^guest heartbeat stalled/.test(d.summary)).length
  const suspend = await runVigil(['resource', 'suspend', 'vm1', '--hub', hangHub.httpUrl])
  expect(suspend.code, suspend.stderr).toBe(0)
  await eventually('vm1 suspended', async () => (await phase()) === 'suspended')
  expect(await hostA.virsh(['domstate', '--reason', guest])).toMatch(/^paused \(user\)/)
  await eventually(
    'its silent guest far past the hang threshold',
    async () => ((await hangHub.metric('vigil_guest_heartbeat_phi', { resource: 'vm1' })) ?? 0) >= 16,
    { timeoutMs: 60_000 },
  )
  expect(await phase()).toBe('suspended')
  const resumeRefused = await runVigil(['resource', 'suspend', 'vm1', '--hub', hangHub.httpUrl])
  expect(resumeRefused.code).toBe(1) // only a running vm can be suspended
  expect(resumeRefused.stderr).toContain('only a running vm can be suspended')
  const resume = await runVigil(['resource', 'resume', 'vm1', '--hub', hangHub.httpUrl])
  expect(resume.code, resume.stderr).toBe(0)
  const beatsAtResume = beats()
  await eventually(
    'vm1 resumed and beating',
    async () => (await phase()) === 'running' && beats() > beatsAtResume + 2,
  )
  // Suspended outside Vigil (virsh, as an operator might): left so, the same rule.
  await hostA.virsh(['suspend', guest])
  await eventually('a suspend from outside seen as intended', async () => (await phase()) === 'suspended')
  await hostA.virsh(['resume', guest])
  await eventually('running again', async () => (await phase()) === 'running')
  expect(readFileSync(hostA.qemuPidFile(guest), 'utf8')).toBe(qemuBefore) // never restarted
  const list = await decisions()
  expect(list.filter((d) => /^guest heartbeat stalled/.test(d.summary))).toHaveLength(stallsBefore)
  expect(list.map((d) => d.rule)).toEqual(
    expect.arrayContaining([
      'operator.suspend',
      'operator.suspended',
      'operator.resume',
      'observed.suspended',
    ]),
  )

  // A stuck monitor is not a hung guest: libvirtd hangs for 9 s (every virsh call of the agent's
  // monitor waits) while the guest beats on. The agent's last answer ages; the hub says the monitor
  // is stale, never that the guest hung, and carries on when libvirtd answers again.
  const beatsBeforeHang = beats()
  cleanups.push(() => hostA.hang(false))
  hostA.hang(true)
  try {
    await eventually(
      'the hub says the monitor is stale',
      async () => (await decisions()).some((d) => d.rule === 'monitor.stale'),
      { timeoutMs: 15_000 },
    )
    await new Promise((r) => setTimeout(r, 9000 - 5000)) // well past a hang verdict (about 2.5 s)
    expect(beats()).toBeGreaterThan(beatsBeforeHang + 5) // the guest beat all along
  } finally {
    hostA.hang(false)
  }
  await eventually('the monitor answers again', async () =>
    (await decisions()).some((d) => d.rule === 'monitor.answering'),
  )
  await new Promise((r) => setTimeout(r, 2000)) // a stale count taken for silence would show by now
  const after = await decisions()
  expect(after.filter((d) => /^guest heartbeat stalled/.test(d.summary))).toHaveLength(stallsBefore)
  expect(await phase()).toBe('running')
  expect(readFileSync(hostA.qemuPidFile(guest), 'utf8')).toBe(qemuBefore)
  const stale = after.find((d) => d.rule === 'monitor.stale')
  expect(stale?.summary).toMatch(/^its monitor on node-a has not answered for \d+\.\d s/)
}, 360_000)

// Live migration and the guest heartbeat (issue #23): a beating guest moved by an operator with a
// migration that pauses it for the copy (migrateMode: paused, capped at 8 MiB/s for the 40 MiB of
// random data it holds: several seconds of silence, past its hang threshold). node-b's first count
// of its heartbeat is only a baseline; its guest is judged from the switchover on. No reset: the
// same QEMU runs on node-b, and the guest beats on.
test('a beating guest migrated with a paused switchover is not taken for a hung one', async () => {
  const moveDir = join(dir.path, 'paused-move')
  mkdirSync(moveDir)
  const guest = await hostA.defineGuest({ os: true, fillMiB: 40 })
  const xml = join(moveDir, `${guest}.xml`)
  writeFileSync(xml, await hostA.virsh(['dumpxml', guest]))
  await hostB.virsh(['define', xml])
  const consoleFile = hostA.consoleLog(guest) // the same file wherever it runs (its definition names it)
  const clusterFile = writeLines(moveDir, 'cluster.yaml', MIGRATABLE_VM_CLUSTER)
  const moveHub = await startHub(moveDir, ['--cluster-file', clusterFile])
  cleanups.push(() => moveHub.process.stop())
  const heartbeat = [
    '      guestHeartbeat:',
    `        file: ${consoleFile}`,
    '        pattern: vigil guest heartbeat',
  ]
  const a = startVmAgent(moveHub, 'node-a', guest, { uri: hostA.uri, peerUri: hostB.uri }, [
    ...heartbeat,
    '      migrateMode: paused',
    '      migrateBandwidthMiBs: 8',
  ])
  cleanups.push(() => a.stop())
  const b = startVmAgent(moveHub, 'node-b', guest, { uri: hostB.uri, peerUri: hostA.uri }, heartbeat)
  cleanups.push(() => b.stop())
  const beats = () =>
    existsSync(consoleFile)
      ? (readFileSync(consoleFile, 'utf8').match(/vigil guest heartbeat/g)?.length ?? 0)
      : 0
  const decisions = async () =>
    (
      await moveHub.api<{ decisions: { rule: string; summary: string }[] }>(
        '/api/decisions?resource=vm1&limit=200',
      )
    ).body.decisions
  await eventually(
    'the guest beating on node-a and the hub following it',
    async () =>
      beats() >= 5 && (await moveHub.metric('vigil_guest_heartbeat_phi', { resource: 'vm1' })) !== undefined,
    { timeoutMs: 90_000 },
  )
  expect(await hostA.domstate(guest)).toBe('running')

  const migrate = await runVigil(['migrate', 'vm1', 'node-b', '--for', '1h', '--hub', moveHub.httpUrl])
  expect(migrate.code, migrate.stderr).toBe(0)
  const startedAt = Date.now()
  await eventually('vm1 running on node-b', async () => (await hostB.domstate(guest)) === 'running', {
    timeoutMs: 90_000,
  })
  const switchedAt = Date.now()
  expect(await hostA.domstate(guest)).toBe('shut off')
  await eventually('the migration recorded as done', async () =>
    (await decisions()).some((d) => d.rule === 'action.migrate'),
  )
  const qemu = readFileSync(hostB.qemuPidFile(guest), 'utf8')
  // Well past a hang verdict from the last beat before the pause, and long enough for node-b's
  // count to move past its baseline.
  const beatsAfter = beats()
  await new Promise((r) => setTimeout(r, 6000))
  expect(beats()).toBeGreaterThan(beatsAfter + 2) // it beats on, on node-b
  const list = await decisions()
  expect(
    list.filter((d) => /^guest heartbeat stalled/.test(d.summary)),
    JSON.stringify(list.slice(0, 12)),
  ).toEqual([])
  expect(list.some((d) => /reset-vm/.test(d.summary))).toBe(false)
  expect(readFileSync(hostB.qemuPidFile(guest), 'utf8')).toBe(qemu) // the same QEMU: never reset or restarted
  expect(await hostB.domstate(guest)).toBe('running')
  // The switchover was long enough to matter: seconds, where a beat comes every second.
  expect(switchedAt - startedAt).toBeGreaterThan(2000)
}, 240_000)
