import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger } from '@vigil/kit'
import { afterEach, beforeEach, expect, test } from 'vitest'
import { emptyHubMetrics } from './metrics.test-helper.js'
import { Retention } from './retention.js'
import { HubStore } from './store.js'

const DAY = 86_400_000
const NOW = 1_800_000_000_000
let dir: string
let store: HubStore
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-retention-'))
  store = new HubStore(join(dir, 'hub.sqlite'))
})
afterEach(() => {
  store.close()
  rmSync(dir, { recursive: true, force: true })
})

/** One row of each kind of history at `at`, and one audit row. */
function historyAt(at: number, n: number): void {
  store.appendEvent({
    at,
    node: 'n1',
    source: 'hub',
    kind: 'k',
    severity: 'info',
    message: `e${n}`,
    attrs: null,
  })
  store.appendDecisions([
    {
      id: `d-${n}`,
      at,
      kind: 'node-condition',
      node: 'n1',
      summary: 's',
      rule: 'r',
      policyVersion: 'p',
      correlationId: `d-${n}`,
    },
  ])
  store.appendFenceOp({
    at,
    node: 'n1',
    device: 'bmc',
    actionId: `a-${n}`,
    decision: `d-${n}`,
    level: 0,
    outcome: 'off',
    detail: '',
    durationMs: 1,
    steps: [],
  })
  store.insertCommand({
    id: `c-${n}`,
    node: 'n1',
    action: 'ping',
    args: {},
    epoch: 1,
    seq: n,
    issuedAt: at,
    expiresAt: at + 5000,
  })
  store.appendAudit({
    at,
    who: 'op',
    role: 'admin',
    source: '::1',
    method: 'POST',
    path: '/x',
    body: null,
    status: 202,
  })
}

const counts = () => ({
  events: store.events({ limit: 1000 }).length,
  decisions: store.decisions({ limit: 1000 }).length,
  fenceOps: store.fenceOps({ limit: 1000 }).length,
  commands: [0, 1, 2, 3, 4, 5].filter((n) => store.getCommand(`c-${n}`)).length,
  audit: store.audit({ limit: 1000 }).length,
})

test('history older than maxAgeDays is pruned, the rest kept, the audit log whole', async () => {
  for (let n = 0; n < 4; n++) historyAt(NOW - 100 * DAY + n, n) // older than 90 days
  historyAt(NOW - 10 * DAY, 4)
  historyAt(NOW, 5)
  const metrics = emptyHubMetrics()
  const retention = new Retention(
    store,
    { maxAgeDays: 90, everyMs: 3_600_000 },
    { now: () => NOW, log: createLogger('test', 'silent'), metrics },
  )
  expect(await retention.run()).toEqual({ events: 4, decisions: 4, fence_ops: 4, commands: 4 })
  retention.close()
  expect(counts()).toEqual({ events: 2, decisions: 2, fenceOps: 2, commands: 2, audit: 6 })
  expect(store.getDecision('d-4')).toBeDefined()
  expect(store.getDecision('d-3')).toBeUndefined()
  const text = await metrics.registry.metrics()
  expect(text).toContain('vigil_store_pruned_rows_total{table="events"} 4')
  expect(text).toMatch(/vigil_store_size_bytes \d+/)
})

test('a long history is pruned a batch at a time', () => {
  for (let n = 0; n < 5; n++) historyAt(NOW - 100 * DAY + n, n)
  const before = NOW - 90 * DAY
  const first = store.prune(before, 2)
  expect(first).toEqual({ deleted: { events: 2, decisions: 2, fence_ops: 2, commands: 2 }, more: true })
  expect(store.prune(before, 2).more).toBe(true)
  expect(store.prune(before, 2)).toEqual({
    deleted: { events: 1, decisions: 1, fence_ops: 1, commands: 1 },
    more: false,
  })
  expect(counts()).toMatchObject({ events: 0, decisions: 0, fenceOps: 0, commands: 0, audit: 5 })
})

test('maxAgeDays 0 keeps everything', async () => {
  historyAt(NOW - 1000 * DAY, 0)
  const retention = new Retention(
    store,
    { maxAgeDays: 0, everyMs: 3_600_000 },
    { now: () => NOW, log: createLogger('test', 'silent'), metrics: emptyHubMetrics() },
  )
  retention.start()
  retention.close()
  expect(counts()).toMatchObject({ events: 1, decisions: 1, fenceOps: 1, commands: 1 })
})
