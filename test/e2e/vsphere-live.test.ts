import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  type Bmc,
  startBmc,
  startVcsim,
  type Vcsim,
  vcsimHostPowerControl,
  vsphereResourceLines,
} from '@vigil/testbed'
import { readVm, textOf, Vim25Client } from '@vigil/vsphere'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { type Decision, decisionsOf } from '../harness/failover.js'
import { type HubProcess, hubKeyArgs, startHub } from '../harness/hub.js'
import { runVigil, tempDir, VigilProcess, writeLines } from '../harness/processes.js'

// A VM on vSphere kept running by Vigil, through vCenter (VMware's own API simulator, vcsim): two
// ESX hosts, each a node whose agent lives on it (as a service VM pinned to the host would) and
// whose BMC (ipmi_sim) powers it off. The engine places the VM, an operator's `vigil migrate` is a
// vMotion, a guest whose VMware Tools heartbeat stops is reset, and when an ESX host dies the VM
// starts on the other one, only after the dead host's fence is confirmed by its BMC.
const dir = tempDir('vsphere-live')
const cleanups: (() => Promise<void> | void)[] = []
let vcsim: Vcsim
let admin: Vim25Client
const NODES = ['esx1', 'esx2'] as const

beforeAll(async () => {
  vcsim = await startVcsim({ hosts: 2, vms: 2 })
  cleanups.push(() => vcsim.stop())
  admin = new Vim25Client(vcsim.clientOptions())
  cleanups.push(() => admin.logout())
  // The simulator's VMs under the names an operator gave them.
  for (const [i, name] of ['web-vm', 'db-vm'].entries()) {
    const ref = await admin.find('VirtualMachine', vcsim.vms[i] as string, AbortSignal.timeout(5000))
    if (!ref) throw new Error('vcsim has no vm')
    await admin.task('Rename_Task', ref, `<newName>${name}</newName>`, AbortSignal.timeout(5000))
  }
}, 60_000)

afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  dir.remove()
})

/** The ESX host each node stands for. */
const hostOf = (node: string) => vcsim.hosts[NODES.indexOf(node as (typeof NODES)[number])] as string

/** Where vCenter says the VM is, and its power and connection. */
async function where(vm: string): Promise<{ host: string | undefined; power: string; connection: string }> {
  const signal = AbortSignal.timeout(5000)
  const ref = await admin.find('VirtualMachine', vm, signal)
  if (!ref) return { host: undefined, power: 'absent', connection: 'absent' }
  const view = await readVm(admin, ref, signal)
  const hosts = await admin.all('HostSystem', ['name'], signal)
  const host = textOf(hosts.find((h) => h.ref.value === view.host?.value)?.props.name)
  return { host, power: view.powerState, connection: view.connectionState }
}

interface EsxCluster {
  hub: HubProcess
  agents: Record<string, VigilProcess>
  bmcs: Record<string, Bmc>
  /** Throws `err` with what vCenter, the engine and the agents say (for an eventually that timed out). */
  explain(err: Error): Promise<never>
  stop(): Promise<void>
}

/**
 * A hub and one agent per ESX host, managing `vm` (preferring esx1); each host's BMC is an
 * ipmi_sim whose power-off powers the simulated ESX host off and kills its agent.
 */
