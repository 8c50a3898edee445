import type { NodeView } from '@vigil/hub'
import { bytes, duration, table } from './format.js'

/** Phases a resource may stay in; any other is a wait, listed with its reason. */
const SETTLED = new Set(['running', 'stopped', 'unmanaged', 'suspended'])

/** A resource as GET /api/resources returns it. */
export interface StatusResource {
  id: string
  phase: string
  node: string | null
  phaseSince: number
  health: number
  failures: number
  pending: { type: string; node: string } | null
  /** Why it is in its phase (absent from an older hub). */
  reason?: { rule: string; why: string } | null
  /** A vm's hypervisor (kvm, qemu, xen, vsphere); null or absent otherwise (or from an older hub). */
  hypervisor?: string | null
}

/** The hub group as GET /api/group returns it (enabled: false for a hub alone). */
export interface StatusGroup {
  enabled: boolean
  role?: string
  self?: string
  epoch?: number | null
  leader?: { hub: string; url: string; epoch: number } | null
  leaseRemainingMs?: number | null
  etcd?: { endpoints: string[]; reachable: boolean; lastError: string | null }
}

/** One line on the hub group: who leads under which epoch, what this hub is, whether etcd answers. */
export function renderGroup(group: StatusGroup): string {
  const leader = group.leader
    ? `${group.role === 'no-quorum' ? 'last known leader' : 'leader'} ${group.leader.hub} (epoch ${group.leader.epoch}, ${group.leader.url})`
    : 'NO LEADER: no hub acts (nothing is fenced or moved) until one leads'
  const etcd = group.etcd
    ? group.etcd.reachable
      ? `etcd reachable (${group.etcd.endpoints.length} endpoints)`
      : `etcd UNREACHABLE: ${group.etcd.lastError ?? 'no answer'}`
    : ''
  const lease =
    group.role === 'leader' && typeof group.leaseRemainingMs === 'number'
      ? `, lease ${(group.leaseRemainingMs / 1000).toFixed(1)} s`
      : ''
  return `Hub group: ${leader}; this hub ${group.self}: ${String(group.role).toUpperCase()}${lease}; ${etcd}`
}

/**
 * A crm_mon-like rendering of the hub's nodes, with each node's filesystems and interfaces. A
 * node's state is the engine's classification; an agent that announced a clean shutdown is marked
 * beside it (`DEAD (agent shut down)`: the engine judged the silence; AGENT-STOPPED says it alone).
 */
