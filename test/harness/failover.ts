import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { expect } from 'vitest'
import { eventually } from './eventually.js'
import type { HubProcess } from './hub.js'
import { runVigil, type VigilProcess, writeLines } from './processes.js'
import { webPidfile } from './web.js'

/**
 * The failover the crash tests disturb: `web` prefers node-b; node-b's only fence level is a person
 * (meatware, 10 min), so once node-b dies its fence stays in flight for as long as a test likes.
 * The hub's detector is tolerant: a CI machine running other suites can stall an agent for a
 * second or two, and these tests are about what follows a real death, not about speed.
 */
/** A decision record as `GET /api/decisions` serves it (the fields tests read). */
export interface Decision {
  id: string
  kind: string
  rule: string
  node?: string
  resource?: string
  summary: string
}

/** Writes the cluster and hub files into `dir`; returns the hub arguments that use them. */
export function writeMeatwareFailoverFiles(dir: string): string[] {
  const clusterFile = writeLines(dir, 'cluster.yaml', [
    'detection: { hub: { acceptablePauseMs: 2000 } }',
    'nodes:',
    '  - id: node-a',
    '  - id: node-b',
    '    fencing: [{ devices: [people], timeoutMs: 600000 }]',
    'resources:',
    '  - id: web',
    '    preferred: { node-b: 10 }',
    '',
  ])
  const hubFile = join(dir, 'hub.yaml')
  writeFileSync(
    hubFile,
    [
      'fencing:',
      '  devices:',
      '    - { id: people, driver: meatware, hosts: { node-b: [node-b] } }',
      '',
    ].join('\n'),
  )
  return ['--config', hubFile, '--cluster-file', clusterFile]
}

export async function decisionsOf(hub: HubProcess): Promise<Decision[]> {
  return (await hub.api<{ decisions: Decision[] }>('/api/decisions?limit=1000')).body.decisions.reverse()
}

/** Whether node-b's fence waits for the person (a meatware request not yet confirmed). */
export async function fenceWaitsForPerson(hub: HubProcess): Promise<boolean> {
  const { pending } = (
    await hub.api<{ pending: { node: string; confirmedBy: string | null }[] }>('/api/fence')
  ).body
  return pending.some((p) => p.node === 'node-b' && p.confirmedBy === null)
}

/** Waits until `web` runs on `node` (its start decided and its process there). */
export async function webRunsOn(
  hub: HubProcess,
  dir: string,
  node: string,
  timeoutMs = 40_000,
): Promise<void> {
  await eventually(
    `web running on ${node}`,
    async () =>
      (await decisionsOf(hub)).some((d) => d.rule === 'action.start' && d.node === node) &&
      existsSync(webPidfile(dir, node)),
    { timeoutMs },
  ).catch(async (err: Error) => {
    // What the engine did instead, for whoever reads a CI failure.
    const trail = (await decisionsOf(hub))
      .slice(-25)
      .map((d) => `${d.rule} ${d.node ?? ''} ${d.resource ?? ''}`)
    throw new Error(`${err.message}\nlast decisions:\n${trail.join('\n')}`)
  })
}

/** node-b dies (its agent and its copy of web SIGKILLed); its fence then waits for the person. */
export async function killNodeB(
  hub: HubProcess,
  dir: string,
  agentB: VigilProcess | undefined,
): Promise<void> {
  agentB?.kill('SIGKILL')
  process.kill(Number(readFileSync(webPidfile(dir, 'node-b'), 'utf8')), 'SIGKILL')
  await eventually('the fence waits for a person', () => fenceWaitsForPerson(hub), { timeoutMs: 30_000 })
}

/**
 * The person confirms node-b off; then the failover must have completed exactly once: one decision
 * to fence, one confirmation, one placement on node-a, one fence run, web started on node-b (the
 * first placement) and then on node-a, never again.
 */
export async function confirmAndExpectFailoverOnce(hub: HubProcess, dir: string): Promise<void> {
  const confirmed = await runVigil(['fence', 'confirm', 'node-b', '--by', 'oncall', '--hub', hub.httpUrl])
  expect(confirmed.code, confirmed.stderr).toBe(0)
  await webRunsOn(hub, dir, 'node-a')
  await new Promise((r) => setTimeout(r, 1000)) // anything that would repeat has had its chance
  const all = await decisionsOf(hub)
  expect(all.filter((d) => d.rule === 'fence.dead')).toHaveLength(1)
  expect(all.filter((d) => d.rule === 'fence.confirmed')).toHaveLength(1)
  expect(all.filter((d) => d.kind === 'place' && d.node === 'node-a')).toHaveLength(1)
  const db = new Database(hub.dbPath, { readonly: true })
  const starts = db
    .prepare("SELECT node FROM commands WHERE action = 'start' AND json_extract(args, '$.resource') = 'web'")
    .all() as { node: string }[]
  const fenceRuns = db.prepare("SELECT outcome FROM fence_ops WHERE node = 'node-b'").all() as {
    outcome: string
  }[]
  db.close()
  expect(starts.map((s) => s.node)).toEqual(['node-b', 'node-a'])
  expect(fenceRuns.map((f) => f.outcome)).toEqual(['off'])
}
