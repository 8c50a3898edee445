import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runAction } from '@vigil/driver-kit'
import { driverConformance } from '@vigil/driver-kit/conformance'
import { createLogger } from '@vigil/kit'
import { expect, test } from 'vitest'
import { processConfigSchema, processDriver } from './index.js'

const ctx = { log: createLogger('test', 'silent') }

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