export function renderStatus(
  info: { cluster?: unknown; name?: unknown; epoch?: unknown },
  nodes: NodeView[],
  now: number,
  brief: boolean,
  resources: StatusResource[] = [],
  group: StatusGroup | null = null,
): string {
  const counts = new Map<string, number>()
  for (const n of nodes) counts.set(n.state, (counts.get(n.state) ?? 0) + 1)
  const shutDown = nodes.filter((n) => n.shutdownAt !== null).length
  const summary =
    ([...counts.entries()].map(([s, c]) => `${c} ${s}`).join(', ') || 'none') +
    (shutDown > 0 ? `; ${shutDown} agent${shutDown === 1 ? '' : 's'} shut down` : '')
  // A standby commands nothing: its own epoch (0, or the one it last led under) says nothing.
  const role = group?.enabled && group.role !== 'leader' ? String(group.role) : `epoch ${String(info.epoch)}`
  const out: string[] = [
    `Cluster ${String(info.cluster)} - hub ${String(info.name)} (${role}) - ${nodes.length} node${nodes.length === 1 ? '' : 's'}: ${summary}`,
    ...(group?.enabled ? [renderGroup(group)] : []),
    // A standby judges no node: every node is unknown here, and the leader's view is the one.
    ...(group?.enabled && group.role !== 'leader'
      ? [
          `Nodes are judged by the leader only: here each is UNKNOWN${group.leader ? ` (vigil status --hub ${group.leader.url})` : ''}`,
        ]
      : []),
    '',
    table(
      [
        'NODE',
        'STATE',
        'SINCE',
        'LAST HEARTBEAT',
        'ROLE',
        'AGENT',
        'CPUS',
        'MEMORY AVAIL/TOTAL',
        'LOAD',
        'PROCS',
      ],
      nodes.map((n) => [
        n.id,
        `${n.state.toUpperCase()}${n.shutdownAt === null || n.state === 'agent-stopped' ? '' : ' (agent shut down)'}`,
        n.stateSince === null ? '-' : `${duration(now - n.stateSince)} ago`,
        n.lastHeartbeatAt === null ? '-' : `${duration(now - n.lastHeartbeatAt)} ago`,
        n.role ?? '-',
        n.agentVersion ?? '-',
        n.facts ? String(n.facts.cpus) : '-',
        n.facts ? `${bytes(n.facts.memory.availableBytes)} / ${bytes(n.facts.memory.totalBytes)}` : '-',
        n.facts ? n.facts.load.map((l) => l.toFixed(2)).join(' ') : '-',
        n.facts ? String(n.facts.processCount) : '-',
      ]),
    ),
  ]
  if (resources.length > 0) {
    out.push(
      '',
      `Resources: ${resources.filter((r) => r.phase === 'running').length} of ${resources.length} running`,
    )
    // Where a vm runs and on what (a cluster may mix KVM, Xen and vSphere nodes); the column is
    // shown only when there is a vm to fill it.
    const vms = resources.some((r) => r.hypervisor)
    out.push(
      indent(
        table(
          [
            'RESOURCE',
            'PHASE',
            'NODE',
            ...(vms ? ['HYPERVISOR'] : []),
            'SINCE',
            'HEALTH',
            'FAILURES',
            'PENDING',
          ],
          resources.map((r) => [
            r.id,
            r.phase.toUpperCase(),
            r.node ?? '-',
            ...(vms ? [r.hypervisor ?? '-'] : []),
            `${duration(now - r.phaseSince)} ago`,
            String(r.health),
            String(r.failures),
            r.pending ? `${r.pending.type} on ${r.pending.node}` : '-',
          ]),
        ),
      ),
    )
  }
  // Nothing waits in silence: each resource not settled says what it waits for.
  const unsettled = resources.filter((r) => r.reason && !SETTLED.has(r.phase))
  if (unsettled.length > 0) {
    out.push('', 'Waiting on:')
    for (const r of unsettled)
      out.push(
        `  ${r.id} (${r.phase}, ${duration(now - r.phaseSince)}): ${r.reason?.why} [${r.reason?.rule}]`,
      )
  }
  if (brief) return out.join('\n')
  for (const n of nodes) {
    if (!n.facts) continue
    out.push('', `${n.id}: filesystems`)
    out.push(
      indent(
        table(
          ['MOUNT', 'TYPE', 'SIZE', 'USED', 'AVAIL', 'INODES USED'],
          n.facts.filesystems.map((f) => [
            f.mount,
            f.fstype,
            bytes(f.sizeBytes),
            `${percent(f.sizeBytes - f.freeBytes, f.sizeBytes)}`,
            bytes(f.availBytes),
            f.inodes > 0 ? percent(f.inodes - f.inodesFree, f.inodes) : '-',
          ]),
        ),
      ),
    )
    out.push('', `${n.id}: interfaces`)
    out.push(
      indent(
        table(
          ['NAME', 'STATE', 'CARRIER', 'SPEED', 'MTU', 'ADDRESSES'],
          n.facts.interfaces.map((i) => [
            i.name,
            i.operstate,
            i.carrier === null ? '-' : i.carrier ? 'yes' : 'no',
            i.speedMbps === null ? '-' : `${i.speedMbps} Mb/s`,
            i.mtu === null ? '-' : String(i.mtu),
            i.addresses.join(' ') || '-',
          ]),
        ),
      ),
    )
  }
  return out.join('\n')
}

function percent(part: number, whole: number): string {
  return whole > 0 ? `${Math.round((part / whole) * 100)}%` : '-'
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n')
}
