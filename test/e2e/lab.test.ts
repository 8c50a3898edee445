import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { freePort } from '../harness/mosquitto.js'
import { tempDir } from '../harness/processes.js'

const root = join(import.meta.dirname, '..', '..')
const dir = tempDir('lab')
const labDir = join(dir.path, 'lab')
const run = (...args: string[]) =>
  execFileSync(process.execPath, [join(root, 'scripts/lab.mjs'), ...args, '--dir', labDir], {
    encoding: 'utf8',
  })
afterAll(() => {
  if (existsSync(join(labDir, 'lab.json'))) run('down')
  dir.remove()
})

// The lab a person uses: one command brings up hosts (namespaces), their BMCs, agents and the hub,
// detached; a crash is fenced by the host's BMC and its application moves; one command tears it all
// down by PID, leaving no namespace and no process behind.
test('the lab comes up, fails a host over through its BMC, and goes down leaving nothing behind', async () => {
  const http = `127.0.0.1:${await freePort()}`
  expect(run('up', '--hosts', '2', '--http', http)).toContain('Vigil lab up: 2 hosts')
  const state = JSON.parse(readFileSync(join(labDir, 'lab.json'), 'utf8')) as {
    lab: { bridgeNs: string; hosts: Record<string, { netns: string }> }
    pids: Record<string, number>
  }
  const api = async <T>(path: string) => (await (await fetch(`http://${http}${path}`)).json()) as T
  const witness = () =>
    existsSync(join(labDir, 'witness-web.log')) ? readFileSync(join(labDir, 'witness-web.log'), 'utf8') : ''
  await eventually('web running on host1', () => witness().includes('host1 '), { timeoutMs: 30_000 })

  const host1 = state.lab.hosts.host1?.netns as string
  for (const pid of execFileSync('ip', ['netns', 'pids', host1], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean))
    process.kill(Number(pid), 'SIGKILL')
  await eventually('web running on host2', () => witness().includes('host2 '), { timeoutMs: 30_000 })
  const { history } = await api<{ history: { node: string; device: string; outcome: string }[] }>(
    '/api/fence',
  )
  expect(history[0]).toMatchObject({ node: 'host1', device: 'bmc-host1', outcome: 'off' })

  expect(run('down')).toContain('Vigil lab down')
  const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
  for (const ns of [state.lab.bridgeNs, ...Object.values(state.lab.hosts).map((h) => h.netns)])
    expect(namespaces).not.toContain(ns)
  for (const pid of Object.values(state.pids)) {
    const alive = (() => {
      try {
        process.kill(pid, 0)
        return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ') // zombies are dead
      } catch {
        return false
      }
    })()
    expect(alive, `pid ${pid}`).toBe(false)
  }
  expect(existsSync(labDir)).toBe(false)
})
