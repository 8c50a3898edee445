#!/usr/bin/env node
// bench/startup-failures: how long `vigil hub` takes to exit when it cannot start (issue "a hub
// that cannot start says so in one line and exits"). Not a test: prints JSON and a table.
//
//   node bench/startup-failures/run.mjs [--runs 10]
//
// Each bad start runs `--runs` times; measured from spawn to exit. `vigil --help` (Node.js and the
// CLI loading, nothing else) is the baseline: the difference is what the hub adds before it exits.
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { freePort, markdownTable, median } from '../lib.mjs'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '10' } } })
const runs = Number(values.runs)
const vigilBin = join(import.meta.dirname, '..', '..', 'apps/cli/bin/vigil.js')
const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-startfail-'))

const busy = createServer()
await new Promise((resolve) => busy.listen(0, '127.0.0.1', resolve))
const busyPort = busy.address().port
const deadPort = await freePort()
writeFileSync(join(dir, 'c.yaml'), 'resources:\n  - id: x\n    kind: proc\n')
writeFileSync(join(dir, 'corrupt.sqlite'), 'not a database '.repeat(100))

const hub = (n, ...args) => [
  'hub',
  ...[
    '--listen',
    '127.0.0.1:0',
    '--broker-listen',
    '127.0.0.1:0',
    '--db',
    join(dir, `db-${n}`, 'hub.sqlite'),
  ],
  ...args,
]
const cases = [
  { name: 'vigil --help (baseline)', args: () => ['--help'], code: 0 },
  { name: 'invalid cluster file', args: (n) => hub(n, '--cluster-file', join(dir, 'c.yaml')), code: 2 },
  { name: 'HTTP port taken', args: (n) => [...hub(n), '--listen', `127.0.0.1:${busyPort}`], code: 1 },
  {
    name: 'broker port taken',
    args: (n) => [...hub(n), '--broker-listen', `127.0.0.1:${busyPort}`],
    code: 1,
  },
  {
    name: 'database directory missing',
    args: (n) => [...hub(n), '--db', join(dir, 'none', 'x.sqlite')],
    code: 1,
  },
  { name: 'database corrupt', args: (n) => [...hub(n), '--db', join(dir, 'corrupt.sqlite')], code: 1 },
  {
    name: 'external broker unreachable (deadline 1 s)',
    args: (n) => [...hub(n), '--mqtt-url', `mqtt://127.0.0.1:${deadPort}`, '--mqtt-start-deadline', '1000'],
    code: 1,
  },
]

function timeExit(args) {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint()
    const child = spawn(process.execPath, [vigilBin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d) => {
      stderr += d
    })
    child.on('exit', (code) =>
      resolve({
        ms: Number(process.hrtime.bigint() - started) / 1e6,
        code,
        lines: stderr.trim().split('\n').length,
      }),
    )
  })
}

const results = []
for (const c of cases) {
  const ms = []
  const codes = new Set()
  let lines = 0
  for (let i = 0; i < runs; i++) {
    const n = `${results.length}-${i}`
    mkdirSync(join(dir, `db-${n}`), { recursive: true })
    const r = await timeExit(c.args(n))
    ms.push(r.ms)
    codes.add(r.code)
    lines = r.lines
  }
  results.push({
    case: c.name,
    runs,
    'median ms': Math.round(median(ms)),
    'max ms': Math.round(Math.max(...ms)),
    'exit code': [...codes].join(','),
    'stderr lines': c.code === 0 ? '-' : lines,
  })
}
busy.close()
rmSync(dir, { recursive: true, force: true })
const baseline = results[0]['median ms']
for (const r of results) r['over baseline ms'] = r['median ms'] - baseline
console.log(JSON.stringify({ bench: 'startup-failures', at: new Date().toISOString(), results }, null, 2))
console.log(`\nvigil hub that cannot start: spawn to exit, ${runs} runs each:\n`)
console.log(
  markdownTable(results, [
    'case',
    'runs',
    'median ms',
    'max ms',
    'over baseline ms',
    'exit code',
    'stderr lines',
  ]),
)
