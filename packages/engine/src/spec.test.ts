import { describe, expect, test } from 'vitest'
import { checkClusterSpec, clusterSpecSchema, policyOf } from './spec.js'

describe('cluster spec', () => {
  test('defaults make a minimal spec usable', () => {
    const spec = clusterSpecSchema.parse({ nodes: [{ id: 'n1' }], resources: [{ id: 'web' }] })
    expect(spec.detection.hub.threshold).toBe(8)
    expect(spec.resources[0]).toMatchObject({ kind: 'app', priority: 0, dependsOn: [] })
    expect(policyOf(spec, spec.resources[0] as never)).toMatchObject({
      maxRestarts: 3,
      ladder: ['restart', 'relocate'],
    })
  })

  test('a resource policy overrides the cluster defaults key by key', () => {
    const spec = clusterSpecSchema.parse({
      defaults: { maxRestarts: 5 },
      nodes: [{ id: 'n1' }],
      resources: [{ id: 'web', policy: { ladder: ['restart'] } }],
    })
    expect(policyOf(spec, spec.resources[0] as never)).toMatchObject({ maxRestarts: 5, ladder: ['restart'] })
  })

  test("a detector setting overrides its channel's defaults key by key, not the whole channel", () => {
    const spec = clusterSpecSchema.parse({
      detection: { guest: { acceptablePauseMs: 500 }, hub: { threshold: 10 } },
      nodes: [{ id: 'n1' }],
    })
    expect(spec.detection.guest).toMatchObject({
      acceptablePauseMs: 500,
      firstIntervalMs: 500,
      minStdDevMs: 200,
    })
    expect(spec.detection.hub).toMatchObject({ threshold: 10, firstIntervalMs: 250, acceptablePauseMs: 100 })
    expect(spec.detection.disk).toMatchObject({
      firstIntervalMs: 250,
      acceptablePauseMs: 50,
      minStdDevMs: 50,
    })
  })

  test.each([
    { name: 'unknown key', input: { nodes: [{ id: 'n1', fencin: [] }] }, path: 'nodes.0' },
    { name: 'no nodes', input: { nodes: [] }, path: 'nodes' },
    {
      name: 'bad ladder step',
      input: { nodes: [{ id: 'n1' }], defaults: { ladder: ['pray'] } },
      path: 'defaults.ladder.0',
    },
    {
      name: 'empty fence level',
      input: { nodes: [{ id: 'n1', fencing: [{ devices: [] }] }] },
      path: 'nodes.0.fencing.0.devices',
    },
    {
      name: 'freeze share above 1',
      input: { nodes: [{ id: 'n1' }], governor: { freezeShare: 2 } },
      path: 'governor.freezeShare',
    },
  ])('rejects $name at $path', ({ input, path }) => {
    const result = clusterSpecSchema.safeParse(input)
    expect(result.success).toBe(false)
    expect(result.error?.issues[0]?.path.join('.')).toBe(path)
  })

  test('cross-references are checked: unknown nodes, resources, duplicates, guest-app without vm', () => {
    const spec = clusterSpecSchema.parse({
      nodes: [{ id: 'n1' }, { id: 'n1' }],
      resources: [
        { id: 'a', preferred: { ghost: 1 }, dependsOn: ['nothing'] },
        { id: 'g', kind: 'guest-app' },
      ],
    })
    expect(checkClusterSpec(spec)).toEqual([
      'nodes: duplicate id "n1"',
      'resources.0: unknown node "ghost"',
      'resources.0: unknown resource "nothing"',
      'resources.1.vm: a guest-app needs the id of its vm resource',
    ])
  })

  test("a guest-app's final action cannot fence its node (its node is its vm); a bad final action is refused", () => {
    const spec = clusterSpecSchema.parse({
      nodes: [{ id: 'n1' }],
      resources: [
        { id: 'vm1', kind: 'vm' },
        { id: 'g', kind: 'guest-app', vm: 'vm1', policy: { finalAction: 'fence-node' } },
        { id: 'web', policy: { finalAction: 'fence-node' } },
      ],
    })
    expect(checkClusterSpec(spec)).toEqual([
      "resources.1.policy.finalAction: a guest-app's node is its vm, never fenced; reset-vm in its ladder resets it",
    ])
    const bad = clusterSpecSchema.safeParse({
      nodes: [{ id: 'n1' }],
      resources: [{ id: 'web', policy: { finalAction: 'reboot' } }],
    })
    expect(bad.error?.issues[0]?.path.join('.')).toBe('resources.0.policy.finalAction')
  })
})

describe('a cluster file whose resources could never run is refused', () => {
  const nodes = [{ id: 'n1' }, { id: 'n2' }]
  test.each([
    {
      what: 'a dependency cycle',
      resources: [
        { id: 'web', dependsOn: ['db'] },
        { id: 'db', dependsOn: ['web'] },
      ],
      problem: 'resources.0.dependsOn: a dependency cycle (web -> db -> web)',
    },
    {
      what: 'a resource depending on itself',
      resources: [{ id: 'web', dependsOn: ['web'] }],
      problem: 'resources.0.dependsOn: a dependency cycle (web -> web)',
    },
    {
      what: 'a cycle through a guest-app and its vm',
      resources: [
        { id: 'vm1', kind: 'vm', dependsOn: ['app'] },
        { id: 'app', kind: 'guest-app', vm: 'vm1' },
      ],
      problem: 'resources.0.dependsOn: a dependency cycle (vm1 -> app -> vm1)',
    },
    {
      what: 'a colocation on nodes the two do not share',
      resources: [
        { id: 'app', colocate: true, dependsOn: ['cache'], allowedNodes: ['n1'] },
        { id: 'cache', allowedNodes: ['n2'] },
      ],
      problem: 'resources.0.colocate: app must run on the node of cache, but their allowedNodes share none',
    },
    {
      what: 'a colocation with a resource it must never run with',
      resources: [
        { id: 'app', colocate: true, dependsOn: ['cache'], antiAffinity: ['cache'] },
        { id: 'cache' },
      ],
      problem: 'resources.0.antiAffinity: app must run on the node of cache (colocate) and never with it',
    },
  ])('$what', ({ resources, problem }) => {
    const spec = clusterSpecSchema.parse({ nodes, resources })
    const problems = checkClusterSpec(spec)
    expect(problems).toHaveLength(1)
    expect(problems[0]).toContain(problem)
  })

  test('a chain without a cycle, and colocation on shared nodes, are fine', () => {
    const spec = clusterSpecSchema.parse({
      nodes,
      resources: [
        { id: 'db' },
        { id: 'app', dependsOn: ['db'], colocate: true, allowedNodes: ['n1', 'n2'] },
        { id: 'web', dependsOn: ['app', 'db'] },
      ],
    })
    expect(checkClusterSpec(spec)).toEqual([])
  })
})
