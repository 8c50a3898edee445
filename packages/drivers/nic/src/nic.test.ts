import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runAction } from '@vigil/driver-kit'
import { monitorConformance } from '@vigil/driver-kit/conformance'
import { createLogger, rejectedKeys } from '@vigil/kit'
import { NetnsHost } from '@vigil/testbed'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { nicConfigSchema, nicDriver, parseBonding } from './index.js'

const log = createLogger('test', 'silent')
const ctx = { log }

// Real veth links: one up, one whose link is down. Its monitor reads sysfs only: it cannot block.
monitorConformance(
  nicDriver,
  async () => {
    const up = NetnsHost.create()
    const down = NetnsHost.create()
    down.link(false)
    return {
      healthy: { interface: up.outerLink, events: false },
      broken: { interface: down.outerLink, events: false },
      invalid: [
        { config: { interface: up.outerLink, maxCarrierChanges: 0 }, key: 'maxCarrierChanges' },
        { config: { interface: up.outerLink, speed: 10 }, key: 'speed' },
      ],
      cleanup: async () => {
        up.destroy()
        down.destroy()
      },
    }
  },
  { monitorCanBlock: false },
)

// The root end of a real veth pair whose other end lives in a network namespace.
describe('nic driver on a real veth link', () => {
  let host: NetnsHost
  let iface: string
  beforeAll(() => {
    host = NetnsHost.create()
    iface = host.outerLink
  })
  afterAll(() => host.destroy())
  const make = (extra: object = {}) =>
    nicDriver.create(nicConfigSchema.parse({ interface: iface, ...extra }), { resourceId: 'nic', log })

  test('an up link with carrier is running, with its counters', async () => {
    const r = await runAction(make(), 'monitor', ctx)
    expect(r).toMatchObject({ state: 'running', metrics: { up: 1, carrier: 1, degraded: 0 } })
    expect(r?.metrics?.rx_errors).toBe(0)
  })

  test('link down is failed, and the change is noticed by the netlink event at once', async () => {
    const d = make()
    let changes = 0
    d.onChange?.(() => changes++)
    await new Promise((r) => setTimeout(r, 300)) // ip monitor is listening
    host.link(false)
    try {
      const until = Date.now() + 5000
      while (changes === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
      expect(changes).toBeGreaterThan(0)
      expect(await runAction(d, 'monitor', ctx)).toMatchObject({ state: 'failed', metrics: { up: 0 } })
    } finally {
      host.link(true)
      await d.close?.()
    }
  })

  test('a link that flaps more than allowed is degraded, not failed', async () => {
    const d = make({ maxCarrierChanges: 2 })
    await runAction(d, 'monitor', ctx)
    for (let i = 0; i < 3; i++) {
      host.link(false)
      host.link(true)
    }
    await new Promise((r) => setTimeout(r, 200))
    const r = await runAction(d, 'monitor', ctx)
    expect(r).toMatchObject({ state: 'running', metrics: { degraded: 1 } })
    expect(r?.detail).toContain('flapping')
  })

  test('an interface that does not exist is failed, naming it', async () => {
    expect(await runAction(make({ interface: 'nosuch0' }), 'monitor', ctx)).toMatchObject({
      state: 'failed',
      detail: 'nosuch0: no such interface',
    })
  })
})

// No bonding module on these machines: a bond is checked against the kernel's own text format.
const BOND = `Ethernet Channel Bonding Driver: v5.10.0

Bonding Mode: fault-tolerance (active-backup)
Primary Slave: None
Currently Active Slave: eth1
MII Status: up
MII Polling Interval (ms): 100

Slave Interface: eth1
MII Status: up
Speed: 1000 Mbps
Link Failure Count: 0

Slave Interface: eth2
MII Status: down
Speed: Unknown
Link Failure Count: 1
`

describe('bonds', () => {
  test('slaves and their MII status are parsed', () => {
    expect(parseBonding(BOND)).toEqual([
      { name: 'eth1', up: true },
      { name: 'eth2', up: false },
    ])
  })

  test.each([
    [undefined, 'running', 1],
    [1, 'running', 0],
  ])(
    'a bond with a slave down and minSlavesUp %s is %s (degraded %i)',
    async (minSlavesUp, state, degraded) => {
      const bondingDir = mkdtempSync(join(tmpdir(), 'vigil-bond-'))
      const sys = mkdtempSync(join(tmpdir(), 'vigil-sys-'))
      const { mkdirSync } = await import('node:fs')
      mkdirSync(join(sys, 'bond0'))
      writeFileSync(join(sys, 'bond0', 'operstate'), 'up\n')
      writeFileSync(join(sys, 'bond0', 'carrier'), '1\n')
      writeFileSync(join(bondingDir, 'bond0'), BOND)
      const d = nicDriver.create(
        nicConfigSchema.parse({
          interface: 'bond0',
          bondingDir,
          sysClassNet: sys,
          minSlavesUp,
          events: false,
        }),
        { resourceId: 'bond', log },
      )
      const r = await runAction(d, 'monitor', ctx)
      expect(r).toMatchObject({ state, metrics: { slaves: 2, slaves_up: 1, degraded } })
      if (degraded) expect(r?.detail).toBe('bond0 degraded: bond slave eth2 down (1 of 2 up)')
    },
  )
})

test.each([
  [{ interface: 'this-name-is-far-too-long' }, 'interface'],
  [{ interface: 'eth0', slaves: 2 }, 'slaves'],
  [{ interface: 'eth0', minSlavesUp: 0 }, 'minSlavesUp'],
])('invalid config %j is rejected naming %s', (config, key) => {
  expect(rejectedKeys(nicConfigSchema, config)).toContain(key)
})