async function startEsxCluster(name: string, vm: string, resourceLines: string[] = []): Promise<EsxCluster> {
  const base = join(dir.path, name)
  mkdirSync(base)
  const stops: (() => Promise<void> | void)[] = []
  // Registered at once: a start-up that throws halfway still stops what it had started.
  const stopAll = async () => {
    for (const s of stops.splice(0).reverse()) await s()
  }
  cleanups.push(stopAll)
  const bmcs: Record<string, Bmc> = {}
  for (const node of NODES) {
    const hostCtl = vcsimHostPowerControl(
      join(base, `${node}-power.sh`),
      vcsim,
      hostOf(node),
      join(base, `${node}.pid`),
    )
    const bmc = await startBmc({ hostCtl })
    bmcs[node] = bmc
    stops.push(() => bmc.stop())
  }
  const hubFile = join(base, 'hub.yaml')
  writeFileSync(
    hubFile,
    [
      'fencing:',
      // The ESX host's death is its power off (its BMC reads it so): without the power poll, the
      // test shows the fence through the BMC; fence-live shows a death proven by a polled reading.
      '  powerPollMs: 0',
      '  devices:',
      ...NODES.flatMap((node) => [
        `    - id: bmc-${node}`,
        '      driver: ipmi',
        `      hosts: { ${node}: [] }`,
        `      config: { host: ${bmcs[node]?.host}, port: ${bmcs[node]?.port}, username: ${bmcs[node]?.username}, passwordFile: ${bmcs[node]?.passwordFile} }`,
      ]),
      '',
    ].join('\n'),
  )
  const clusterFile = writeLines(base, 'cluster.yaml', [
    // A loaded CI machine can stall an agent for a second or two: that must not be what fences.
    'detection: { hub: { acceptablePauseMs: 1500 }, startupGraceMs: 30000 }',
    'nodes:',
    ...NODES.flatMap((n) => [`  - id: ${n}`, `    fencing: [{ devices: [bmc-${n}], timeoutMs: 10000 }]`]),
    'resources:',
    `  - id: ${vm}`,
    '    kind: vm',
    '    preferred: { esx1: 10 }',
    ...resourceLines,
    '',
  ])
  const hub = await startHub(base, ['--config', hubFile, '--cluster-file', clusterFile])
  stops.push(() => hub.process.stop())
  const agents: Record<string, VigilProcess> = {}
  for (const node of NODES) {
    const file = join(base, `${node}.yaml`)
    const others = NODES.filter((n) => n !== node)
    writeFileSync(
      file,
      [
        `node: ${node}`,
        'heartbeat: { intervalMs: 100 }',
        'resources:',
        ...vsphereResourceLines(vcsim, {
          id: vm,
          vm,
          host: hostOf(node),
          nodeHosts: Object.fromEntries(others.map((n) => [n, hostOf(n)])),
          shutdownTimeoutMs: 2000,
        }),
        '',
      ].join('\n'),
    )
    const agent = new VigilProcess(
      ['agent', '--config', file, '--mqtt-url', hub.mqttUrl, ...hubKeyArgs(hub)],
      {
        cwd: base,
      },
    )
    writeFileSync(join(base, `${node}.pid`), String(agent.pid))
    agents[node] = agent
    stops.push(() => agent.stop())
  }
  const story = async () =>
    (await decisionsOf(hub)).map(
      (d: Decision & { summary?: string }) => `${d.rule} ${d.node ?? ''} ${d.summary ?? ''}`,
    )
  return {
    hub,
    agents,
    bmcs,
    explain: async (err: Error) => {
      const logs = Object.values(agents).flatMap((a) => a.lines.map((l) => JSON.stringify(l)).slice(-8))
      throw new Error(
        `${err.message}\nvcenter: ${JSON.stringify(await where(vm))}\ndecisions:\n${(await story()).slice(-25).join('\n')}\nagents:\n${logs.join('\n')}`.slice(
          -8000,
        ),
      )
    },
    stop: stopAll,
  }
}

/** Waits until vCenter says `vm` is powered on, connected, on the ESX host of `node`. */
async function poweredOnAt(cluster: EsxCluster, vm: string, node: string, what: string, timeoutMs = 30_000) {
  await eventually(
    what,
    async () => {
      const w = await where(vm)
      return w.host === hostOf(node) && w.power === 'poweredOn' && w.connection === 'connected'
    },
    { timeoutMs },
  ).catch(cluster.explain)
}

