// Prints one closing line for the whole suite from every package's vitest JSON report:
//   "tests: N passed, N failed, N skipped"
// Every failed test is repeated at the end with the first lines of its failure, so a CI log that
// keeps only its tail still says what broke.
// Exits 1 if any test failed or if no test ran at all (an empty suite proves nothing).
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const subdirs = (d) =>
  readdirSync(join(root, d), { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => join(d, e.name))
const dirs = [
  ...subdirs('packages'),
  ...subdirs('packages/drivers'),
  ...subdirs('packages/fence'),
  ...subdirs('apps'),
  'test',
].map((d) => join(root, d))

let passed = 0
let failed = 0
let skipped = 0
const failures = []
for (const dir of dirs) {
  const file = join(dir, 'test-results', 'vitest.json')
  if (!existsSync(file)) continue
  const r = JSON.parse(readFileSync(file, 'utf8'))
  passed += r.numPassedTests
  failed += r.numFailedTests
  skipped += r.numPendingTests + (r.numTodoTests ?? 0)
  for (const suite of r.testResults ?? []) {
    for (const t of suite.assertionResults ?? []) {
      if (t.status !== 'failed') continue
      const why = (t.failureMessages ?? []).join('\n').split('\n').slice(0, 6).join('\n      ')
      failures.push(`  ✗ ${dir.slice(root.length)} › ${t.fullName}\n      ${why}`)
    }
    // A file that failed to load (syntax, import, hook) has no failed test but is a failure.
    if (suite.status === 'failed' && !(suite.assertionResults ?? []).some((t) => t.status === 'failed'))
      failures.push(
        `  ✗ ${suite.name}: ${String(suite.message ?? 'failed')
          .split('\n')
          .slice(0, 6)
          .join('\n      ')}`,
      )
  }
  const name = dir.slice(root.length).padEnd(16)
  console.log(
    `  ${name} ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped`,
  )
}
if (failures.length > 0) console.log(`failed:\n${failures.join('\n')}`)
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`)
process.exit(failed > 0 || failures.length > 0 || passed === 0 ? 1 : 0)
