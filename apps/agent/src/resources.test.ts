import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger } from '@vigil/kit'
import { afterEach, expect, test } from 'vitest'
import { type ResourceEntry, resourceEntrySchema } from './drivers.js'
import { ResourceRunner } from './resources.js'

const log = createLogger('test', 'silent')
const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-resources-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function runner(entries: unknown[]): ResourceRunner {
  const r = new ResourceRunner(
    entries.map((e) => resourceEntrySchema.parse(e) as ResourceEntry),
    log,
    () => {},
  )
  cleanups.push(() => r.close())
  return r
}

/** A virsh that answers like libvirtd for a defined guest that is shut off, under `domainType`. */
function fakeVirsh(dir: string, domainType: string): string {
  const file = join(dir, 'virsh')
  writeFileSync(
    file,
    [
      '#!/bin/sh',
      'case "$3" in',
      '  domstate) echo "shut off (shutdown)" ;;',
      `  dumpxml) echo "<domain type='${domainType}'>" ; echo "  <name>$4</name>" ; echo "</domain>" ;;`,
      'esac',
      '',
    ].join('\n'),
    { mode: 0o755 },
  )
  return file
}

// A cluster file that mixes KVM, vSphere and Xen nodes: each node's agent says what runs its vms.
test('each vm observation carries its hypervisor, from its driver; other resources none', () => {
  const dir = tempDir()
  const passwordFile = join(dir, 'password')
  writeFileSync(passwordFile, 'secret\n', { mode: 0o600 })
  const virsh = '/bin/true' // never reached: nothing is monitored here
  const r = runner([
    { id: 'vm-kvm', driver: 'libvirt', config: { domain: 'vm-kvm', virsh } },
    { id: 'vm-libxl', driver: 'libvirt', config: { domain: 'vm-libxl', uri: 'xen:///system', virsh } },
    { id: 'vm-mock', driver: 'libvirt', config: { domain: 'vm-mock', uri: 'test:///default', virsh } },
    { id: 'vm-xl', driver: 'xl', config: { domain: 'vm-xl', configFile: '/etc/xen/vm-xl.cfg' } },
    {
      id: 'vm-esx',
      driver: 'vsphere',
      config: {
        url: 'https://vcenter.example/sdk',
        username: 'vigil',
        passwordFile,
        vm: 'vm-esx',
        host: 'esx-1',
      },
    },
    { id: 'web', driver: 'process', config: { match: { name: 'nginx' } } },
  ])
  expect(r.observations().map((o) => [o.target, o.hypervisor])).toEqual([
    ['vm-kvm', 'kvm'],
    ['vm-libxl', 'xen'],
    ['vm-mock', undefined],
    ['vm-xl', 'xen'],
    ['vm-esx', 'vsphere'],
    ['web', undefined],
  ])
  // Absent, not undefined: the observation is strict JSON on the wire.
  expect(r.observations().filter((o) => 'hypervisor' in o)).toHaveLength(4)
})

test.each([
  ['kvm', 'kvm'],
  ['qemu', 'qemu'],
])(
  "a libvirt guest's hypervisor follows its definition once a monitor read it: <domain type='%s'> is %s",
  async (domainType, hypervisor) => {
    const dir = tempDir()
    const r = runner([
      {
        id: 'vm1',
        driver: 'libvirt',
        config: { domain: 'vm1', virsh: fakeVirsh(dir, domainType), stats: false },
        monitorIntervalMs: 3_600_000,
      },
    ])
    expect(r.observations()[0]).toMatchObject({ state: 'unknown', hypervisor: 'kvm' }) // the URI's guess
    r.start()
    await expect
      .poll(() => r.observations()[0], { timeout: 10_000 })
      .toEqual({
        driver: 'libvirt',
        target: 'vm1',
        state: 'stopped',
        detail: 'shut off (shutdown)',
        hypervisor,
        ageMs: expect.any(Number),
      })
  },
)

