import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runAction } from '@vigil/driver-kit'
import { driverConformance } from '@vigil/driver-kit/conformance'
import { createLogger } from '@vigil/kit'
import { describe, expect, test } from 'vitest'
import { ocfConfigSchema, ocfDriver, ocfDuration } from './index.js'

const log = createLogger('test', 'silent')
const ctx = { log }

// Debian's resource-agents: the Dummy agent keeps its "running" state in a file.
driverConformance(ocfDriver, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-ocf-'))
  const state = join(dir, 'dummy.state')
  // A private OCF root whose Dummy hangs: for the timeout check.
  const hangRoot = join(dir, 'ocf')
  mkdirSync(join(hangRoot, 'resource.d', 'test'), { recursive: true })
  writeFileSync(join(hangRoot, 'resource.d', 'test', 'Hang'), '#!/bin/sh\nexec sleep 30\n')
  chmodSync(join(hangRoot, 'resource.d', 'test', 'Hang'), 0o755)
  return {
    config: { agent: 'heartbeat:Dummy', params: { state } },
    breakIt: async () => rmSync(state, { force: true }),
    invalid: [
      { config: { agent: 'Dummy' }, key: 'agent' },
      { config: { agent: 'heartbeat:Dummy', params: { 'bad-name': 1 } }, key: 'params.bad-name' },
      { config: { agent: 'heartbeat:Dummy', params: { state: 'a\nb' } }, key: 'params.state' },
      { config: { agent: 'heartbeat:Dummy', timeout: 5 }, key: 'timeout' },
    ],
    hangingStart: {
      agent: 'test:Hang',
      ocfRoot: hangRoot,
      timeoutsMs: { start: 20_000, stop: 1000, monitor: 1000 },
    },
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  }
})

// A second real agent from resource-agents: `anything` runs any program as a daemon (pidfile, logs).
describe('ocf:heartbeat:anything runs a real daemon', { timeout: 30_000 }, () => {
  test('start runs it, stop stops it, losing it is a failure; its meta-data timeouts are honoured', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-ocf-anything-'))
    const pidfile = join(dir, 'app.pid')
    const d = ocfDriver.create(
      ocfConfigSchema.parse({
        agent: 'heartbeat:anything',
        params: { binfile: '/bin/sleep', cmdline_options: '600', pidfile },
      }),
      { resourceId: 'sleeper', log },
    )
    expect(d.timeouts).toMatchObject({ start: 20_000, stop: 20_000, monitor: 20_000 }) // from its meta-data
    await runAction(d, 'start', ctx)
    const { readFileSync } = await import('node:fs')
    const pid = Number(readFileSync(pidfile, 'utf8'))
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'running' })
    await runAction(d, 'stop', ctx)
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
    // Broken behind its back (its pidfile gone; a killed child would linger as a zombie on these
    // machines, whose PID 1 does not reap): not running although started is a failure.
    await runAction(d, 'start', ctx)
    const second = Number(readFileSync(pidfile, 'utf8'))
    expect(second).not.toBe(pid)
    rmSync(pidfile)
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'failed' })
    process.kill(second, 'SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })

  test.each([
    ['20s', 20_000],
    ['2m', 120_000],
    ['500ms', 500],
    ['90', 90_000],
    ['soon', null],
  ])('OCF duration %s is %s ms', (text, ms) => {
    expect(ocfDuration(text)).toBe(ms)
  })
})

describe('ocf exit codes', () => {
  const agentDir = mkdtempSync(join(tmpdir(), 'vigil-ocf-codes-'))
  mkdirSync(join(agentDir, 'resource.d', 'test'), { recursive: true })
  /** An agent that exits with a fixed code for every action. */
  const exiting = (code: number) => {
    const name = `Exit${code}`
    writeFileSync(
      join(agentDir, 'resource.d', 'test', name),
      `#!/bin/sh\necho "exit ${code}" >&2\nexit ${code}\n`,
    )
    chmodSync(join(agentDir, 'resource.d', 'test', name), 0o755)
    return ocfDriver.create(ocfConfigSchema.parse({ agent: `test:${name}`, ocfRoot: agentDir }), {
      resourceId: 'r',
      log,
    })
  }

  test.each([
    [1, 'transient'],
    [2, 'config'],
    [3, 'config'],
    [4, 'local'],
    [5, 'local'],
    [6, 'config'],
  ])('start exiting %i is a %s error', async (code, kind) => {
    await expect(runAction(exiting(code), 'start', ctx)).rejects.toMatchObject({ kind })
  })

  test.each([
    [0, 'running'],
    [7, 'stopped'],
    [8, 'running'],
    [9, 'failed'],
    [1, 'failed'],
  ])('monitor exiting %i is %s', async (code, state) => {
    expect(await runAction(exiting(code), 'monitor', ctx)).toMatchObject({ state })
  })

  test('an agent not installed on this host is a local error', async () => {
    const d = ocfDriver.create(ocfConfigSchema.parse({ agent: 'nobody:Nothing' }), { resourceId: 'r', log })
    await expect(runAction(d, 'start', ctx)).rejects.toMatchObject({ kind: 'local' })
  })

  test('parameters reach the agent as OCF_RESKEY_*', async () => {
    const out = join(agentDir, 'env.out')
    writeFileSync(
      join(agentDir, 'resource.d', 'test', 'Env'),
      `#!/bin/sh\necho "$OCF_RESKEY_ip $OCF_RESOURCE_INSTANCE $OCF_RESKEY_CRM_meta_timeout" > ${out}\nexit 7\n`,
    )
    chmodSync(join(agentDir, 'resource.d', 'test', 'Env'), 0o755)
    const d = ocfDriver.create(
      ocfConfigSchema.parse({ agent: 'test:Env', ocfRoot: agentDir, params: { ip: '10.0.0.5' } }),
      { resourceId: 'vip', log },
    )
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
    const { readFileSync } = await import('node:fs')
    expect(readFileSync(out, 'utf8').trim()).toBe('10.0.0.5 vip 20000')
  })
})
