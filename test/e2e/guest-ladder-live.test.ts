import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { freePort } from '../harness/mosquitto.js'
import { tempDir } from '../harness/processes.js'

// ApplicationHA's recovery ladder, live, across real processes, on the lab (scripts/lab.mjs): two
// hosts (network namespaces, each with its BMC, its libvirtd and a Vigil agent), vm1 a real QEMU
// guest (TCG), and inside it (scripts/lab-guest.mjs: the guest's inside runs beside it for exactly as
// long as it lives, and dies at its reset) guest-app, a real HTTP service (scripts/demo-app.mjs web),
// watched by the guest agent's HTTP check that vouches for it. Its ladder (cluster file): restart
// in the guest once, then reset vm1, then relocate vm1. The service stops answering while its
// process lives on (SIGUSR1), three times: restarted in the guest, then its vm reset, then its vm
// relocated to the other host; a fourth time, on its new host, its ladder has started over and it
// is restarted in the guest (ApplicationHA counts per system). Each step is
// shown by the hub's API (decisions, resources) and by ground truth: who answers HTTP on each host,
// vm1's QEMU pid on each host, and the "vigil guest booted" lines of its console.

const root = join(import.meta.dirname, '..', '..')
const dir = tempDir('guest-ladder-live')
const labDir = join(dir.path, 'lab')
/** guest-app's port on the loopback of the host vm1 runs on (scripts/lab.mjs). */
const GUEST_APP_PORT = 7490
const QEMU_STEP_MS = 90_000 // a QEMU step under TCG (boot, reset, relocation) on a loaded machine

const lab = (...args: string[]) =>
  execFileSync(process.execPath, [join(root, 'scripts/lab.mjs'), ...args, '--dir', labDir], {
    encoding: 'utf8',
  })

interface LabState {
  lab: {
    bridgeNs: string
    hosts: Record<string, { netns: string; libvirt: { uri: string; qemuPidFile: string } }>
  }
  pids: Record<string, number>
  disk: Record<string, { view: string; pid: number }>
}
interface Decision {
  id: string
  at: number
  kind: string
  rule: string
  resource?: string
  node?: string
  summary: string
}
interface Resource {
  id: string
  phase: string
  node: string | null
  reason: { rule: string; why: string } | null
}

let http = ''
let state: LabState

beforeAll(async () => {
  http = `127.0.0.1:${await freePort()}`
  expect(lab('up', '--hosts', '2', '--http', http)).toContain('Vigil lab up: 2 hosts')
  state = JSON.parse(readFileSync(join(labDir, 'lab.json'), 'utf8')) as LabState
}, 240_000)

afterAll(() => {
  try {
    if (existsSync(join(labDir, 'lab.json'))) {
      // (Read again: lab.json is written as the lab comes up, even if `up` did not finish.)
      state = JSON.parse(readFileSync(join(labDir, 'lab.json'), 'utf8')) as LabState
      const hostPids = Object.values(state.lab.hosts).flatMap((h) => netnsPids(h.netns))
      const labPids = processesMentioning(labDir)
      const known = [...Object.values(state.pids), ...Object.values(state.disk ?? {}).map((d) => d.pid)]
      lab('down')
      // Nothing left behind: namespaces, mounts, and every process the lab started (all of its
      // hosts' processes, the hub, the BMCs, the disk views, the guests' insides).
      const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      const leftNs = [state.lab.bridgeNs, ...Object.values(state.lab.hosts).map((h) => h.netns)].filter(
        (ns) => namespaces.includes(ns),
      )
      const leftPids = [...new Set([...hostPids, ...labPids, ...known])].filter(alive)
      const leftMounts = readFileSync('/proc/mounts', 'utf8').includes(labDir)
      const stray = processesMentioning(labDir)
      if (leftNs.length > 0 || leftPids.length > 0 || leftMounts || stray.length > 0)
        throw new Error(
          `the lab left things behind: namespaces ${leftNs.join(', ') || 'none'}; processes ${[...leftPids, ...stray].join(', ') || 'none'}; mounts ${leftMounts}`,
        )
    }
  } finally {
    dir.remove()
  }
}, 120_000)

