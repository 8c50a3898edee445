import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, NetnsLab } from '@vigil/testbed'
import { eventually } from './eventually.js'
import { type HubProcess, hubKeyArgs, startHub } from './hub.js'
import { VigilProcess, writeLines } from './processes.js'

/** The hosts of a peer lab; node-c is the one tests fail. */
export const PEER_LAB_NODES = ['node-a', 'node-b', 'node-c']

/**
 * Starts `vigil agent` on a lab host (inside its network namespace), with a config file of its own
 * made of `lines` (after `node: <node>`), connected to the hub's broker and trusting its key.
 */
export function startLabAgent(
  lab: NetnsLab,
  node: string,
  opts: { dir: string; hub: HubProcess; lines: string[]; file?: string },
): VigilProcess {
  const file = join(opts.dir, opts.file ?? `${node}.yaml`)
  writeFileSync(file, [`node: ${node}`, ...opts.lines, ''].join('\n'))
  return new VigilProcess(
    ['agent', '--config', file, '--mqtt-url', opts.hub.mqttUrl, ...hubKeyArgs(opts.hub)],
    {
      cwd: opts.dir,
      wrap: lab.host(node).exec([]),
    },
  )
}

/**
 * Starts the hub (in the root namespace) with its broker on the lab's network, where every lab
 * host reaches it; stopped by the test's cleanups.
 */
export async function startLabHub(
  lab: NetnsLab,
  dir: string,
  args: string[],
  cleanups: (() => Promise<void> | void)[],
): Promise<HubProcess> {
  const hub = await startHub(dir, [...args, '--broker-listen', `${lab.hubIp}:${await freePort('tcp')}`])
  cleanups.push(() => hub.process.stop())
  return hub
}

/** The `peers:` section of an agent's config: a UDP mesh over every lab host, on port 7480. */
export function peerMeshLines(lab: NetnsLab, nodes: string[], self: string): string[] {
  return [
    'peers:',
    `  listen: '${lab.host(self).ip}:7480'`,
    '  intervalMs: 100',
    '  deadAfterMs: 500',
    '  mesh:',
    ...nodes.map((n) => `    - { node: ${n}, address: '${lab.host(n).ip}:7480' }`),
  ]
}

/**
 * Three lab hosts with the peer mesh between their agents (and, with `disk`, a shared-disk
 * heartbeat on a file all of them reach); node-c is fenced by a person (meatware, a 2 s level).
 */
export async function startPeerLab(
  dir: string,
  name: string,
  opts: {
    disk: boolean
    cleanups: (() => Promise<void> | void)[]
    /** Extra lines for the cluster file (e.g. a more tolerant `detection:`). */
    clusterLines?: string[]
    /**
     * Where a node's agent reaches the shared disk heartbeat's file (default: the file itself), e.g.
     * through a view of its own that a test can hang.
     */
    diskPath?: (node: string, sbd: string) => string
    /** Extra lines for a node's agent config. */
    agentLines?: (node: string) => string[]
  },
): Promise<{
  lab: NetnsLab
  hub: HubProcess
  /** kill -9 of the hub, then a new hub on the same database and broker address (agents reconnect). */
  restartHub(): Promise<HubProcess>
}> {
  const { cleanups } = opts
  const disk = opts.disk
  const lab = NetnsLab.create(PEER_LAB_NODES)
  cleanups.push(() => lab.destroy())
  const sbd = join(dir, `${name}.sbd`)
  writeFileSync(sbd, Buffer.alloc(512 * 8))
  const hubFile = join(dir, `${name}-hub.yaml`)
  writeFileSync(
    hubFile,
    [
      'fencing:',
      '  devices:',
      '    - { id: people, driver: meatware, hosts: { node-c: [node-c] } }',
      '',
    ].join('\n'),
  )
  const clusterFile = writeLines(dir, `${name}-cluster.yaml`, [
    ...(opts.clusterLines ?? []),
    'nodes:',
    '  - id: node-a',
    '  - id: node-b',
    '  - id: node-c',
    '    fencing: [{ devices: [people], timeoutMs: 2000 }]',
    '',
  ])
  const hubArgs = [
    '--config',
    hubFile,
    '--cluster-file',
    clusterFile,
    '--db',
    join(dir, `${name}.sqlite`),
    '--broker-listen',
    `${lab.hubIp}:${await freePort('tcp')}`,
  ]
  let hub = await startHub(dir, hubArgs)
  cleanups.push(() => hub.process.stop())
  PEER_LAB_NODES.forEach((node, slot) => {
    const agent = startLabAgent(lab, node, {
      dir: dir,
      hub,
      file: `${name}-${node}.yaml`,
      lines: [
        'heartbeat: { intervalMs: 100 }',
        ...(disk
          ? [
              `diskHeartbeat: { path: '${opts.diskPath?.(node, sbd) ?? sbd}', slot: ${slot}, slots: 8, intervalMs: 200 }`,
            ]
          : []),
        ...peerMeshLines(lab, PEER_LAB_NODES, node),
        ...(opts.agentLines?.(node) ?? []),
      ],
    })
    cleanups.push(() => agent.stop())
  })
  const restartHub = async () => {
    hub.process.kill('SIGKILL')
    await hub.process.exited
    hub = await startHub(dir, hubArgs)
    return hub
  }
  return { lab, hub, restartHub }
}

/** Waits until node-c has no fence in progress (a startup fence's level timed out, or none ran). */
export async function settledFence(hub: HubProcess): Promise<void> {
  await eventually(
    'no fence in progress for node-c',
    async () => {
      const view = (await hub.api<{ nodes: { node: string; phase: string }[] }>('/api/fence')).body
      return view.nodes.find((n) => n.node === 'node-c')?.phase === 'idle'
    },
    { timeoutMs: 20_000 },
  )
}