test('a vSphere VM: placed, vMotioned by an operator, reset when its Tools heartbeat stops, restarted on the other ESX host after its host died and was fenced', async () => {
  const vm = 'web-vm'
  const cluster = await startEsxCluster('failover', vm, ['    liveMigrate: true'])
  cleanups.push(() => cluster.stop())
  const { hub } = cluster
  await poweredOnAt(cluster, vm, 'esx1', 'placed on its preferred node: powered on on esx1')

  // An operator moves it live: a vMotion carried out by esx1's agent on the hub's signed command.
  const migrate = await runVigil(['migrate', vm, 'esx2', '--for', '1h', '--hub', hub.httpUrl])
  expect(migrate.code, migrate.stderr).toBe(0)
  await poweredOnAt(cluster, vm, 'esx2', 'on esx2 after the vMotion')
  await eventually('the migration recorded as done', async () =>
    (await decisionsOf(hub)).some((d) => d.rule === 'action.migrate'),
  ).catch(cluster.explain)
  // Where it runs and on what, for the operator and Prometheus: esx2, under vSphere.
  await eventually('vigil status and vigil_vm_info show the VM on esx2 under vsphere', async () => {
    const status = await runVigil(['status', '--brief', '--hub', hub.httpUrl])
    const info = await hub.metric('vigil_vm_info', { resource: vm, node: 'esx2', hypervisor: 'vsphere' })
    return new RegExp(`${vm}\\s+RUNNING\\s+esx2\\s+vsphere\\s`).test(status.stdout) && info === 1
  }).catch(cluster.explain)
  const bootBefore = await bootTime(vm)
  // A guest that beats through a vMotion is not hung: the destination's first count is a new
  // baseline (its heartbeat went on through the switchover, and nothing reset it).
  await new Promise((r) => setTimeout(r, 3000))
  expect((await decisionsOf(hub)).map((d) => d.rule)).not.toContain('ladder.restart')
  expect(await bootTime(vm)).toBe(bootBefore)

  // The guest hangs: vCenter still says powered on, VMware Tools' heartbeat goes red.
  await eventually(
    'the hub follows the guest heartbeat',
    async () => (await hub.metric('vigil_guest_heartbeat_phi', { resource: vm })) !== undefined,
    { timeoutMs: 30_000 },
  ).catch(cluster.explain)
  await vcsim.guest(vm, 'hung')
  const stalled = await eventually(
    'the engine calls the guest hung and resets it',
    async () =>
      (await decisionsOf(hub)).find((d: Decision & { summary?: string }) =>
        /^guest heartbeat stalled/.test(d.summary ?? ''),
      ) as (Decision & { summary?: string }) | undefined,
    { timeoutMs: 30_000 },
  ).catch(cluster.explain)
  expect(stalled?.summary).toContain('guest hung')
  await eventually('reset in place: booted again on esx2', async () => {
    const w = await where(vm)
    return w.host === hostOf('esx2') && w.power === 'poweredOn' && (await bootTime(vm)) !== bootBefore
  }).catch(cluster.explain)
  await eventually('the reset recorded as done', async () =>
    (await decisionsOf(hub)).some((d) => d.rule === 'action.reset-vm'),
  ).catch(cluster.explain)

  // esx2's ESX host dies, and its agent with it. vCenter loses it (not responding, the VM
  // disconnected with a stale "powered on"): nothing may start on esx1 before esx2's BMC reads off.
  await vcsim.hostPower(hostOf('esx2'), 'off')
  cluster.agents.esx2?.kill('SIGKILL')
  await poweredOnAt(cluster, vm, 'esx1', 'powered on on esx1 after the failover', 60_000)
  const all = await decisionsOf(hub)
  const confirmed = all.findIndex((d) => d.rule === 'fence.confirmed' && d.node === 'esx2')
  const placedAgain = all.findLastIndex((d) => d.kind === 'place' && d.node === 'esx1')
  expect(confirmed, all.map((d) => d.rule).join('\n')).toBeGreaterThanOrEqual(0)
  expect(placedAgain).toBeGreaterThan(confirmed) // placed only after the fence was confirmed
  expect(cluster.bmcs.esx2?.powerLog()).toContain('off')
  await cluster.stop()
  await vcsim.hostPower(hostOf('esx2'), 'on')
}, 240_000)

// vSphere HA's VM Component Protection: a host that loses its paths to the VM's datastore (all
// paths down) while others still reach it. The VM is failed there (its I/O stalls), its restart in
// place is refused as local to that host, and the engine starts it on a host that sees the storage.
test('a datastore one ESX host can no longer reach: the VM moves to the host that still sees it', async () => {
  const vm = 'db-vm'
  const cluster = await startEsxCluster('storage', vm)
  cleanups.push(() => cluster.stop())
  await poweredOnAt(cluster, vm, 'esx1', 'placed on esx1')
  await vcsim.datastoreAccess(false, hostOf('esx1'))
  await poweredOnAt(cluster, vm, 'esx2', 'running on esx2, which still reaches the datastore')
  const rules = (await decisionsOf(cluster.hub)).map((d) => d.rule)
  expect(rules.filter((r) => r.startsWith('fence.'))).toEqual([]) // a storage fault is not a dead host
  await vcsim.datastoreAccess(true)
  await cluster.stop()
}, 120_000)

async function bootTime(vm: string): Promise<string | null> {
  const signal = AbortSignal.timeout(5000)
  const ref = await admin.find('VirtualMachine', vm, signal)
  if (!ref) return null
  return (
    textOf((await admin.props(ref, ['summary.runtime.bootTime'], signal))['summary.runtime.bootTime']) ?? null
  )
}
