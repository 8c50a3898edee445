import { duration, table } from './format.js'

export interface FenceView {
  devices: {
    id: string
    driver: string
    hosts: Record<string, string[]>
    up: boolean | null
    detail: string
  }[]
  nodes: { node: string; levels: string[][]; fenceableNow: boolean; phase: string }[]
  pending: { device: string; node: string; requestedAt: number; confirmedBy: string | null }[]
  history: {
    at: number
    node: string
    device: string
    level: number
    outcome: string
    durationMs: number
    detail: string
  }[]
}

/** `vigil fence`: can each node be fenced now, the devices' health, what waits for a person, history. */
export function renderFence(view: FenceView, now: number): string {
  const out: string[] = []
  out.push(
    table(
      ['NODE', 'FENCEABLE NOW', 'FENCE', 'LEVELS'],
      view.nodes.map((n) => [
        n.node,
        n.levels.length === 0
          ? 'NO (no fence devices)'
          : n.fenceableNow
            ? 'yes'
            : 'NO (a device of every level fails its check)',
        n.phase,
        n.levels.map((l, i) => `${i + 1}: ${l.join(' + ')}`).join('; ') || '-',
      ]),
    ),
  )
  out.push('', 'Devices')
  out.push(
    table(
      ['DEVICE', 'DRIVER', 'HEALTH', 'HOSTS', 'DETAIL'],
      view.devices.map((d) => [
        d.id,
        d.driver,
        d.up === null ? 'unchecked' : d.up ? 'UP' : 'DOWN',
        Object.entries(d.hosts)
          .map(([node, plugs]) => (plugs.length > 0 ? `${node}(${plugs.join(',')})` : node))
          .join(' '),
        d.detail,
      ]),
    ),
  )
  const waiting = view.pending.filter((p) => p.confirmedBy === null)
  if (waiting.length > 0) {
    out.push('', 'Waiting for an operator (confirm with: vigil fence confirm <node>)')
    out.push(
      table(
        ['NODE', 'DEVICE', 'ASKED'],
        waiting.map((p) => [p.node, p.device, `${duration(now - p.requestedAt)} ago`]),
      ),
    )
  }
  out.push('', 'History (newest first)')
  out.push(
    view.history.length === 0
      ? 'no fence has run'
      : table(
          ['WHEN', 'NODE', 'LEVEL', 'DEVICE', 'OUTCOME', 'TOOK', 'DETAIL'],
          view.history.map((h) => [
            `${duration(now - h.at)} ago`,
            h.node,
            String(h.level + 1),
            h.device,
            h.outcome.toUpperCase(),
            duration(h.durationMs),
            h.detail,
          ]),
        ),
  )
  return out.join('\n')
}
