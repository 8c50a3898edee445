import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { freePort } from '../harness/mosquitto.js'
import { runVigil, tempDir } from '../harness/processes.js'

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

  test('config check: a typo is reported with file, line, column and key, exit 2', async () => {
    const file = join(dir.path, 'bad.yaml')
    writeFileSync(file, 'cluster: prod\nmqtt:\n  urll: mqtt://x:1\n')
    const r = await runVigil(['config', 'check', file, '--kind', 'agent'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`${file}:3:3: mqtt.urll: unknown key`)
  })

  test("a typo inside a driver's config is reported with its line and full key, exit 2", async () => {
    const file = join(dir.path, 'agent-driver.yaml')
    writeFileSync(
      file,
      [
        'resources:',
        '  - id: web',
        '    driver: process',
        '    config:',
        '      command: [sleep, "1"]',
        '      pidfile: /tmp/x.pid',
        '      colour: red',
        '',
      ].join('\n'),
    )
    const r = await runVigil(['config', 'check', file, '--kind', 'agent'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`${file}:7:7: resources.0.config.colour: unknown key`)
  })

  test('the hub refuses a bad config at start with the same message, exit 2', async () => {
    const file = join(dir.path, 'hub-bad.yaml')
    writeFileSync(file, 'liveness:\n  lostAfterMs: -5\n')
    const r = await runVigil(['hub', '--config', file])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(new RegExp(`${file}:2:3: liveness.lostAfterMs: `))
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
