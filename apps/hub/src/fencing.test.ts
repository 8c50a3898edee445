import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { trace } from '@opentelemetry/api'
import { clusterSpecSchema, type Input } from '@vigil/engine'
import { createLogger } from '@vigil/kit'
import { startBmc } from '@vigil/testbed'
import { Registry } from 'prom-client'
import { afterEach, expect, test } from 'vitest'
import { FenceService, fencingSchema } from './fencing.js'
import { HubStore } from './store.js'
import { DecisionTracer } from './tracing.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function setup(opts: { hubNode?: string; devices?: unknown[]; levels?: string[][] }) {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-fencing-'))
  dirs.push(dir)
  const store = new HubStore(join(dir, 'hub.sqlite'))
  const inputs: Input[] = []
  const spec = clusterSpecSchema.parse({
    nodes: [
      { id: 'n1', fencing: (opts.levels ?? [['people']]).map((devices) => ({ devices })) },
      { id: 'n2', fencing: [{ devices: ['people'] }] },
    ],
  })
  const service = new FenceService(
    fencingSchema.parse({
      devices: opts.devices ?? [{ id: 'people', driver: 'meatware', hosts: { n1: ['n1'], n2: ['n2'] } }],
    }),
    {
      store,
      clock: { wallMs: () => Date.now(), monoMs: () => performance.now() },
      log: createLogger('test', 'silent'),
      registry: new Registry(),
      input: (i) => inputs.push(i),
      onEvent: () => {},
      onFenceOp: () => {},
      tracer: new DecisionTracer(trace.getTracer('test'), 30_000),
      spec,
      hubNode: opts.hubNode,
    },
  )
  return { service, store, inputs, spec }
}

test('the hub never fences the node it runs on: refused, alerted, reported as failed to the engine', async () => {
  const { service, store, inputs } = setup({ hubNode: 'n1' })
  service.run({
    type: 'fence',
    id: 'a-1',
    decision: 'd-1',
    node: 'n1',
    level: 0,
    devices: ['people'],
    timeoutMs: 1000,
  })
  expect(inputs).toEqual([
    { type: 'fence-result', actionId: 'a-1', node: 'n1', device: 'people', outcome: 'auth-failed' },
  ])
  expect(store.events({ limit: 10 })[0]).toMatchObject({
    kind: 'fence.refused-self',
    severity: 'critical',
    node: 'n1',
  })
  expect(service.pendingConfirmations()).toEqual([]) // nobody was asked to pull n1's plug
  expect(service.fenceable('n1')).toBe(false)
  await service.close()
})

test('a node whose every level has a failing device is reported unfenceable, once', async () => {
  const { service, store } = setup({
    devices: [
      { id: 'people', driver: 'meatware', hosts: { n1: ['n1'], n2: ['n2'] } },
      // A fence agent that cannot be found fails at creation; one that exists but fails its check:
      {
        id: 'broken',
        driver: 'fence-agents',
        hosts: { n1: [] },
        config: {
          agent: 'fence_ipmilan',
          options: { ip: '127.0.0.1', ipport: 9, username: 'x', lanplus: true },
          timeoutMs: { monitor: 1500 },
        },
      },
    ],
    levels: [['broken']],
  })
  await service.checkAll()
  await service.checkAll()
  const kinds = store.events({ limit: 20 }).map((e) => `${e.kind}:${e.node ?? '-'}`)
  expect(kinds.filter((k) => k === 'fence.node-unfenceable:n1')).toHaveLength(1)
  expect(kinds).toContain('fence.device-down:-')
  expect(kinds).not.toContain('fence.node-unfenceable:n2') // its meatware level passes its check
  expect(service.fenceable('n1')).toBe(false)
  expect(service.fenceable('n2')).toBe(true)
  await service.close()
})

test('a cluster file naming devices the hub lacks, or hosts a device does not map, is refused with the key', async () => {
  const { service } = setup({ levels: [['people'], ['ghost']] })
  const spec = clusterSpecSchema.parse({
    nodes: [
      { id: 'n1', fencing: [{ devices: ['people'] }, { devices: ['ghost'] }] },
      { id: 'n3', fencing: [{ devices: ['people'] }] },
    ],
  })
  expect(service.problemsWith(spec)).toEqual([
    'nodes.0.fencing.1.devices.0: no fence device "ghost" in the hub\'s fencing.devices',
    'nodes.1.fencing.0.devices.0: device "people" has no entry for n3 in its hosts',
  ])
  await service.close()
})

test.each([
  [
    { devices: [{ id: 'x', driver: 'ipmi', hosts: {}, config: { host: 'h', username: 'u' } }] },
    'devices.0.config.passwordFile',
  ],
  [
    {
      devices: [
        {
          id: 'x',
          driver: 'ipmi',
          hosts: {},
          config: { host: 'h', username: 'u', passwordFile: 'p', pasword: 1 },
        },
      ],
    },
    'devices.0.config.pasword',
  ],
  [{ devices: [{ id: 'x', driver: 'telepathy', hosts: {} }] }, 'devices.0.driver'],
  [
    {
      devices: [
        { id: 'x', driver: 'meatware', hosts: {} },
        { id: 'x', driver: 'meatware', hosts: {} },
      ],
    },
    'devices.1.id',
  ],
])('fencing config errors name the key (%#)', (config, key) => {
  const r = fencingSchema.safeParse(config)
  expect(r.success).toBe(false)
  expect(r.error?.issues.map((i) => i.path.join('.'))).toContain(key)
})

// The BMC's power state as a live channel (issue #23): the hub reads it through the real device
// (OpenIPMI's ipmi_sim) and feeds the engine a polled reading; a person (meatware) is never asked.
test('the power poll reads each node through its device and feeds the engine, meatware left out', async () => {
  const bmc = await startBmc()
  try {
    const { service, inputs } = setup({
      levels: [['bmc-n1'], ['people']],
      devices: [
        {
          id: 'bmc-n1',
          driver: 'ipmi',
          hosts: { n1: [] },
          config: { host: bmc.host, port: bmc.port, username: bmc.username, passwordFile: bmc.passwordFile },
        },
        { id: 'people', driver: 'meatware', hosts: { n1: ['n1'], n2: ['n2'] } },
      ],
    })
    await service.pollPower()
    expect(inputs).toEqual([{ type: 'power-state', node: 'n1', state: 'on', device: 'bmc-n1', polled: true }])
    writeFileSync(join(bmc.dir, 'power'), 'off') // the host loses its power; its BMC lives on
    await service.pollPower()
    expect(inputs.at(-1)).toEqual({
      type: 'power-state',
      node: 'n1',
      state: 'off',
      device: 'bmc-n1',
      polled: true,
    })
    expect(service.pendingConfirmations()).toEqual([])
    expect(bmc.powerLog()).toEqual([]) // only read: nothing was switched
    await service.close()
  } finally {
    await bmc.stop()
  }
})

test.each([
  [{ powerPollMs: 100 }, 'powerPollMs', 'at least 500 ms'],
  [{ powerPollMs: -1 }, 'powerPollMs', '>=0'],
])('fencing %o is refused naming %s', (extra, key, words) => {
  const parsed = fencingSchema.safeParse({ devices: [], ...extra })
  expect(parsed.success).toBe(false)
  const issue = parsed.error?.issues[0]
  expect(issue?.path).toEqual([key])
  expect(issue?.message).toContain(words)
})
