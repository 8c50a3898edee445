import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { NetnsLab } from '@vigil/testbed'
import { VigilProcess } from './processes.js'

/**
 * Starts `vigil agent` on a lab host (inside its network namespace), with a config file of its own
 * made of `lines` (after `node: <node>`), connected to the hub's broker.
 */
export function startLabAgent(
  lab: NetnsLab,
  node: string,
  opts: { dir: string; mqttUrl: string; lines: string[]; file?: string },
): VigilProcess {
  const file = join(opts.dir, opts.file ?? `${node}.yaml`)
  writeFileSync(file, [`node: ${node}`, ...opts.lines, ''].join('\n'))
  return new VigilProcess(['agent', '--config', file, '--mqtt-url', opts.mqttUrl], {
    cwd: opts.dir,
    wrap: lab.host(node).exec([]),
  })
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
