import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Bmc, freePort, NetnsLab, netnsPowerControl, startBmc } from '@vigil/testbed'
import { afterAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import type { Decision } from '../harness/failover.js'
import { type HubProcess, hubKeyArgs, startHub } from '../harness/hub.js'
import { startLabAgent, startLabHub } from '../harness/lab.js'
import { runVigil, tempDir, VigilProcess, writeLines } from '../harness/processes.js'

const dir = tempDir('fence-live')
const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
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
  const hostCtl = netnsPowerControl(join(dir.path, 'node-b-power.sh'), nodeB.netns)
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
  const clusterFile = writeLines(dir.path, 'cluster.yaml', [
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
  ])
  const hub: HubProcess = await startLabHub(
    lab,
    dir.path,
    ['--config', hubFile, '--cluster-file', clusterFile],
    cleanups,
  )

  const agents = new Map<string, VigilProcess>()
  for (const node of ['node-a', 'node-b']) {
    const agent = startLabAgent(lab, node, {
      dir: dir.path,
      hub,
      lines: [
        'resources:',
        '  - id: web',
        '    driver: process',
        '    config:',
        `      command: [sh, -c, 'while :; do echo "${node} $(date +%s%N)" >> ${join(dir.path, 'witness.log')}; sleep 0.05; done']`,
        `      pidfile: ${join(dir.path, `${node}-web.pid`)}`,
      ],
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
  // The dead BMC is tried twice (the level's one retry, after its backoff), then level 2.
  expect(history.map((h) => [h.device, h.outcome]).reverse()).toEqual([
    ['bmc-dead', 'unreachable'],
    ['bmc-dead', 'unreachable'],
    ['bmc-b', 'off'],
  ])
  const retried = index((d) => d.rule === 'fence.retry', 'fence.retry')
  expect(fence).toBeLessThan(retried)
  expect(retried).toBeLessThan(levelFailed)
  expect(history[0]?.detail).toBe('the target read back off')
  expect(await hub.metric('vigil_fence_operations_total', { device: 'bmc-b', outcome: 'off' })).toBe(1)
  expect(await hub.metric('vigil_fence_device_up', { device: 'bmc-b' })).toBe(1)
  expect(await hub.metric('vigil_fence_device_up', { device: 'bmc-dead' })).toBe(0)

  // The operator's view: `vigil fence` shows it; confirming a healthy node off is refused.
  const shown = await runVigil(['fence', '--hub', hub.httpUrl])
  expect(shown.code).toBe(0)
  expect(shown.stdout).toMatch(/bmc-b\s+ipmi\s+UP/)
  expect(shown.stdout).toMatch(/node-b\s+2\s+bmc-b\s+OFF/)
  const refused = await runVigil(['fence', 'confirm', 'node-a', '--hub', hub.httpUrl])
  expect(refused.code).toBe(1)
  expect(refused.stderr).toContain('not waiting for a fence confirmation')
})

// The BMC's power state as a live channel (issue #23): the hub reads every BMC each second. node-b
// loses its power for real (every process of its namespace killed; its BMC, ipmi_sim, lives on and
// reads it off): silent everywhere and read off, it is dead and counts as fenced with no off sent.
// Meanwhile a second BMC, wrongly mapped to node-a, reads node-a off while node-a beats: that one
// channel kills nothing; the mismatch is recorded and alerted before anyone needs that device.
// Before the power loss, node-b's agent is restarted: a clean stop of the agent is not a death.
test('a host that loses its power is proven off by its polled BMC; a BMC that reads a beating host off is called out', async () => {
  const lab = NetnsLab.create(['node-a', 'node-b'])
  cleanups.push(() => lab.destroy())
  const nodeB = lab.host('node-b')
  const bmc = await startBmc({ hostCtl: netnsPowerControl(join(dir.path, 'poll-b-power.sh'), nodeB.netns) })
  cleanups.push(() => bmc.stop())
  const wrong = await startBmc({ initialPower: 'off' })
  cleanups.push(() => wrong.stop())
  const device = (id: string, node: string, b: Bmc) => [
    `    - id: ${id}`,
    '      driver: ipmi',
    `      hosts: { ${node}: [] }`,
    `      config: { host: ${b.host}, port: ${b.port}, username: ${b.username}, passwordFile: ${b.passwordFile} }`,
  ]
  const hubFile = writeLines(dir.path, 'hub-poll.yaml', [
    'fencing:',
    '  powerPollMs: 1000',
    '  devices:',
    ...device('bmc-b', 'node-b', bmc),
    ...device('bmc-wrong', 'node-a', wrong),
    // node-b's only fence level: a BMC that never answers. Whether the hub calls node-b dead before
    // or after bmc-b's next reading, only that reading can prove it off, and bmc-b switches nothing.
    '    - id: bmc-gone',
    '      driver: ipmi',
    '      hosts: { node-b: [] }',
    `      config: { host: 127.0.0.1, port: ${await freePort('udp')}, username: admin, passwordFile: ${bmc.passwordFile} }`,
    '',
  ])
  const clusterFile = writeLines(dir.path, 'cluster-poll.yaml', [
    'nodes:',
    '  - id: node-a',
    '  - id: node-b',
    '    fencing:',
    '      - devices: [bmc-gone]',
    '        timeoutMs: 30000',
    'resources:',
    '  - id: web',
    '    preferred: { node-b: 10 }',
    '',
  ])
  const hub = await startLabHub(
    lab,
    dir.path,
    ['--config', hubFile, '--cluster-file', clusterFile, '--db', join(dir.path, 'poll.sqlite')],
    cleanups,
  )
  const startAgent = (node: string) => {
    const agent = startLabAgent(lab, node, {
      dir: dir.path,
      hub,
      lines: [
        'resources:',
        '  - id: web',
        '    driver: process',
        `    config: { command: [sleep, '3600'], pidfile: ${join(dir.path, `poll-${node}-web.pid`)} }`,
      ],
    })
    cleanups.push(() => agent.stop())
    return agent
  }
  startAgent('node-a')
  const agentB = startAgent('node-b')
  const decisions = async () =>
    (await hub.api<{ decisions: Decision[] }>('/api/decisions?limit=500')).body.decisions.reverse()
  const mismatch = await eventually('the wrong BMC called out', async () =>
    (await decisions()).find((d) => d.rule === 'power.mismatch'),
  )
  expect(mismatch.node).toBe('node-a')
  expect(mismatch.summary).toContain('bmc-wrong reads node-a powered off, but its heartbeats keep coming')
  await eventually(
    'web running on node-b',
    async () => (await hub.metric('vigil_resource_health_score', { resource: 'web' })) === 100,
    { timeoutMs: 30_000 },
  )
  const before = await decisions()
  expect(before.filter((d) => d.rule === 'power.mismatch')).toHaveLength(1) // said once
  expect(before.some((d) => d.node === 'node-a' && d.rule.startsWith('fence.'))).toBe(false)

  // node-b's agent is restarted (an upgrade): it says, as it stops, that it alone is stopping, then
  // is silent for 4 s, well past the hub's detection (about 1 s). node-b is held, not fenced, and
  // web runs on where it is, the same process, watched again once the new agent is heard.
  const webPid = readFileSync(join(dir.path, 'poll-node-b-web.pid'), 'utf8').trim()
  await agentB.stop()
  await eventually('node-b held: its agent stopped', async () =>
    (await decisions()).some((d) => d.node === 'node-b' && d.rule === 'classify.agent-stopped'),
  )
  await new Promise((r) => setTimeout(r, 4000))
  startAgent('node-b')
  await eventually('node-b healthy again', async () =>
    (await decisions()).some((d) => d.node === 'node-b' && d.rule === 'classify.healthy'),
  )
  await eventually(
    'web watched again on node-b',
    async () => (await hub.metric('vigil_resource_health_score', { resource: 'web' })) === 100,
  )
  const restarted = (await decisions()).slice(before.length)
  expect(restarted.filter((d) => d.node === 'node-b').map((d) => d.rule)).toEqual(
    expect.arrayContaining(['classify.agent-stopped', 'classify.healthy']),
  )
  expect(
    restarted.filter((d) => d.rule.startsWith('fence.') || d.rule === 'classify.dead'),
    restarted.map((d) => `${d.node} ${d.resource} ${d.rule} ${d.summary}`).join('\n'),
  ).toEqual([])
  expect(restarted.some((d) => d.resource === 'web' && (d.kind === 'place' || d.kind === 'start'))).toBe(
    false,
  )
  expect(readFileSync(join(dir.path, 'poll-node-b-web.pid'), 'utf8').trim()).toBe(webPid)
  expect(alive(Number(webPid))).toBe(true)
  expect(bmc.powerLog()).toEqual([])

  // node-b's power goes: its BMC's chassis control kills every process of its namespace.
  execFileSync(netnsPowerControl(join(dir.path, 'poll-b-power.sh'), nodeB.netns), ['off'])
  const placed = await eventually(
    'web placed on node-a',
    async () =>
      (await decisions()).find((d) => d.resource === 'web' && d.kind === 'place' && d.node === 'node-a'),
    { timeoutMs: 30_000 },
  )
  const list = await decisions()
  // Proven off by bmc-b's reading: before the hub called node-b dead (fence.proven-off), or while
  // it tried the silent bmc-gone (fence.status-read-back).
  const proven = list.findIndex(
    (d) => d.node === 'node-b' && (d.rule === 'fence.proven-off' || d.rule === 'fence.status-read-back'),
  )
  expect(proven, list.map((d) => `${d.rule} ${d.summary}`).join('\n')).toBeGreaterThanOrEqual(0)
  expect(list[proven]?.summary).toContain('bmc-b')
  expect(proven).toBeLessThan(list.findIndex((d) => d.id === placed.id))
  // Proven by reading alone: nothing switched by any BMC, no fence run confirmed by a device.
  expect(bmc.powerLog()).toEqual([])
  expect(wrong.powerLog()).toEqual([])
  const history = (await hub.api<{ history: { device: string; outcome: string }[] }>('/api/fence')).body
    .history
  expect(history.filter((h) => h.outcome === 'off')).toEqual([])
  expect(list.some((d) => d.node === 'node-a' && d.rule.startsWith('fence.'))).toBe(false)
})

// Meatware: the fence waits for a person, never for a clock; `vigil fence confirm` is that person.
test('a meatware fence waits for the operator, who confirms with the CLI', async () => {
  const hubFile = writeLines(dir.path, 'hub-meatware.yaml', [
    'fencing:',
    '  devices:',
    '    - id: people',
    '      driver: meatware',
    '      hosts: { node-m: [node-m] }',
    '',
  ])
  const clusterFile = writeLines(dir.path, 'cluster-meatware.yaml', [
    'nodes:',
    '  - id: node-m',
    '    fencing:',
    '      - devices: [people]',
    '        timeoutMs: 600000',
    '',
  ])
  const hub = await startHub(join(dir.path), [
    '--config',
    hubFile,
    '--cluster-file',
    clusterFile,
    '--db',
    join(dir.path, 'meatware.sqlite'),
  ])
  cleanups.push(() => hub.process.stop())
  // Its isolation response (stop 3 s after losing the hub) would come too late: without a disk
  // heartbeat, the hub calls a silent node dead and fences it within about a second.
  const agentFile = writeLines(dir.path, 'agent-meatware.yaml', [
    'mqtt: { keepaliveSeconds: 1 }',
    'isolation: { afterMs: 3000, action: stop }',
    '',
  ])
  const agent = new VigilProcess([
    'agent',
    '--config',
    agentFile,
    '--node',
    'node-m',
    '--mqtt-url',
    hub.mqttUrl,
    '--heartbeat-interval',
    '100',
    ...hubKeyArgs(hub),
  ])
  cleanups.push(() => agent.stop())
  const late = await eventually('the hub says the isolation response is late', async () =>
    (
      await hub.api<{ events: { kind: string; message: string }[] }>('/api/events?node=node-m')
    ).body.events.find((e) => e.kind === 'config.isolation-late'),
  )
  expect(late.message).toMatch(
    /^node-m.s isolation response \(stop\) can take until 3000 ms .*\(no disk heartbeat, so a silent node is dead/,
  )
  const phase = async () =>
    (await hub.api<{ nodes: { node: string; phase: string }[] }>('/api/fence')).body.nodes[0]?.phase
  await eventually(
    'node-m healthy',
    async () =>
      (await hub.api<{ engine: { condition: string } | null }>('/api/nodes/node-m')).body.engine
        ?.condition === 'healthy',
  )
  agent.kill('SIGKILL')
  await eventually('the fence waits for a person', async () => {
    const view = (await hub.api<{ pending: { node: string; confirmedBy: string | null }[] }>('/api/fence'))
      .body
    return view.pending.some((p) => p.node === 'node-m' && p.confirmedBy === null)
  })
  const shown = await runVigil(['fence', '--hub', hub.httpUrl])
  expect(shown.stdout).toContain('Waiting for an operator')
  expect(await phase()).toBe('running')

  const confirmed = await runVigil(['fence', 'confirm', 'node-m', '--by', 'alice', '--hub', hub.httpUrl])
  expect(confirmed.code).toBe(0)
  await eventually('fence confirmed', async () => (await phase()) === 'confirmed')
  const events = (await hub.api<{ events: { kind: string; message: string }[] }>('/api/events?node=node-m'))
    .body.events
  expect(events.find((e) => e.kind === 'fence.confirmed-by-operator')?.message).toBe(
    'alice confirmed node-m is powered off',
  )
})

// Self-fence: a host cut off from the hub stops its resources by itself, before the hub could fence
// it and start them elsewhere; back on the network, it reports what it did.
test('an agent cut off from the hub (its link down) stops its resources by itself', async () => {
  const lab = NetnsLab.create(['node-s'])
  cleanups.push(() => lab.destroy())
  const host = lab.host('node-s')
  const clusterFile = writeLines(dir.path, 'cluster-isolation.yaml', [
    'nodes:',
    '  - id: node-s',
    'resources:',
    '  - id: app',
    '',
  ])
  const hub = await startLabHub(
    lab,
    dir.path,
    ['--cluster-file', clusterFile, '--db', join(dir.path, 'isolation.sqlite')],
    cleanups,
  )
  const pidfile = join(dir.path, 'node-s-app.pid')
  const agent = startLabAgent(lab, 'node-s', {
    dir: dir.path,
    hub,
    lines: [
      'mqtt: { keepaliveSeconds: 1 }',
      'reconnect: { minMs: 100, maxMs: 1000 }',
      'isolation: { afterMs: 2500, action: stop }',
      'resources:',
      '  - id: app',
      '    driver: process',
      '    config:',
      '      command: [sleep, "600"]',
      `      pidfile: ${pidfile}`,
    ],
  })
  cleanups.push(() => agent.stop())
  const appPid = await eventually('app started by the engine on node-s', () => {
    const pid = existsSync(pidfile) ? Number(readFileSync(pidfile, 'utf8')) : 0
    return pid > 0 && alive(pid) ? pid : undefined
  })

  host.link(false)
  await eventually('the isolation response stopped app', () => !alive(appPid), { timeoutMs: 20_000 })
  // The agent logs before it stops anything, but its stdout can be read after the test sees the
  // process gone (timers run before pipe reads in an event loop turn), so the line is awaited too.
  await eventually('the agent logged its isolation', () =>
    agent.lines.some((l) => l.msg === 'isolated: no contact with the hub; running the isolation response'),
  )
  host.link(true)
  await eventually(
    'the hub learns what the agent did',
    async () =>
      (
        await hub.api<{ events: { kind: string; message: string }[] }>('/api/events?node=node-s')
      ).body.events.find((e) => e.kind === 'agent.isolated' && e.message.includes('every resource stopped')),
    { timeoutMs: 40_000 },
  ).catch(async (err: Error) => {
    // Seen once under a loaded full run: say what the agent and the hub did, for the next reader.
    const events = (await hub.api<{ events: { kind: string; message: string }[] }>('/api/events?node=node-s'))
      .body.events
    const agentLog = agent.lines
      .slice(-15)
      .map((l) => `${l.time ?? ''} ${l.msg ?? ''} ${JSON.stringify(l.err ?? '')}`)
    const hubLog = hub.process.lines
      .slice(-25)
      .map((l) => `${l.time ?? ''} ${l.msg ?? ''} ${JSON.stringify(l.err ?? '')}`)
    throw new Error(
      `${err.message}\nhub events: ${events.map((e) => `${e.kind} ${e.message}`).join('; ')}\nagent log:\n${agentLog.join('\n')}\nhub log:\n${hubLog.join('\n')}`,
    )
  })
})