function netnsPids(netns: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number)
  } catch {
    return []
  }
}

/** Processes whose command line names `text` (this test's own excluded). */
function processesMentioning(text: string): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e) && Number(e) !== process.pid)
    .filter((e) => {
      try {
        return readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(text)
      } catch {
        return false
      }
    })
    .map(Number)
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ') // a zombie is dead
  } catch {
    return false
  }
}

const api = async <T>(path: string): Promise<T> =>
  (await (await fetch(`http://${http}${path}`, { signal: AbortSignal.timeout(5000) })).json()) as T
/** The hub's decisions, oldest first. */
const decisions = async () =>
  (await api<{ decisions: Decision[] }>('/api/decisions?limit=1000')).decisions.reverse()
const resource = async (id: string) =>
  (await api<{ resources: Resource[] }>('/api/resources')).resources.find((r) => r.id === id)
const rulesOf = (ds: Decision[], id: string) => ds.filter((d) => d.resource === id).map((d) => d.rule)

/** What guest-app answers on a host (the service runs on the loopback of the host vm1 runs on). */
interface Answer {
  host: string
  /** Its pid inside the guest (the guest's processes have a PID namespace of their own). */
  pid: number
  since: string
}
function answer(host: string): Answer | null {
  const netns = state.lab.hosts[host]?.netns as string
  try {
    const text = execFileSync(
      'ip',
      ['netns', 'exec', netns, 'curl', '-s', '-m', '2', `http://127.0.0.1:${GUEST_APP_PORT}/`],
      { encoding: 'utf8' },
    )
    const m = /^web on (\S+), pid (\d+), up since (\S+)$/.exec(text.trim())
    return m ? { host: m[1] as string, pid: Number(m[2]), since: m[3] as string } : null
  } catch {
    return null // nothing listens there (curl: connection refused), or no answer in time
  }
}

/**
 * guest-app's process on `host`, as this (the root) PID namespace knows it. Its pidfile holds the
 * pid inside the guest's PID namespace (2, say: never to be signalled from here), which is the last
 * field of the process's NSpid line.
 */
function guestApp(host: string): { pid: number; guestPid: number } | null {
  let guestPid: number
  try {
    guestPid = Number(readFileSync(join(labDir, `${host}-guest`, 'guest-app.pid'), 'utf8').trim())
  } catch {
    return null
  }
  for (const pid of processesMentioning(join(labDir, 'witness-guest-app.log'))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(host)) continue
      const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]?.split(/\s+/)
      if (nspid && nspid.length > 1 && Number(nspid.at(-1)) === guestPid) return { pid, guestPid }
    } catch {
      // it exited while we looked
    }
  }
  return null
}

/** The service hangs: its process lives on, its port closed (scripts/demo-app.mjs). */
function hang(host: string): number {
  const app = guestApp(host)
  if (!app) throw new Error(`no guest-app process on ${host}`)
  process.kill(app.pid, 'SIGUSR1')
  return app.pid
}

/** vm1's QEMU on a host: the pid libvirt wrote, if that process lives. */
function qemuPid(host: string): number | null {
  try {
    const pid = Number(readFileSync(state.lab.hosts[host]?.libvirt.qemuPidFile as string, 'utf8').trim())
    return alive(pid) ? pid : null
  } catch {
    return null
  }
}

/** How many times vm1's guest booted on a host (its console's "vigil guest booted" lines). */
function boots(host: string): number {
  const file = join(labDir, `${host}-vm1-console.log`)
  if (!existsSync(file)) return 0
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.includes('vigil guest booted')).length
}

/** The hosts where guest-app's witness wrote, as [host, ms] in time order (scripts/lab.mjs). */
function witness(): [string, number][] {
  const file = join(labDir, 'witness-guest-app.log')
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' '))
    .map(([h, ns]) => [h as string, Number(BigInt(ns as string) / 1_000_000n)] as [string, number])
    .sort((a, b) => a[1] - b[1])
}

/**
 * Settled on `host`: the hub has vm1 running there and guest-app running in it, the guest agent's
 * check passing again, and guest-app answering there (its pidfile's process, not another); returns
 * the answer and the process. A hang is only sent then, so each is a failure of its own.
 */
