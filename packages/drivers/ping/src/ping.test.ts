import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runAction } from '@vigil/driver-kit'
import { monitorConformance } from '@vigil/driver-kit/conformance'
import { createLogger, rejectedKeys } from '@vigil/kit'
import { NetnsHost } from '@vigil/testbed'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { pingConfigSchema, pingDriver } from './index.js'

const log = createLogger('test', 'silent')
const ctx = { log }
let host: NetnsHost
/** A second host whose link is down: a target that does not answer (traffic stays in our namespaces). */
let down: NetnsHost
beforeAll(() => {
  host = NetnsHost.create()
  down = NetnsHost.create()
  down.link(false)
})
afterAll(() => {
  host.destroy()
  down.destroy()
})

// Real namespaces: a host that answers, one whose link is down; a ping program that never returns.
monitorConformance(pingDriver, async () => ({
  healthy: { targets: [host.ip], timeoutMs: 500 },
  broken: { targets: [down.ip], timeoutMs: 500 },
  invalid: [
    { config: { targets: ['not a host!'] }, key: 'targets.0' },
    { config: { targets: [host.ip], timeoutMs: 5 }, key: 'timeoutMs' },
  ],
  hanging: { targets: [host.ip], ping: hangingPing(), timeoutMs: 10_000 },
}))

/** A `ping` that never answers (an ICMP stack wedged, a hung program). */
function hangingPing(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'vigil-ping-')), 'ping')
  writeFileSync(file, '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 })
  return file
}

const make = (targets: string[], minReachable = 1) =>
  pingDriver.create(pingConfigSchema.parse({ targets, minReachable, timeoutMs: 500 }), {
    resourceId: 'ping',
    log,
  })

test('counts the targets that answer, per target, against a real host in a network namespace', async () => {
  const r = await runAction(make([host.ip, down.ip]), 'monitor', ctx)
  expect(r).toMatchObject({
    state: 'running',
    detail: `1 of 2 reachable (not: ${down.ip})`,
    metrics: { reachable: 1, total: 2, [`target:${host.ip}`]: 1, [`target:${down.ip}`]: 0 },
  })
})

test('below minReachable is failed; a partitioned host stops answering', async () => {
  expect(await runAction(make([host.ip, down.ip], 2), 'monitor', ctx)).toMatchObject({ state: 'failed' })
  host.link(false)
  try {
    expect(await runAction(make([host.ip]), 'monitor', ctx)).toMatchObject({
      state: 'failed',
      metrics: { reachable: 0, total: 1 },
    })
  } finally {
    host.link(true)
  }
})

test.each([
  [{ targets: [] }, 'targets'],
  [{ targets: ['a b'] }, 'targets.0'],
  [{ targets: ['10.0.0.1'], minReachable: 0 }, 'minReachable'],
  [{ targets: ['10.0.0.1'], interval: 5 }, 'interval'],
])('invalid config %j is rejected naming %s', (config, key) => {
  expect(rejectedKeys(pingConfigSchema, config)).toContain(key)
})
