import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Bmc, freePort, NetnsLab, startBmc } from '@vigil/testbed'
import { afterAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { type HubProcess, startHub } from '../harness/hub.js'
import { tempDir, VigilProcess } from '../harness/processes.js'

interface Decision {
  id: string
  kind: string
  rule: string
  node?: string
  resource?: string
  summary: string
}

const dir = tempDir('fence-live')
const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  dir.remove()
})

/** The witness log: every instance of web appends "<node> <ns since epoch>" every 50 ms while it runs. */
function witness(): { node: string; at: bigint }[] {
  const file = join(dir.path, 'witness.log')
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => /^node-[ab] \d+$/.test(l))
    .map((l) => {
      const [node, at] = l.split(' ')
      return { node: node as string, at: BigInt(at as string) }
    })
}

// Two hosts as network namespaces on a lab bridge; node-b's power is controlled by a real IPMI BMC
// (ipmi_sim) whose chassis control kills every process of node-b's namespace. node-b hangs (its
// agent is SIGSTOPped) while its application keeps running: the hub must fence it before starting
// the application on node-a. Level 1 is a BMC that does not answer; level 2 fences and confirms.
test('a hung host is fenced through its levels, confirmed off, and only then its application starts elsewhere', async () => {
  const lab = NetnsLab.create(['node-a', 'node-b'])
  cleanups.push(() => lab.destroy())
  const nodeB = lab.host('node-b')

  // node-b's "power": on while any process lives in its namespace; off kills them all.
  const hostCtl = join(dir.path, 'node-b-power.sh')
  writeFileSync(
    hostCtl,
    `#!/bin/sh
case "$1" in
  status) [ -n "$(ip netns pids ${nodeB.netns})" ] && echo on || echo off ;;
  off) ip netns pids ${nodeB.netns} | xargs -r kill -9 ;;
esac
`,
  )
  chmodSync(hostCtl, 0o755)
  const bmc: Bmc = await startBmc({ hostCtl })
  cleanups.push(() => bmc.stop())

  const hubFile = join(dir.path, 'hub.yaml')
  writeFileSync(
    hubFile,
    [
      'fencing:',
      '  devices:',
      '    - id: bmc-dead',
      '      driver: ipmi',
      '      hosts: { node-b: [] }',
      `      config: { host: 127.0.0.1, port: ${await freePort('udp')}, username: admin, passwordFile: ${bmc.passwordFile} }`,
      '    - id: bmc-b',
      '      driver: ipmi',
      '      hosts: { node-b: [] }',
      `      config: { host: ${bmc.host}, port: ${bmc.port}, username: ${bmc.username}, passwordFile: ${bmc.passwordFile} }`,
      '',
    ].join('\n'),
  )
  const clusterFile = join(dir.path, 'cluster.yaml')
  writeFileSync(
    clusterFile,
    [
      'nodes:',
      '  - id: node-a',
      '  - id: node-b',
      '    fencing:',
      '      - devices: [bmc-dead]',
      '        timeoutMs: 3000',
      '      - devices: [bmc-b]',
      '        timeoutMs: 10000',
      'resources:',
      '  - id: web',
      '    preferred: { node-b: 10 }',
      '',
    ].join('\n'),
  )
  const hub: HubProcess = await startHub(dir.path, [
    '--config',
    hubFile,
    '--cluster-file',
    clusterFile,
    '--broker-listen',
    `${lab.hubIp}:${await freePort('tcp')}`,
  ])
  cleanups.push(() => hub.process.stop())

  const agents = new Map<string, VigilProcess>()
  for (const node of ['node-a', 'node-b']) {
    const agentFile = join(dir.path, `${node}.yaml`)
    writeFileSync(
      agentFile,
      [
        `node: ${node}`,
        'resources:',
        '  - id: web',
        '    driver: process',
        '    config:',
        `      command: [sh, -c, 'while :; do echo "${node} $(date +%s%N)" >> ${join(dir.path, 'witness.log')}; sleep 0.05; done']`,
        `      pidfile: ${join(dir.path, `${node}-web.pid`)}`,
        '',
      ].join('\n'),
    )
    const agent = new VigilProcess(['agent', '--config', agentFile, '--mqtt-url', hub.mqttUrl], {
      cwd: dir.path,
      wrap: lab.host(node).exec([]),
    })
    agents.set(node, agent)
    cleanups.push(() => agent.stop())
  }

  const decisions = async () =>
    (await hub.api<{ decisions: Decision[] }>('/api/decisions?limit=500')).body.decisions.reverse()
  await eventually('web running on node-b', () => witness().some((w) => w.node === 'node-b'), {
    timeoutMs: 30_000,
  })
  await eventually(
    'the start on node-b confirmed',
    async () => (await hub.metric('vigil_resource_health_score', { resource: 'web' })) === 100,
  )

  // node-b hangs: its agent stops, its application does not.
  const hungAt = BigInt(Date.now()) * 1_000_000n
  agents.get('node-b')?.kill('SIGSTOP')

  await eventually('web running on node-a', () => witness().some((w) => w.node === 'node-a'), {
    timeoutMs: 40_000,
  })

  // Ground truth, independent of Vigil: node-b's copy ran on after the hang, and stopped before
  // node-a's copy started. No moment with two copies.
  const lines = witness()
  const lastB = lines.filter((w) => w.node === 'node-b').at(-1)?.at ?? 0n
  const firstA = lines.find((w) => w.node === 'node-a')?.at ?? 0n
  expect(lastB).toBeGreaterThan(hungAt)
  expect(firstA).toBeGreaterThan(lastB)
  expect(nodeB.pids()).toEqual([])
  expect(bmc.powerLog()).toContain('off')

  // Vigil's own account, in order: dead, fence level 1 fails (BMC unreachable), level 2 powers it
  // off and reads it back, confirmed, and only then web is placed on node-a.
  const list = await decisions()
  const index = (pred: (d: Decision) => boolean, what: string) => {
    const i = list.findIndex(pred)
    expect(i, what).toBeGreaterThanOrEqual(0)
    return i
  }
  const dead = index((d) => d.node === 'node-b' && d.rule === 'classify.dead', 'classify.dead')
  const fence = index((d) => d.node === 'node-b' && d.rule === 'fence.dead', 'fence.dead')
  const levelFailed = index((d) => d.rule === 'fence.level-failed', 'fence.level-failed')
  const nextLevel = index((d) => d.rule === 'fence.next-level', 'fence.next-level')
  const confirmed = index((d) => d.node === 'node-b' && d.rule === 'fence.confirmed', 'fence.confirmed')
  const placed = index(
    (d) => d.resource === 'web' && d.kind === 'place' && d.node === 'node-a',
    'web placed on node-a',
  )
  expect(dead).toBeLessThan(fence)
  expect(fence).toBeLessThan(levelFailed)
  expect(levelFailed).toBeLessThan(nextLevel)
  expect(nextLevel).toBeLessThan(confirmed)
  expect(confirmed).toBeLessThan(placed)
  expect(list[levelFailed]?.summary).toContain('bmc-dead')

  const history = (
    await hub.api<{ history: { device: string; outcome: string; detail: string }[] }>('/api/fence')
  ).body.history
  expect(history.map((h) => [h.device, h.outcome]).reverse()).toEqual([
    ['bmc-dead', 'unreachable'],
    ['bmc-b', 'off'],
  ])
  expect(history[0]?.detail).toBe('the target read back off')
  expect(await hub.metric('vigil_fence_operations_total', { device: 'bmc-b', outcome: 'off' })).toBe(1)
  expect(await hub.metric('vigil_fence_device_up', { device: 'bmc-b' })).toBe(1)
  expect(await hub.metric('vigil_fence_device_up', { device: 'bmc-dead' })).toBe(0)
})
