import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Driver, runAction } from '@vigil/driver-kit'
import { driverConformance } from '@vigil/driver-kit/conformance'
import { createLogger } from '@vigil/kit'
import { afterAll, describe, expect, test } from 'vitest'
import { xlConfigSchema, xlDriver } from './index.js'

/*
 * No Xen here: this machine has no hypervisor, so these tests run the driver against
 * fixtures/fake-xl.mjs, a stand-in that keeps each "host"'s domains in a directory and answers in
 * xl's formats. They check the driver's logic, not xl's real behaviour (see the README).
 */

const log = createLogger('test', 'silent')
const ctx = { log }
const FAKE_XL = fileURLToPath(new URL('./fixtures/fake-xl.mjs', import.meta.url))
const root = mkdtempSync(join(tmpdir(), 'vigil-xl-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

interface FakeDomain {
  name: string
  domid: number
  state: string
  type: string
  resets: number
  boots: number
}

/** A host of the fake: its `xl` program, its config files, and its domains as the fake keeps them. */
function fakeHost(name: string) {
  const dir = join(root, name)
  mkdirSync(dir, { recursive: true })
  const xl = join(dir, 'xl')
  writeFileSync(xl, `#!/bin/sh\nFAKE_XL_HOST='${dir}' exec '${process.execPath}' '${FAKE_XL}' "$@"\n`, {
    mode: 0o755,
  })
  const file = (domain: string) => join(dir, `${domain}.domain.json`)
  return {
    xl,
    /** An xl.cfg(5) file for `domain` (`extra` lines appended). */
    configFile(domain: string, extra = '') {
      const path = join(dir, `${domain}.cfg`)
      writeFileSync(path, `# ${domain}\nname = "${domain}"\nmemory = 256\nvcpus = 2\n${extra}\n`)
      return path
    },
    domain(domain: string): FakeDomain | undefined {
      return existsSync(file(domain)) ? JSON.parse(readFileSync(file(domain), 'utf8')) : undefined
    },
    setDomain(d: FakeDomain) {
      writeFileSync(file(d.name), JSON.stringify(d))
    },
    /** The guest crashes: xl destroys it (on_crash="destroy", the default) or keeps it crashed. */
    crash(domain: string) {
      const d = this.domain(domain) as FakeDomain & { onCrash: string }
      if (d.onCrash === 'preserve') this.setDomain({ ...d, state: '---sc-' })
      else rmSync(file(domain))
    },
    vanish(domain: string) {
      rmSync(file(domain), { force: true })
    },
    /** The xl subcommands run on this host, oldest first. */
    calls(): string[] {
      return readFileSync(join(dir, 'calls.log'), 'utf8').trim().split('\n')
    },
  }
}

let domains = 0
const newDomain = () => `vm${++domains}`

driverConformance(xlDriver, async () => {
  const host = fakeHost('conformance')
  const domain = newDomain()
  const configFile = host.configFile(domain)
  const hang = join(root, 'xl-hangs')
  writeFileSync(hang, '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 })
  return {
    // A short restart grace: a domain gone for good is failed after it (the default waits 5 s).
    config: { domain, configFile, xl: host.xl, restartGraceMs: 300 },
    // A crash with xl's default on_crash="destroy": the domain is simply gone.
    breakIt: async () => host.crash(domain),
    invalid: [
      { config: { domain: 'bad name!', configFile }, key: 'domain' },
      { config: { domain, configFile: 'relative.cfg' }, key: 'configFile' },
      { config: { domain }, key: 'configFile' },
      { config: { domain, configFile, shutdown: 5 }, key: 'shutdown' },
    ],
    hangingStart: { domain, configFile, xl: hang, callTimeoutMs: 1000 },
  }
})

describe('xl driver against the fake xl', { timeout: 20_000 }, () => {
  const host = fakeHost('node-a')
  const make = (domain: string, extra: object = {}): Driver =>
    xlDriver.create(
      xlConfigSchema.parse({
        domain,
        configFile: host.configFile(domain),
        xl: host.xl,
        restartGraceMs: 300,
        ...extra,
      }),
      { resourceId: 'vm', log },
    )

  test('a running domain reports its counters; a paused one is "paused", and start unpauses it', async () => {
    const domain = newDomain()
    const d = make(domain)
    await runAction(d, 'start', ctx)
    const running = await runAction(d, 'monitor', ctx)
    expect(running).toMatchObject({
      state: 'running',
      metrics: { vcpus: 2, memoryCurrentBytes: 256 * 1024 * 1024 },
    })
    const { domid } = host.domain(domain) as FakeDomain
    host.setDomain({ ...(host.domain(domain) as FakeDomain), state: '--p---' }) // xl pause behind its back
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'paused' })
    await runAction(d, 'start', ctx)
    expect(host.domain(domain)).toMatchObject({ domid, state: '-b----' }) // the same domain, not a second
    await runAction(d, 'stop', ctx)
  })

  test('suspend and resume: each idempotent, a suspended domain is "paused"', async () => {
    const domain = newDomain()
    const d = make(domain)
    await expect(runAction(d, 'suspend', ctx)).rejects.toMatchObject({ kind: 'local' }) // not running
    await runAction(d, 'start', ctx)
    await runAction(d, 'suspend', ctx)
    await runAction(d, 'suspend', ctx)
    expect(host.domain(domain)?.state).toBe('--p---')
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'paused' })
    await runAction(d, 'resume', ctx)
    await runAction(d, 'resume', ctx)
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'running' })
    expect(host.calls().filter((c) => c === `pause ${domain}` || c === `unpause ${domain}`)).toEqual([
      `pause ${domain}`,
      `unpause ${domain}`,
    ])
    await runAction(d, 'stop', ctx)
  })

  test('stop asks the guest first (shutdown -w -F); one that ignores it is destroyed after the timeout', async () => {
    const polite = newDomain()
    const p = make(polite)
    await runAction(p, 'start', ctx)
    await runAction(p, 'stop', ctx)
    expect(host.domain(polite)).toBeUndefined()
    expect(host.calls()).toContain(`shutdown -w -F ${polite}`)
    expect(host.calls()).not.toContain(`destroy ${polite}`)

    const deaf = newDomain()
    const d = xlDriver.create(
      xlConfigSchema.parse({
        domain: deaf,
        configFile: host.configFile(deaf, '# fake-xl: ignores-shutdown'),
        xl: host.xl,
        // Long enough for the fake xl (a Node.js program) to start and note the request on a
        // loaded machine: 500 ms was cut off before it had (seen once in CI).
        shutdownTimeoutMs: 2500,
      }),
      { resourceId: 'vm', log },
    )
    await runAction(d, 'start', ctx)
    await runAction(d, 'stop', ctx)
    expect(host.domain(deaf)).toBeUndefined()
    expect(host.calls()).toEqual(expect.arrayContaining([`shutdown -w -F ${deaf}`, `destroy ${deaf}`]))
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
  })

  test('a crash kept by on_crash="preserve" is failed; stop destroys it and it is stopped', async () => {
    const domain = newDomain()
    const d = xlDriver.create(
      xlConfigSchema.parse({
        domain,
        configFile: host.configFile(domain, 'on_crash = "preserve"'),
        xl: host.xl,
      }),
      { resourceId: 'vm', log },
    )
    await runAction(d, 'start', ctx)
    host.crash(domain)
    const crashed = await runAction(d, 'monitor', ctx)
    expect(crashed).toMatchObject({ state: 'failed' })
    expect(crashed?.detail).toMatch(/crashed/)
    await runAction(d, 'stop', ctx)
    expect(host.domain(domain)).toBeUndefined()
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
  })

  test('a domain gone before this driver ever saw it alive is stopped (xl keeps no trace of why)', async () => {
    const domain = newDomain()
    await runAction(make(domain), 'start', ctx)
    host.vanish(domain)
    // A new driver (an agent restarted) knows nothing of the domain it never saw.
    expect(await runAction(make(domain), 'monitor', ctx)).toMatchObject({ state: 'stopped' })
  })

  test("a guest's own reboot (gone, then paused under a new id while xl rebuilds it) is not a failure", async () => {
    const domain = newDomain()
    const d = make(domain, { restartGraceMs: 10_000 })
    await runAction(d, 'start', ctx)
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'running' })
    const old = host.domain(domain) as FakeDomain
    host.vanish(domain)
    const rebuilt = setTimeout(() => host.setDomain({ ...old, domid: old.domid + 100, state: '--p---' }), 300)
    const unpaused = setTimeout(
      () => host.setDomain({ ...old, domid: old.domid + 100, state: '-b----' }),
      600,
    )
    const seen = await runAction(d, 'monitor', ctx)
    clearTimeout(rebuilt)
    clearTimeout(unpaused)
    expect(seen).toMatchObject({ state: 'running', metrics: { domid: old.domid + 100 } })
    await runAction(d, 'stop', ctx)
  })

  test('reset: an HVM guest gets its reset line (xl trigger), a PV guest is power-cycled', async () => {
    const hvm = newDomain()
    const h = xlDriver.create(
      xlConfigSchema.parse({ domain: hvm, configFile: host.configFile(hvm, 'type = "hvm"'), xl: host.xl }),
      { resourceId: 'vm', log },
    )
    await runAction(h, 'start', ctx)
    const before = host.domain(hvm) as FakeDomain
    await runAction(h, 'reset', ctx)
    expect(host.calls()).toContain(`trigger ${hvm} reset`)
    expect(host.domain(hvm)).toMatchObject({ domid: before.domid, resets: 1 })
    await runAction(h, 'stop', ctx)

    const pv = newDomain()
    const p = make(pv)
    await runAction(p, 'start', ctx)
    const pvBefore = host.domain(pv) as FakeDomain
    await runAction(p, 'reset', ctx)
    expect(host.calls()).not.toContain(`trigger ${pv} reset`)
    const after = host.domain(pv) as FakeDomain
    expect(after.domid).not.toBe(pvBefore.domid)
    expect(await runAction(p, 'monitor', ctx)).toMatchObject({ state: 'running' })
    await runAction(p, 'stop', ctx)
    await expect(runAction(p, 'reset', ctx)).rejects.toMatchObject({ kind: 'local' }) // not running
  })

  test('reboot: xl reboot -F, and the domain runs on under a new id', async () => {
    const domain = newDomain()
    const d = make(domain)
    await runAction(d, 'start', ctx)
    await runAction(d, 'monitor', ctx)
    await runAction(d, 'reboot', ctx)
    expect(host.calls()).toContain(`reboot -F ${domain}`)
    expect(host.domain(domain)?.boots).toBe(2)
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'running' })
    await runAction(d, 'stop', ctx)
  })

  test('migrate moves the domain to the target host; a retry is done; a bad target is a config error', async () => {
    const target = fakeHost('node-b')
    const domain = newDomain()
    const d = make(domain, { migrateHost: '{node}' })
    await runAction(d, 'start', ctx)
    await runAction(d, 'migrate', { ...ctx, target: 'node-b' })
    expect(host.domain(domain)).toBeUndefined()
    expect(target.domain(domain)?.state).toBe('-b----')
    // Gone from here because it moved, not because it failed.
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
    await runAction(d, 'migrate', { ...ctx, target: 'node-b' }) // a retried command: nothing to do
    expect(
      host.calls().filter((c) => c.startsWith('migrate') && c.endsWith(`${domain} node-b`)),
    ).toHaveLength(1)
    await expect(runAction(d, 'migrate', { ...ctx, target: 'bad name!' })).rejects.toMatchObject({
      kind: 'config',
    })
    await expect(runAction(d, 'migrate', { ...ctx, target: 'node-c' })).rejects.toMatchObject({
      kind: 'local',
    })

    // A paused domain arrives paused; a host ssh cannot reach is a transient error, and it stays here.
    const paused = newDomain()
    const p = make(paused)
    await runAction(p, 'start', ctx)
    await expect(runAction(p, 'migrate', { ...ctx, target: 'nowhere' })).rejects.toMatchObject({
      kind: 'transient',
    })
    expect(await runAction(p, 'monitor', ctx)).toMatchObject({ state: 'running' })
    await runAction(p, 'suspend', ctx)
    await runAction(p, 'migrate', { ...ctx, target: 'node-b' })
    expect(target.domain(paused)?.state).toBe('--p---')
  })

  test("a failed migration's leftover (<domain>--migratedaway) is failed until stop destroys it", async () => {
    const domain = newDomain()
    const d = make(domain)
    await runAction(d, 'start', ctx)
    const running = host.domain(domain) as FakeDomain
    host.vanish(domain)
    host.setDomain({ ...running, name: `${domain}--migratedaway`, state: '---ss-' })
    const seen = await runAction(d, 'monitor', ctx)
    expect(seen).toMatchObject({ state: 'failed' })
    expect(seen?.detail).toMatch(/migratedaway/)
    await runAction(d, 'stop', ctx)
    expect(host.domain(`${domain}--migratedaway`)).toBeUndefined()
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'stopped' })
  })

  test('start: a config file missing here is local, one naming another domain is config, xl missing is local', async () => {
    const domain = newDomain()
    const missing = xlDriver.create(
      xlConfigSchema.parse({ domain, configFile: join(root, 'nowhere.cfg'), xl: host.xl }),
      { resourceId: 'vm', log },
    )
    await expect(runAction(missing, 'start', ctx)).rejects.toMatchObject({ kind: 'local' })

    const other = newDomain()
    const wrong = xlDriver.create(
      xlConfigSchema.parse({ domain, configFile: host.configFile(other), xl: host.xl }),
      { resourceId: 'vm', log },
    )
    await expect(runAction(wrong, 'start', ctx)).rejects.toMatchObject({ kind: 'config' })
    expect(host.domain(other)).toBeUndefined()

    const noXl = make(domain, { xl: join(root, 'no-such-xl') })
    await expect(runAction(noXl, 'monitor', ctx)).rejects.toMatchObject({ kind: 'local' })
  })

  test('a create that loses a race for the name (xl or an operator created it first) is a start that worked', async () => {
    const domain = newDomain()
    // An xl whose create finds the domain just created by someone else: libxl's "already exists".
    const racing = join(root, 'xl-racing')
    writeFileSync(
      racing,
      `#!/bin/sh\nif [ "$1" = create ]; then '${host.xl}' "$@" 2>/dev/null; fi\nexec '${host.xl}' "$@"\n`,
      {
        mode: 0o755,
      },
    )
    const d = make(domain, { xl: racing })
    await runAction(d, 'start', ctx)
    expect(host.calls().filter((c) => c.startsWith('create') && c.includes(domain))).toHaveLength(2)
    expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'running' })
    await runAction(d, 'stop', ctx)
  })
})
