import { mkdirSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { Daemon, retryOnPortClash, stillAlive, waitFor } from './daemon.js'

export interface EtcdMember {
  name: string
  clientUrl: string
  daemon: Daemon
  /** Starts it again (same data directory) after `kill`. */
  restart(): Promise<void>
  /** SIGKILL: the member is gone at once, as with its machine. */
  kill(): void
}

export interface EtcdCluster {
  members: EtcdMember[]
  /** Every member's client URL, for a hub's `group.endpoints`. */
  endpoints: string[]
  /** Whether the cluster answers a linearizable read (it has a quorum), asked through `endpoint`. */
  healthy(endpoint?: string): Promise<boolean>
  stop(): Promise<void>
}

/**
 * Debian's etcd (etcd-server) as a cluster of `size` members on loopback ports, each with its own
 * data directory under `dir` (fresh: removed first). Resolves once the cluster has a leader and
 * answers reads. Short heartbeats and elections so that a lost member is noticed in a test's time.
 */
export async function startEtcdCluster(opts: {
  dir: string
  size?: number
  /** The address members listen on (default loopback; a lab's hub address to serve its hosts). */
  host?: string
}): Promise<EtcdCluster> {
  const size = opts.size ?? 3
  const host = opts.host ?? '127.0.0.1'
  return retryOnPortClash(async () => {
    const plan = await etcdClusterPlan({ host, dir: opts.dir, size })
    const members: EtcdMember[] = plan.map(({ name, clientUrl, dataDir, argv }) => {
      rmSync(dataDir, { recursive: true, force: true })
      mkdirSync(dataDir, { recursive: true })
      const logFile = join(opts.dir, `${name}.log`)
      const member: EtcdMember = {
        name,
        clientUrl,
        daemon: Daemon.start(name, argv, { logFile }),
        async restart() {
          member.daemon = Daemon.start(name, argv, { logFile })
          await stillAlive(member.daemon, () => member.daemon.log())
        },
        kill() {
          try {
            process.kill(member.daemon.pid, 'SIGKILL')
          } catch {
            // already gone
          }
        },
      }
      return member
    })
    const cluster: EtcdCluster = {
      members,
      endpoints: members.map((m) => m.clientUrl),
      healthy: (endpoint = members[0]?.clientUrl as string) => etcdAnswers(endpoint),
      async stop() {
        await Promise.all(members.map((m) => m.daemon.stop()))
      },
    }
    try {
      for (const m of members) await stillAlive(m.daemon, () => m.daemon.log())
      await waitFor('etcd cluster with a leader', () => cluster.healthy(), 20_000)
    } catch (err) {
      await cluster.stop()
      throw err
    }
    return cluster
  })
}

/** One member of an etcd cluster to start: its name, client URL, data directory and argv. */
export interface EtcdMemberPlan {
  name: string
  clientUrl: string
  dataDir: string
  argv: string[]
}

/**
 * The members of a fresh etcd cluster of `size` on `host` (Debian's etcd-server), each with its data
 * directory under `dir`: short heartbeats and elections, so that a lost member is noticed in a
 * test's time, and compaction, so that a hub's state writes do not grow its history without bound.
 * Started by startEtcdCluster, or detached by a lab that outlives its starter (scripts/lab.mjs).
 */
export async function etcdClusterPlan(opts: {
  host: string
  dir: string
  size?: number
}): Promise<EtcdMemberPlan[]> {
  const { host, dir } = opts
  const ports: { client: number; peer: number }[] = []
  for (let i = 0; i < (opts.size ?? 3); i++)
    ports.push({ client: await stablePort(host), peer: await stablePort(host) })
  const names = ports.map((_, i) => `etcd${i + 1}`)
  const initialCluster = names.map((n, i) => `${n}=http://${host}:${ports[i]?.peer}`).join(',')
  const token = `vigil-${process.pid}-${Date.now()}`
  return names.map((name, i) => {
    const port = ports[i] as { client: number; peer: number }
    const dataDir = join(dir, name)
    const clientUrl = `http://${host}:${port.client}`
    const peerUrl = `http://${host}:${port.peer}`
    const argv = [
      'etcd',
      '--name',
      name,
      '--data-dir',
      dataDir,
      '--listen-client-urls',
      clientUrl,
      '--advertise-client-urls',
      clientUrl,
      '--listen-peer-urls',
      peerUrl,
      '--initial-advertise-peer-urls',
      peerUrl,
      '--initial-cluster',
      initialCluster,
      '--initial-cluster-state',
      'new',
      '--initial-cluster-token',
      token,
      '--heartbeat-interval',
      '100',
      '--election-timeout',
      '1000',
      // Small preallocated WAL segments and no snapshots to speak of: a test's cluster is tiny.
      '--quota-backend-bytes',
      String(256 * 1024 * 1024),
      '--auto-compaction-mode',
      'revision',
      '--auto-compaction-retention',
      '1000',
      '--logger',
      'zap',
      '--log-outputs',
      'stderr',
    ]
    return { name, clientUrl, dataDir, argv }
  })
}

/**
 * Whether etcd answers a linearizable read through `clientUrl`: that member is up and the cluster
 * has a quorum (the read goes through the raft leader).
 */
export async function etcdAnswers(clientUrl: string): Promise<boolean> {
  try {
    const res = await fetch(`${clientUrl}/v3/kv/range`, {
      method: 'POST',
      body: JSON.stringify({ key: Buffer.from('health').toString('base64') }),
      signal: AbortSignal.timeout(1000),
    })
    return res.ok
  } catch {
    return false
  }
}

/**
 * A free TCP port below the kernel's ephemeral range (32768 and up here): a member killed by a test
 * is restarted on the same ports, and a port of the ephemeral range may meanwhile have become the
 * source port of some outgoing connection (its peers' reconnects, to it).
 */
async function stablePort(host: string): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    const free = await new Promise<boolean>((resolve) => {
      const srv = createServer()
      srv.once('error', () => resolve(false))
      srv.listen(port, host, () => srv.close(() => resolve(true)))
    })
    if (free) return port
  }
}
