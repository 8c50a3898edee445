import { execFileSync, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { expect, test } from 'vitest'

const grafana = fileURLToPath(new URL('../../grafana/', import.meta.url))

/** Runs a tool from Debian's packages; the assertion shows its output when it fails. */
function run(cmd: string, args: string[], cwd = grafana) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' })
  return { code: r.status, output: `${r.stdout}${r.stderr}` }
}

test.each([
  [
    'promtool check rules',
    'promtool',
    ['check', 'rules', 'prometheus/vigil-rules.yml'],
    /SUCCESS: 20 rules found/,
  ],
  [
    'promtool test rules (one case per alert)',
    'promtool',
    ['test', 'rules', 'prometheus/vigil-rules.test.yml'],
    /SUCCESS/,
  ],
  [
    'promtool check config (example scrape config)',
    'promtool',
    ['check', 'config', 'prometheus/prometheus.yml'],
    /SUCCESS/,
  ],
  [
    'amtool check-config (example routing)',
    'amtool',
    ['check-config', 'alertmanager/alertmanager.yml'],
    /SUCCESS/,
  ],
  ['dashboards are what grafana/build.mjs builds', process.execPath, ['build.mjs', '--check'], /^$/],
])('%s', (_name, cmd, args, expected) => {
  const r = run(cmd, args as string[])
  expect(r.output).toMatch(expected as RegExp)
  expect(r.code, r.output).toBe(0)
})

test('every alert has a promtool test case', () => {
  const rules = execFileSync('promtool', ['check', 'rules', '--lint=none', 'prometheus/vigil-rules.yml'], {
    cwd: grafana,
    encoding: 'utf8',
  })
  expect(rules).toContain('SUCCESS')
  const text = (file: string) => readFileSync(`${grafana}${file}`, 'utf8')
  const alerts = [...text('prometheus/vigil-rules.yml').matchAll(/- alert: (\w+)/g)].map((m) => m[1])
  const tested = new Set(
    [...text('prometheus/vigil-rules.test.yml').matchAll(/alertname: (\w+)/g)].map((m) => m[1]),
  )
  expect(alerts.length).toBeGreaterThanOrEqual(14)
  expect(alerts.filter((a) => !tested.has(a))).toEqual([])
})
