// bench/store: can the hub's SQLite store keep up with a chaos hour, and does its retention keep it
// bounded without holding the event loop? Writes the history of --faults faults (each: decision
// records, events, commands and fence runs, as a host crash produces them, with margin) as fast as
// the store takes them, timing each fault's writes; states the database's size; then prunes it all
// as store.retention does (batches of 5,000 rows per table), timing each batch: the longest is how
// long a prune holds the hub's event loop.
//   node bench/store/run.mjs [--faults 1000] [--decisions 40] [--events 40] [--runs 3]
// Prints JSON, then a table. Medians over --runs runs, each on a fresh database.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { markdownTable, median, quantile } from '../lib.mjs'

const { HubStore } = await import(new URL('../../apps/hub/dist/store.js', import.meta.url).href)

const { values } = parseArgs({
  options: {
    faults: { type: 'string', default: '1000' },
    decisions: { type: 'string', default: '40' },
    events: { type: 'string', default: '40' },
    runs: { type: 'string', default: '3' },
  },
})
const FAULTS = Number(values.faults)
const DECISIONS = Number(values.decisions)
const EVENTS = Number(values.events)
const COMMANDS = 5
const FENCE_OPS = 2
const HOUR_MS = 3_600_000

/** A decision record of the size the engine writes (evidence and candidates included). */
function decision(fault, i, at) {
  return {
    id: `d-${fault}-${i}`,
    at,
    kind: i % 3 === 0 ? 'node-condition' : 'resource-phase',
    node: `node${fault % 50}`,
    resource: `web${fault % 200}`,
    summary: `healthy -> suspect: every channel silent for 200 ms (fault ${fault}, step ${i})`,
    rule: 'classify.suspect',
    classification: 'suspect',
    evidence: [
      { channel: 'hub', says: 'silent for 412 ms (phi 9.1)' },
      { channel: 'peers', says: 'no peer hears it' },
      { channel: 'disk', says: 'its slot still for 400 ms' },
    ],
    candidates: [
      { node: 'node2', score: 10 },
      { node: 'node3', score: 0, eliminated: 'it just failed here' },
    ],
    policyVersion: 'p-1',
    correlationId: `d-${fault}-0`,
  }
}

function run() {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-store-'))
  const store = new HubStore(join(dir, 'hub.sqlite'))
  const start = 1_800_000_000_000
  const perFault = []
  const t0 = performance.now()
  for (let f = 0; f < FAULTS; f++) {
    const at = start + Math.floor((f * HOUR_MS) / FAULTS)
    const a = performance.now()
    store.appendDecisions(Array.from({ length: DECISIONS }, (_, i) => decision(f, i, at + i)))
    for (let i = 0; i < EVENTS; i++)
      store.appendEvent({
        at: at + i,
        node: `node${f % 50}`,
        source: 'hub',
        kind: 'node.condition',
        severity: 'warning',
        message: `node${f % 50}: healthy -> suspect`,
        attrs: { fault: f, i },
      })
    for (let i = 0; i < COMMANDS; i++)
      store.insertCommand({
        id: `c-${f}-${i}`,
        node: `node${f % 50}`,
        action: 'start',
        args: { resource: `web${f % 200}` },
        epoch: 1,
        seq: f * COMMANDS + i,
        issuedAt: at + i,
        expiresAt: at + i + 5000,
      })
    for (let i = 0; i < FENCE_OPS; i++)
      store.appendFenceOp({
        at: at + i,
        node: `node${f % 50}`,
        device: `bmc-${f % 50}`,
        actionId: `a-${f}-${i}`,
        decision: `d-${f}-0`,
        level: i,
        outcome: 'off',
        detail: 'the target read back off',
        durationMs: 120,
        steps: [
          { at: at + i, step: 'off' },
          { at: at + i + 60, step: 'status', said: 'off' },
        ],
      })
    perFault.push(performance.now() - a)
  }
  const writeSeconds = (performance.now() - t0) / 1000
  store.probe(start) // checkpoints the WAL into the database file
  const sizeMiB = store.sizeBytes() / 2 ** 20
  const rows = FAULTS * (DECISIONS + EVENTS + COMMANDS + FENCE_OPS)
  const batches = []
  let more = true
  while (more) {
    const a = performance.now()
    more = store.prune(start + HOUR_MS + 1).more
    batches.push(performance.now() - a)
  }
  store.close()
  rmSync(dir, { recursive: true, force: true })
  return {
    rows,
    rowsPerSecond: rows / writeSeconds,
    faultWriteMedianMs: median(perFault),
    faultWriteP99Ms: quantile(perFault, 0.99),
    faultWriteMaxMs: Math.max(...perFault),
    sizeMiB,
    pruneBatches: batches.length,
    pruneBatchMaxMs: Math.max(...batches),
    pruneTotalMs: batches.reduce((s, b) => s + b, 0),
  }
}

const runs = Array.from({ length: Number(values.runs) }, run)
const m = (k) => median(runs.map((r) => r[k]))
const needed = (FAULTS * (DECISIONS + EVENTS + COMMANDS + FENCE_OPS)) / 3600
const result = {
  faults: FAULTS,
  rowsPerFault: DECISIONS + EVENTS + COMMANDS + FENCE_OPS,
  runs: runs.length,
  neededRowsPerSecond: needed,
  rowsPerSecond: m('rowsPerSecond'),
  headroom: m('rowsPerSecond') / needed,
  faultWriteMedianMs: m('faultWriteMedianMs'),
  faultWriteP99Ms: m('faultWriteP99Ms'),
  faultWriteMaxMs: m('faultWriteMaxMs'),
  sizeMiB: m('sizeMiB'),
  pruneBatchMaxMs: m('pruneBatchMaxMs'),
  pruneTotalMs: m('pruneTotalMs'),
  raw: runs,
}
console.log(JSON.stringify(result, null, 2))
const f1 = (x) => x.toFixed(1)
console.log(
  `\n${markdownTable(
    [
      {
        what: `rows written per second (a chaos hour needs ${f1(needed)})`,
        median: Math.round(result.rowsPerSecond),
      },
      { what: 'one fault written, median ms', median: f1(result.faultWriteMedianMs) },
      { what: 'one fault written, p99 ms', median: f1(result.faultWriteP99Ms) },
      { what: `database size after ${FAULTS} faults, MiB`, median: f1(result.sizeMiB) },
      { what: 'prune: longest batch (event loop held), ms', median: f1(result.pruneBatchMaxMs) },
      { what: 'prune: the whole hour, ms', median: f1(result.pruneTotalMs) },
    ],
    ['what', 'median'],
  )}`,
)