/** A real process driver entry running a small HTTP service on `port`, and a check vouching for it. */
function webWithCheck(dir: string, port: number) {
  const app = join(import.meta.dirname, '../../../scripts/demo-app.mjs')
  return [
    {
      id: 'web',
      driver: 'process',
      config: {
        command: [process.execPath, app, 'web', '--port', String(port), '--node', 'n1'],
        pidfile: join(dir, 'web.pid'),
      },
    },
    {
      id: 'web-http',
      driver: 'check',
      monitorIntervalMs: 100,
      vouchesFor: 'web',
      config: { kind: 'http', url: `http://127.0.0.1:${port}/`, failuresBeforeCritical: 2, timeoutMs: 300 },
    },
  ]
}

async function until<T>(what: string, probe: () => T | undefined | false, ms = 10_000): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = probe()
    if (v) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const stateOf = (r: ResourceRunner, id: string) => r.observations().find((o) => o.target === id)

// ExpressCluster's monitor resources, ApplicationHA's app monitor: a check that vouches for a
// resource fails it when what it serves stops answering though its process lives, so the hub's
// recovery ladder acts; a restart gives the check a fresh grace.
test('a check vouching for a resource fails it when the service stops answering, and starts over after a restart', async () => {
  const dir = tempDir()
  const port = 20000 + Math.floor(Math.random() * 20000)
  const r = runner(webWithCheck(dir, port))
  r.start()
  // Not running here yet: the check is not probed, and says so.
  await until('the check idle', () => stateOf(r, 'web-http')?.state === 'stopped')
  expect(stateOf(r, 'web-http')?.detail).toBe('web does not run here')
  await r.run('web', 'start')
  await until(
    'web running, vouched for',
    () => stateOf(r, 'web')?.state === 'running' && stateOf(r, 'web-http')?.state === 'running',
  )

  // The service hangs: its process lives, its port answers no more.
  const pid = Number(readFileSync(join(dir, 'web.pid'), 'utf8'))
  process.kill(pid, 'SIGUSR1')
  const failed = await until('web failed by its check', () => {
    const o = stateOf(r, 'web')
    return o?.state === 'failed' ? o : undefined
  })
  expect(failed.detail).toMatch(/^web-http \(check\) failed: /)

  // The hub's restart: the check starts over, so the restarted web is running, not failed again.
  await r.run('web', 'restart')
  expect(stateOf(r, 'web')?.state).toBe('running')
  await until('the new web vouched for', () => stateOf(r, 'web-http')?.state === 'running')
  await r.run('web', 'stop')
})

// A monitor that stops answering (a hung libvirtd) leaves its last result standing: the
// observation's age is what tells the hub that the guest's count is old, not that the guest stopped.
test("an observation carries its monitor's age: it grows while the monitor hangs, and falls back when it answers", async () => {
  const dir = tempDir()
  const virsh = join(dir, 'virsh')
  const hang = join(dir, 'hang')
  writeFileSync(
    virsh,
    [
      '#!/bin/sh',
      `[ -e ${hang} ] && sleep 2`,
      'case "$3" in',
      '  domstate) echo "running (booted)" ;;',
      `  dumpxml) echo "<domain type='kvm'>" ; echo "</domain>" ;;`,
      'esac',
      '',
    ].join('\n'),
    { mode: 0o755 },
  )
  const r = runner([
    { id: 'vm1', driver: 'libvirt', monitorIntervalMs: 200, config: { domain: 'vm1', virsh } },
  ])
  r.start()
  await until('vm1 running, answered just now', () => {
    const o = stateOf(r, 'vm1')
    return o?.state === 'running' && (o.ageMs ?? Number.POSITIVE_INFINITY) < 500
  })
  writeFileSync(hang, '')
  await until(
    'vm1 still running by its last answer, an old one',
    () => (stateOf(r, 'vm1')?.ageMs ?? 0) >= 1200,
  )
  expect(stateOf(r, 'vm1')?.state).toBe('running')
  rmSync(hang)
  await until('vm1 answered again', () => (stateOf(r, 'vm1')?.ageMs ?? Number.POSITIVE_INFINITY) < 500)
})
