import { writeFileSync } from 'node:fs'
import { afterAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { decisionsOf } from '../harness/failover.js'
import { startHub } from '../harness/hub.js'
import { runVigil, tempDir, writeLines } from '../harness/processes.js'

// `vigil cluster reload`: the hub re-reads its cluster file without a restart. --check shows what
// would change and changes nothing; a bad file is refused naming file, line and key, and the hub
// keeps the spec it had; a good one is applied and recorded.
const dir = tempDir('reload')
afterAll(() => dir.remove())

test('a cluster file reloaded: checked, refused when wrong, applied and recorded when right', async () => {
  const lines = ['nodes:', '  - id: n1', '  - id: n2', 'resources:', '  - id: web', '']
  const clusterFile = writeLines(dir.path, 'cluster.yaml', lines)
  const hub = await startHub(dir.path, ['--cluster-file', clusterFile])
  try {
    const resources = async () =>
      (await hub.api<{ resources: { id: string }[] }>('/api/resources')).body.resources
        .map((r) => r.id)
        .sort()
    expect(await resources()).toEqual(['web'])
    writeFileSync(clusterFile, [...lines.slice(0, -1), '  - id: db', '    dependsOn: [web]', ''].join('\n'))

    const check = await runVigil(['cluster', 'reload', '--check', '--hub', hub.httpUrl])
    expect(check.code, check.stderr).toBe(0)
    expect(check.stdout).toContain('+ resource db')
    expect(check.stdout).toContain('checked only')
    expect(await resources()).toEqual(['web'])

    // A dependency cycle: refused with its file, line and key; the hub keeps what it had.
    writeFileSync(
      clusterFile,
      [...lines.slice(0, -1), '    dependsOn: [db]', '  - id: db', '    dependsOn: [web]', ''].join('\n'),
    )
    const bad = await runVigil(['cluster', 'reload', '--hub', hub.httpUrl])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/cluster\.yaml:\d+:\d+: resources\.\d\.dependsOn: a dependency cycle/)
    expect(await resources()).toEqual(['web'])

    writeFileSync(clusterFile, [...lines.slice(0, -1), '  - id: db', '    dependsOn: [web]', ''].join('\n'))
    const applied = await runVigil(['cluster', 'reload', '--hub', hub.httpUrl])
    expect(applied.code, applied.stderr).toBe(0)
    expect(applied.stdout).toContain('+ resource db')
    await eventually('db known to the engine', async () => (await resources()).includes('db'))
    // web leaves the file while not stopped: refused (nothing would stop or watch it any more).
    writeFileSync(
      clusterFile,
      ['nodes:', '  - id: n1', '  - id: n2', 'resources:', '  - id: db', ''].join('\n'),
    )
    const orphan = await runVigil(['cluster', 'reload', '--hub', hub.httpUrl])
    expect(orphan.code).toBe(1)
    expect(orphan.stderr).toMatch(/resource web leaves the file but is \w+: vigil resource stop web first/)
    const reload = (await decisionsOf(hub)).find((d) => d.rule === 'operator.reload') as
      | { summary?: string }
      | undefined
    expect(reload?.summary).toBe('operator: cluster file reloaded: + resource db')
  } finally {
    await hub.process.stop()
  }
})
