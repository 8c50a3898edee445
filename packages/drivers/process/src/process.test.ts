import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runAction } from '@vigil/driver-kit'
import { driverConformance } from '@vigil/driver-kit/conformance'
import { createLogger, rejectedKeys } from '@vigil/kit'
import { describe, expect, test } from 'vitest'
import { processConfigSchema, processDriver } from './index.js'

const log = createLogger('test', 'silent')
const ctx = { log }

function target(mode: 'supervised' | 'daemon') {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-process-'))
    const pidfile = join(dir, 'app.pid')
    // A daemon that forks: a shell starts a background sleep and writes its pid, then exits.
    const daemonStart = ['sh', '-c', `sleep 300 & echo $! > ${pidfile}`]
    return {
      config:
        mode === 'supervised' ? { command: ['sleep', '300'], pidfile } : { start: daemonStart, pidfile },
      breakIt: async () => {
        process.kill(Number(readFileSync(pidfile, 'utf8')), 'SIGKILL')
        await new Promise((r) => setTimeout(r, 100))
      },
      invalid: [
        { config: { pidfile }, key: 'command' },
        { config: { command: ['x'], start: ['y'], pidfile }, key: 'command' },
        { config: { command: ['sleep', '1'] }, key: 'pidfile' },
        { config: { command: ['sleep', '1'], pidfile, colour: 'red' }, key: 'colour' },
      ],
      hangingStart: { start: ['sleep', '30'], pidfile: join(dir, 'never.pid') },
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    }
  }
}

driverConformance(processDriver, target('supervised'))
driverConformance({ ...processDriver, name: 'process (daemon with pidfile)' }, target('daemon'))

test('a supervised process that dies is noticed by event, without polling', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-process-'))
  const pidfile = join(dir, 'app.pid')
  const d = processDriver.create(processConfigSchema.parse({ command: ['sleep', '300'], pidfile }), {
    resourceId: 'x',
    log: ctx.log,
  })
  let changes = 0
  d.onChange?.(() => changes++)
  await runAction(d, 'start', ctx)
  process.kill(Number(readFileSync(pidfile, 'utf8')), 'SIGKILL')
  await new Promise((r) => setTimeout(r, 100))
  expect(changes).toBe(1)
  expect((await runAction(d, 'monitor', ctx))?.state).toBe('failed')
  rmSync(dir, { recursive: true, force: true })
})

test('a command that does not exist fails the start as local (another host may have it)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-process-'))
  const d = processDriver.create(
    processConfigSchema.parse({ command: ['/no/such/binary'], pidfile: join(dir, 'p') }),
    { resourceId: 'x', log: ctx.log },
  )
  await expect(runAction(d, 'start', ctx)).rejects.toMatchObject({ kind: 'local' })
  rmSync(dir, { recursive: true, force: true })
})

test("monitor reports the running process's pid and memory", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-process-'))
  const d = processDriver.create(
    processConfigSchema.parse({ command: ['sleep', '300'], pidfile: join(dir, 'p') }),
    { resourceId: 'x', log: ctx.log },
  )
  await runAction(d, 'start', ctx)
  const r = await runAction(d, 'monitor', ctx)
  expect(r?.metrics?.rssBytes).toBeGreaterThan(0)
  await runAction(d, 'stop', ctx)
  rmSync(dir, { recursive: true, force: true })
})

describe('a pidfile whose pid the kernel gave to another process', () => {
  const make = (pidfile: string) =>
    processDriver.create(processConfigSchema.parse({ command: ['sleep', '300'], pidfile }), {
      resourceId: 'x',
      log,
    })

  test('a restarted agent adopts the process it started: same pid, same process', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-process-'))
    const pidfile = join(dir, 'app.pid')
    await runAction(make(pidfile), 'start', ctx)
    const again = make(pidfile) // a new agent: nothing in memory, only what is on disk
    expect(await runAction(again, 'monitor', ctx)).toMatchObject({ state: 'running' })
    await runAction(again, 'stop', ctx)
    expect(existsSync(pidfile)).toBe(false)
    expect(existsSync(`${pidfile}.identity`)).toBe(false)
    rmSync(dir, { recursive: true, force: true })
  })

  // After a crash (or a power cycle of the host's namespace), the pid in the pidfile can belong to an
  // unrelated process by the time an agent looks again: pids wrap at 32768 by default. On disk that
  // looks like this: the pidfile and the identity recorded for it name the same pid, but the live
  // process with that pid started at another time. Seen in the chaos run: the new agent reported
  // the resource "running", the hub stopped "the extra copy", and the stop killed a stranger.
  test('is failed, not running, and a stop leaves that process alone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-process-'))
    const pidfile = join(dir, 'app.pid')
    const stranger = spawn('sleep', ['300'], { stdio: 'ignore', detached: true })
    const pid = stranger.pid as number
    await new Promise((r) => stranger.once('spawn', r))
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    writeFileSync(pidfile, `${pid}\n`)
    writeFileSync(`${pidfile}.identity`, JSON.stringify({ pid, identity: `${bootId} 1` }))
    try {
      const d = make(pidfile)
      expect(await runAction(d, 'monitor', ctx)).toMatchObject({
        state: 'failed',
        detail: `pid ${pid} from ${pidfile} is not running (the pid now belongs to another process)`,
      })
      await runAction(d, 'stop', ctx)
      expect(() => process.kill(pid, 0)).not.toThrow() // the stranger still runs
      expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
      await runAction(d, 'start', ctx) // and the resource can be started again
      const started = Number(readFileSync(pidfile, 'utf8'))
      expect(started).not.toBe(pid)
      expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'running', detail: `pid ${started}` })
      await runAction(d, 'stop', ctx)
    } finally {
      stranger.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('processes found by name and command line (not started by Vigil)', () => {
  test('running while enough match, failed when they are gone; the agent itself never matches', async () => {
    // A command line no other process has: sleep's argument made unique.
    const seconds = `3000.${process.pid}`
    const marker = `sleep ${seconds.replace('.', '\\.')}`
    const children = [0, 1].map(() => spawn('sleep', [seconds], { stdio: 'ignore', detached: true }))
    await new Promise((r) => setTimeout(r, 200))
    const make = (match: object) =>
      processDriver.create(processConfigSchema.parse({ match }), { resourceId: 'watched', log })
    const both = await runAction(make({ cmdline: `^${marker}` }), 'monitor', ctx)
    expect(both).toMatchObject({ state: 'running', metrics: { count: 2 } })
    expect(
      await runAction(make({ name: 'sleep', cmdline: `^${marker}`, minCount: 3 }), 'monitor', ctx),
    ).toMatchObject({
      state: 'failed',
      metrics: { count: 2 },
    })
    for (const c of children) process.kill(c.pid as number, 'SIGKILL')
    await new Promise((r) => setTimeout(r, 200))
    expect(await runAction(make({ cmdline: `^${marker}` }), 'monitor', ctx)).toMatchObject({
      state: 'failed',
      detail: 'no matching process',
    })
  })

  test.each([
    [{ match: {} }, 'match'],
    [{ match: { cmdline: '(' } }, 'match.cmdline'],
    [{ match: { name: 'sshd' }, command: ['x'] }, 'command'],
  ])('invalid %j names %s', (config, key) => {
    expect(rejectedKeys(processConfigSchema, config)).toContain(key)
  })
})
