import type { AuditRow } from '@vigil/hub'
import { table } from './format.js'

/** A decision record as the hub's API returns it (the engine's DecisionRecord). */
export interface Decision {
  id: string
  at: number
  kind: string
  node?: string
  resource?: string
  summary: string
  rule: string
  classification?: string
  evidence?: { channel: string; says: string; alive: boolean | null }[]
  candidates?: { node: string; score: number; eliminated: string | null }[]
  candidatesOmitted?: number
  policyVersion: string
  correlationId: string
  traceId?: string
}

/** What a resource is doing now, from GET /api/resources. */
export interface ResourceNow {
  id: string
  phase: string
  node: string | null
  phaseSince: number
}

const time = (ms: number) => new Date(ms).toISOString().slice(11, 23)

/**
 * `vigil why`: the story of one decision chain in plain words, oldest first. `chain` holds every
 * record that shares the correlation id of the one asked about; `subject` is what the operator
 * typed; `resource` is the resource's present state when the subject is a resource.
 */
export function renderWhy(subject: string, chain: Decision[], resource: ResourceNow | null): string {
  const out: string[] = []
  const last = chain[chain.length - 1]
  if (resource)
    out.push(
      `${resource.id} is ${resource.phase}${resource.node ? ` on ${resource.node}` : ''} since ${time(resource.phaseSince)}.`,
    )
  if (!last) {
    out.push(`No decision about ${subject} is recorded.`)
    return `${out.join('\n')}\n`
  }
  const because = [...chain].reverse().find((d) => d.resource === subject || d.node === subject) ?? last
  out.push(`Last decision: ${because.summary} (rule ${because.rule}).`)
  const trigger = chain.find((d) => d.classification) ?? chain[0]
  if (trigger && trigger !== because)
    out.push(
      `It started with: ${trigger.node ? `${trigger.node}: ` : ''}${trigger.summary} (rule ${trigger.rule}).`,
    )
  out.push(
    '',
    `Timeline (correlation ${last.correlationId}${last.traceId ? `, trace ${last.traceId}` : ''}):`,
  )
  for (const d of chain) {
    const who = [d.node, d.resource].filter(Boolean).join(' / ')
    out.push(`  ${time(d.at)}  ${who.padEnd(16)}  ${d.summary}  [${d.rule}]`)
    for (const e of d.evidence ?? []) {
      const verdict = e.alive === null ? 'no say' : e.alive ? 'alive' : 'silent'
      out.push(`  ${' '.repeat(12)}  evidence ${e.channel} (${verdict}): ${e.says}`)
    }
  }
  const placed = [...chain].reverse().find((d) => d.candidates && d.candidates.length > 0)
  if (placed?.candidates) {
    out.push('', `Candidates for ${placed.resource ?? placed.node} (${placed.summary}):`)
    out.push(
      table(
        ['NODE', 'SCORE', 'OUTCOME'],
        placed.candidates.map((c) => [
          c.node,
          c.eliminated ? '-' : String(c.score),
          c.eliminated
            ? `eliminated: ${c.eliminated}`
            : c.node === placed.node
              ? 'chosen'
              : 'eligible, lower score',
        ]),
      )
        .split('\n')
        .map((l) => `  ${l}`)
        .join('\n'),
    )
    if (placed.candidatesOmitted) out.push(`  ... and ${placed.candidatesOmitted} more`)
  }
  out.push('', `Policy ${last.policyVersion}. Full records: vigil why ${last.id} --json`)
  return `${out.join('\n')}\n`
}

/** One node of the what-if plan (GET /api/plan). */
export interface WhatIf {
  node: string
  moves: { resource: string; to: string }[]
  unplaceable: { resource: string; why: string }[]
}

/** `vigil plan`: for each node running resources, what would happen if it died now. */
export function renderPlan(plan: WhatIf[]): string {
  if (plan.length === 0) return 'No node runs resources: nothing to plan.\n'
  const rows = plan.flatMap((p) => [
    ...p.moves.map((m) => [p.node, m.resource, `would start on ${m.to}`]),
    ...p.unplaceable.map((u) => [p.node, u.resource, `COULD NOT BE PLACED: ${u.why}`]),
  ])
  const short = plan.filter((p) => p.unplaceable.length > 0).map((p) => p.node)
  const verdict = short.length
    ? `Losing ${short.join(' or ')} would leave resources down: add capacity or relax constraints.`
    : 'Every resource could be placed whichever node died.'
  return `${table(['IF THIS NODE DIED', 'RESOURCE', 'THEN'], rows)}\n\n${verdict}\n`
}

/** One row of the hub's audit log (GET /api/audit). */
export type AuditEntry = AuditRow

/** `vigil audit`: newest first, one line each. */
export function renderAudit(rows: AuditEntry[]): string {
  if (rows.length === 0) return 'The audit log is empty.\n'
  return `${table(
    ['WHEN', 'WHO', 'ROLE', 'FROM', 'REQUEST', 'RESULT', 'BODY'],
    rows.map((r) => [
      new Date(r.at).toISOString().replace('T', ' ').slice(0, 19),
      r.who,
      r.role ?? '-',
      r.source,
      `${r.method} ${r.path}`,
      String(r.status),
      r.body ?? '',
    ]),
  )}\n`
}
