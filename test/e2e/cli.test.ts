import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { freePort } from '../harness/mosquitto.js'
import { runVigil, tempDir, writeLines } from '../harness/processes.js'

const dir = tempDir('cli')
afterAll(() => dir.remove())
const scenarios = join(import.meta.dirname, '../scenarios')

describe('vigil CLI exit codes (real processes)', () => {
  test('config check: a valid file exits 0', async () => {
    const file = join(dir.path, 'good.yaml')
    writeFileSync(file, 'cluster: prod\nhttp:\n  listen: 127.0.0.1:9000\n')
    const r = await runVigil(['config', 'check', file, '--kind', 'hub'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('valid hub configuration')
  })

  test("config check --kind hub reads its cluster file: fence levels against the hub's devices, with lines, exit 2", async () => {
    const clusterFile = writeLines(dir.path, 'hub-cluster.yaml', [
      'nodes:',
      '  - id: n1',
      '    fencing:',
      '      - devices: [bmc-n1]',
      '  - id: n2',
      '    fencing:',
      '      - devices: [pdu]',
      '',
    ])
    writeFileSync(join(dir.path, 'community'), 'private\n')
    const device = (plugs: string) => [
      'fencing:',
      '  devices:',
      '    - id: pdu',
      '      driver: apc-snmp',
      `      hosts: { n2: [${plugs}] }`,
      `      config: { host: 127.0.0.1, version: 2c, communityFile: ${join(dir.path, 'community')} }`,
    ]
    const bad = writeLines(dir.path, 'hub-fence.yaml', [
      `engine: { clusterFile: ${clusterFile} }`,
      ...device(''),
      '',
    ])
    const r = await runVigil(['config', 'check', bad, '--kind', 'hub'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(
      `${clusterFile}:4:9: nodes.0.fencing.0.devices.0: no fence device "bmc-n1" in the hub's fencing.devices`,
    )
    expect(r.stderr).toContain(`device "pdu" needs the plugs (outlets) of n2 in its hosts`)
    const good = writeLines(dir.path, 'hub-fence-good.yaml', [
      `engine: { clusterFile: ${clusterFile} }`,
      ...device("'3'"),
      '    - id: bmc-n1',
      '      driver: meatware',
      '      hosts: { n1: [n1] }',
      '',
    ])
    const ok = await runVigil(['config', 'check', good, '--kind', 'hub'])
    expect(ok.stderr).toBe('')
    expect(ok.code).toBe(0)
    expect(ok.stdout).toContain(`its cluster file ${clusterFile} too`)
  })

  test('config check: a typo is reported with file, line, column and key, exit 2', async () => {
    const file = join(dir.path, 'bad.yaml')
    writeFileSync(file, 'cluster: prod\nmqtt:\n  urll: mqtt://x:1\n')
    const r = await runVigil(['config', 'check', file, '--kind', 'agent'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`${file}:3:3: mqtt.urll: unknown key`)
  })

  test("a typo inside a driver's config is reported with its line and full key, exit 2", async () => {
    const file = writeLines(dir.path, 'agent-driver.yaml', [
      'resources:',
      '  - id: web',
      '    driver: process',
      '    config:',
      '      command: [sleep, "1"]',
      '      pidfile: /tmp/x.pid',
      '      colour: red',
      '',
    ])
    const r = await runVigil(['config', 'check', file, '--kind', 'agent'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`${file}:7:7: resources.0.config.colour: unknown key`)
  })

  test("config check --cluster: an agent's isolation response that would end after the hub's fence, exit 2", async () => {
    const agentFile = writeLines(dir.path, 'agent-isolation.yaml', [
      'node: node-a',
      'mqtt: { keepaliveSeconds: 1 }',
      'commands: { allowUnsigned: true }',
      `diskHeartbeat: { path: ${join(dir.path, 'sbd')}, slot: 0 }`,
      'isolation:',
      '  afterMs: 3000',
      'resources:',
      '  - id: db',
      '    driver: process',
      '    config: { command: [sleep, "600"], pidfile: /tmp/db.pid }',
      '',
    ])
    const cluster = (graceMs: number) =>
      writeLines(dir.path, `cluster-${graceMs}.yaml`, [
        `detection: { isolationGraceMs: ${graceMs} }`,
        'nodes:',
        '  - id: node-a',
        '    fencing: [{ devices: [bmc-a] }]',
        '',
      ])
    const late = await runVigil(['config', 'check', agentFile, '--kind', 'agent', '--cluster', cluster(4000)])
    expect(late.code).toBe(2)
    expect(late.stderr).toMatch(
      new RegExp(
        `^${agentFile}:6:3: isolation.afterMs: node-a's isolation response \\(stop\\) can take until \\d+ ms after it last heard the hub \\(isolation.afterMs 3000 \\+ its longest stop timeout \\d+\\), but the hub may fence it 4000 ms after \\(detection.isolationGraceMs 4000\\)`,
      ),
    )
    const fits = await runVigil([
      'config',
      'check',
      agentFile,
      '--kind',
      'agent',
      '--cluster',
      cluster(60_000),
    ])
    expect(fits.code, fits.stderr).toBe(0)
    expect(fits.stdout).toContain('its timings consistent with')
    const hubWithCluster = await runVigil([
      'config',
      'check',
      agentFile,
      '--kind',
      'hub',
      '--cluster',
      cluster(4000),
    ])
    expect(hubWithCluster.code).toBe(2)
    expect(hubWithCluster.stderr).toContain('--kind agent [--cluster <cluster.yaml>]')
  })

  test("config check --cluster: an action whose driver's timeout outlasts the engine's fallback is named, with both numbers", async () => {
    const agentFile = writeLines(dir.path, 'agent-vm.yaml', [
      'node: node-a',
      'commands: { allowUnsigned: true }',
      'resources:',
      '  - id: vm1',
      '    driver: libvirt',
      '    config: { domain: vm1, migrateTimeoutMs: 600000, callTimeoutMs: 15000 }',
      '',
    ])
    const clusterFile = writeLines(dir.path, 'cluster-vm.yaml', [
      'nodes:',
      '  - id: node-a',
      'resources:',
      '  - id: vm1',
      '    kind: vm',
      '    policy: { actionTimeoutMs: 20000 }',
      '',
    ])
    const r = await runVigil(['config', 'check', agentFile, '--kind', 'agent', '--cluster', clusterFile])
    expect(r.code, r.stderr).toBe(0)
    // migrate: migrateTimeoutMs 600000 + two calls of 15000; the engine waits for it plus the margin.
    expect(r.stdout).toContain(
      `${clusterFile}: vm1 migrate: resources.0.policy.actionTimeoutMs is 20000 ms, shorter than the 630000 ms node-a's driver declares; the engine waits 640000 ms (the driver's 630000 + actionMarginMs 10000)`,
    )
  })

  test('the hub refuses a bad config at start with the same message, exit 2', async () => {
    const file = join(dir.path, 'hub-bad.yaml')
    writeFileSync(file, 'commands:\n  ttlMs: -5\n')
    const r = await runVigil(['hub', '--config', file])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(new RegExp(`${file}:2:3: commands.ttlMs: `))
  })

  test('a bad flag value names the flag, exit 2', async () => {
    const r = await runVigil(['agent', '--heartbeat-interval', 'soon'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('--heartbeat-interval expects a number')
  })

  test("an agent without the hub's public key does not start (unsigned commands are opt-in), exit 2", async () => {
    const r = await runVigil([
      'agent',
      '--node',
      'node-x',
      '--mqtt-url',
      `mqtt://127.0.0.1:${await freePort()}`,
    ])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("commands.hubPublicKeyFile: required: the hub's command signing public key")
  })

  test('status against a hub that is not there exits 3', async () => {
    const r = await runVigil(['status', '--hub', `http://127.0.0.1:${await freePort()}`])
    expect(r.code).toBe(3)
    expect(r.stderr).toContain('cannot reach the hub')
  })

  test('simulate --check replays a golden scenario and matches its log.expect', async () => {
    const r = await runVigil(['simulate', join(scenarios, 'host-crash-fence-restart'), '--check'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('fence confirmed')
    expect(r.stderr).toContain('matches log.expect')
  })

  test('simulate of a folder that is not a scenario exits 2', async () => {
    const r = await runVigil(['simulate', dir.path])
    expect(r.code).toBe(2)
  })

  test('an unknown command prints usage and exits 2', async () => {
    const r = await runVigil(['frobnicate'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('Usage: vigil <command>')
  })
})