async function settledOn(host: string, what: string, timeoutMs = QEMU_STEP_MS) {
  return eventually(
    what,
    async () => {
      const vm = await resource('vm1')
      const app = await resource('guest-app')
      const check = (
        await api<{ observations: { target: string; state: string }[] }>('/api/nodes/vm1')
      ).observations.find((o) => o.target === 'guest-app-http')
      if (vm?.phase !== 'running' || vm.node !== host) return false
      if (app?.phase !== 'running' || app.node !== 'vm1' || check?.state !== 'running') return false
      const served = answer(host)
      const proc = guestApp(host)
      if (!served || served.host !== host || !proc || proc.guestPid !== served.pid) return false
      return { served, proc }
    },
    { timeoutMs, intervalMs: 250 },
  )
}

/** What the ladder's reset step left behind, for the second test. */
let afterReset: { resetAt: number; relocateAt: number; vm1Decisions: Decision[] } | null = null

test('a hung in-guest service is restarted in the guest, then its vm reset, then its vm relocated, where its ladder starts over', async () => {
  // a. guest-app answers on the host vm1 runs on (it prefers host2), and only there.
  const a = await settledOn('host2', 'guest-app answering on host2, the hub: vm1 on host2, guest-app in it')
  expect(answer('host1')).toBeNull()
  const qemu = qemuPid('host2')
  expect(qemu).not.toBeNull()
  const booted = boots('host2')
  expect(booted).toBeGreaterThanOrEqual(1)
  // A clean start: its check did not fail it while it booted (no ladder step spent).
  expect((await decisions()).filter((d) => d.rule.startsWith('ladder.'))).toEqual([])

  // b. It hangs: the check fails, the hub restarts it in the guest.
  hang('host2')
  const b = await eventually(
    'a new guest-app answering on host2',
    () => {
      const served = answer('host2')
      return served && served.since !== a.served.since ? served : undefined
    },
    { timeoutMs: 60_000, intervalMs: 250 },
  )
  let ds = await decisions()
  const restart = ds.find((d) => d.resource === 'guest-app' && d.rule === 'ladder.restart')
  expect(restart?.summary).toMatch(/guest-app-http \(check\) failed/)
  expect(restart?.node).toBe('vm1')
  expect(rulesOf(ds, 'guest-app')).not.toContain('ladder.reset-vm')
  expect(rulesOf(ds, 'guest-app')).not.toContain('ladder.relocate')
  expect(b.host).toBe('host2')
  expect(alive(a.proc.pid)).toBe(false) // the hung process was stopped, not left beside the new one
  expect(qemuPid('host2')).toBe(qemu) // the vm untouched
  expect(boots('host2')).toBe(booted)
  const bSettled = await settledOn('host2', 'the restarted guest-app settled on host2', 60_000)
  expect(bSettled.served.since).toBe(b.since)

  // c. It hangs again: past its one restart, the hub resets vm1.
  hang('host2')
  await eventually(
    'the hub resetting vm1 for guest-app',
    async () => rulesOf(await decisions(), 'guest-app').includes('ladder.reset-vm'),
    { timeoutMs: 60_000 },
  )
  await eventually('a new "vigil guest booted" line on host2', () => boots('host2') > booted, {
    timeoutMs: QEMU_STEP_MS,
  })
  const c = await settledOn('host2', 'guest-app answering again on host2 after the reset')
  expect(c.served.since > b.since).toBe(true) // a new process (in a new guest: its pid may repeat)
  expect(c.proc.pid).not.toBe(bSettled.proc.pid)
  expect(alive(bSettled.proc.pid)).toBe(false) // the old guest's processes died with it
  // ... at the reset itself (libvirt's reboot event), not when the new guest said "booted".
  expect(readFileSync(join(labDir, 'host2-guest.log'), 'utf8')).toContain('guest down: the vm was reset')
  expect(qemuPid('host2')).toBe(qemu) // a reset, not a restart of QEMU
  expect(answer('host1')).toBeNull()
  ds = await decisions()
  const reset = ds.find((d) => d.resource === 'guest-app' && d.rule === 'ladder.reset-vm')
  expect(reset?.summary).toMatch(/guest-app-http \(check\) failed/)
  expect(rulesOf(ds, 'guest-app')).not.toContain('ladder.relocate')
  expect(rulesOf(ds, 'vm1')).not.toContain('ladder.relocate-vm')

  // d. It hangs a third time: the hub relocates vm1 to host1, where guest-app answers.
  const resetAt = reset?.at as number
  hang('host2')
  await eventually(
    'the hub relocating vm1 for guest-app',
    async () => {
      const rules = await decisions()
      return (
        rulesOf(rules, 'guest-app').includes('ladder.relocate') &&
        rulesOf(rules, 'vm1').includes('ladder.relocate-vm')
      )
    },
    { timeoutMs: 60_000 },
  )
  const d = await settledOn('host1', 'guest-app answering on host1, the hub: vm1 on host1, guest-app in it')
  expect(d.served.host).toBe('host1')
  expect(answer('host2')).toBeNull()
  expect(qemuPid('host2')).toBeNull() // vm1's QEMU on host2 is gone
  expect(qemuPid('host1')).not.toBeNull()
  expect(boots('host1')).toBeGreaterThanOrEqual(1)
  ds = await decisions()
  const relocate = ds.find((d) => d.resource === 'guest-app' && d.rule === 'ladder.relocate')
  expect(relocate?.summary).toMatch(/guest-app-http \(check\) failed/)
  // Never two copies: the hung copy on host2 lived (writing its witness) until vm1 stopped there;
  // host1's first line comes after host2's last.
  const lines = witness()
  const lastOnHost2 = Math.max(...lines.filter(([h]) => h === 'host2').map(([, ms]) => ms))
  const firstOnHost1 = Math.min(...lines.filter(([h]) => h === 'host1').map(([, ms]) => ms))
  expect(firstOnHost1).toBeGreaterThan(lastOnHost2)
  afterReset = {
    resetAt,
    relocateAt: relocate?.at as number,
    vm1Decisions: ds.filter(
      (x) => x.resource === 'vm1' && x.at >= resetAt && x.at < (relocate?.at as number),
    ),
  }

  // e. A fourth hang, on host1: the ladder started over with vm1's start there (ApplicationHA
  // counts per system, a guest application's system being its vm's host): restarted in the guest,
  // vm1 neither reset nor moved.
  const restartsBefore = (await decisions()).filter(
    (x) => x.resource === 'guest-app' && x.rule === 'ladder.restart',
  ).length
  const qemuOnHost1 = qemuPid('host1')
  const sinceBefore = answer('host1')?.since
  hang('host1')
  await eventually(
    'guest-app restarted in the guest on host1',
    async () =>
      (await decisions()).filter((x) => x.resource === 'guest-app' && x.rule === 'ladder.restart').length >
      restartsBefore,
    { timeoutMs: 60_000 },
  )
  await eventually('a new guest-app answering on host1', () => {
    const served = answer('host1')
    return served !== null && served.since !== sinceBefore ? served : undefined
  })
  const vm = await resource('vm1')
  expect(vm?.phase).toBe('running')
  expect(vm?.node).toBe('host1')
  expect(qemuPid('host1')).toBe(qemuOnHost1)
  ds = await decisions()
  // An application's fault throughout: no host was fenced.
  expect(ds.filter((x) => x.kind === 'fence' || x.rule.startsWith('fence.'))).toEqual([])
}, 600_000)

// Found by this test: when a guest-app's ladder reset its vm, the vm's guest heartbeat detector was
// not re-armed (as it is after the vm's own reset), so the guest's silence while it booted again was
// taken for a hang: vm1 was reset a second time, cutting the first boot short, and each such reset
// cost vm1 a step of its own ladder. Scenario guest-app-ladder-slow-boot-starts-over-on-new-host.
test('the ladder resetting vm1 for guest-app is not taken for a hang of vm1', (ctx) => {
  if (!afterReset) ctx.skip() // the ladder test did not get that far: nothing to say here
  const { vm1Decisions } = afterReset as NonNullable<typeof afterReset>
  expect(
    vm1Decisions.filter((d) => d.rule.startsWith('ladder.')).map((d) => `${d.rule}: ${d.summary}`),
  ).toEqual([])
})
