import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Libvirt, NetnsLab, startPeerLibvirt } from '@vigil/testbed'
import { afterAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { decisionsOf } from '../harness/failover.js'
import { peerMeshLines, startLabAgent, startLabHub } from '../harness/lab.js'
import { runVigil, tempDir, writeLines } from '../harness/processes.js'

// A vm failing over between two lab hosts for real: each host a network namespace with its own
// libvirtd (own mount namespace, host UUID and address) and its agent; the guest defined on both.
// node-a crashes (every process of its namespace SIGKILLed: agent, libvirtd and the guest's QEMU);
// nothing starts on node-b until node-a's fence is confirmed (a person, meatware), then the vm
// starts there. One QEMU at any time.
const dir = tempDir('vm-failover')
const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  dir.remove()
})

const NODES = ['node-a', 'node-b'] as const

test('a host running a vm crashes: fenced, then the vm starts on the other host, never two at once', async () => {
  const lab = NetnsLab.create([...NODES])
  cleanups.push(() => lab.destroy())
  const libvirt: Record<string, Libvirt> = {}
  for (const node of NODES) {
    libvirt[node] = await startPeerLibvirt(lab.host(node))
    cleanups.push(() => libvirt[node]?.stop())
  }
  const domain = `vigil-failover-${process.pid}`
  const xml = join(dir.path, `${domain}.xml`)
  writeFileSync(
    xml,
    `<domain type='qemu'><name>${domain}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
<devices><emulator>/usr/bin/qemu-system-x86_64</emulator><memballoon model='none'/></devices></domain>
`,
  )
  for (const node of NODES) await libvirt[node]?.virsh(['define', xml])
  const state = async (node: string) =>
    (await libvirt[node]?.domstate(domain).catch(() => 'unreachable')) ?? ''

  const hubFile = join(dir.path, 'hub.yaml')
  writeFileSync(
    hubFile,
    'fencing:\n  devices:\n    - { id: people, driver: meatware, hosts: { node-a: [node-a], node-b: [node-b] } }\n',
  )
  const clusterFile = writeLines(dir.path, 'cluster.yaml', [
    // A loaded CI machine can stall an agent for a second or two: that must not be what fences.
    'detection: { hub: { acceptablePauseMs: 1500 } }',
    'nodes:',
    ...NODES.flatMap((n) => [`  - id: ${n}`, '    fencing: [{ devices: [people], timeoutMs: 600000 }]']),
    'resources:',
    '  - id: vm1',
    '    kind: vm',
    '    preferred: { node-a: 10 }',
    '',
  ])
  const hub = await startLabHub(lab, dir.path, ['--config', hubFile, '--cluster-file', clusterFile], cleanups)
  for (const node of NODES) {
    const agent = startLabAgent(lab, node, {
      dir: dir.path,
      hub,
      lines: [
        'heartbeat: { intervalMs: 100 }',
        ...peerMeshLines(lab, [...NODES], node),
        'resources:',
        '  - id: vm1',
        '    driver: libvirt',
        `    config: { domain: ${domain}, uri: '${libvirt[node]?.uri}', shutdownTimeoutMs: 0 }`,
      ],
    })
    cleanups.push(() => agent.stop())
  }

  await eventually('vm1 running on node-a', async () => (await state('node-a')) === 'running', {
    timeoutMs: 60_000,
  })
  expect(await state('node-b')).toBe('shut off')
  const qemuA = Number(readFileSync(libvirt['node-a']?.qemuPidFile(domain) as string, 'utf8'))

  // The crash: node-a's agent, libvirtd and the guest's QEMU, all at once.
  lab.host('node-a').killAll()
  await eventually(
    "node-a's fence waits for a person",
    async () => {
      const { pending } = (
        await hub.api<{ pending: { node: string; confirmedBy: string | null }[] }>('/api/fence')
      ).body
      return pending.some((p) => p.node === 'node-a' && p.confirmedBy === null)
    },
    { timeoutMs: 30_000 },
  )
  // Dead to every channel, yet unconfirmed: nothing may start elsewhere.
  await new Promise((r) => setTimeout(r, 1500))
  expect(await state('node-b')).toBe('shut off')
  expect(existsSync(`/proc/${qemuA}`)).toBe(false) // the old copy died with its host

  const confirmed = await runVigil(['fence', 'confirm', 'node-a', '--by', 'oncall', '--hub', hub.httpUrl])
  expect(confirmed.code, confirmed.stderr).toBe(0)
  await eventually('vm1 running on node-b', async () => (await state('node-b')) === 'running', {
    timeoutMs: 60_000,
  })
  const all = await decisionsOf(hub)
  const confirmedAt = all.findIndex((d) => d.rule === 'fence.confirmed')
  const placedOnB = all.findIndex((d) => d.kind === 'place' && d.node === 'node-b')
  expect(confirmedAt).toBeGreaterThanOrEqual(0)
  expect(placedOnB).toBeGreaterThan(confirmedAt) // placed only after the fence was confirmed
  expect(all.filter((d) => d.kind === 'place' && d.resource === 'vm1')).toHaveLength(2) // a, then b
}, 240_000)
