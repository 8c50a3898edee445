import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, test } from 'vitest'
import { loadHubConfig } from './config.js'

// Every fence driver folder's README shows its device entries as they go under the hub's
// `fencing.devices`: each one is loaded here exactly as the hub loads its file.
const fenceDir = fileURLToPath(new URL('../../../packages/fence/', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'vigil-fence-examples-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const yamlBlocks = (markdown: string): string[] =>
  [...markdown.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] as string)

test.each(readdirSync(fenceDir))(
  'packages/fence/%s: every README sample loads as fencing.devices',
  (folder) => {
    const samples = yamlBlocks(readFileSync(join(fenceDir, folder, 'README.md'), 'utf8'))
    expect(samples.length, 'a fence driver folder shows at least one sample device').toBeGreaterThan(0)
    const drivers = new Set<string>()
    samples.forEach((sample, i) => {
      const file = join(dir, `${folder}-${i + 1}.yaml`)
      const indented = sample
        .split('\n')
        .map((line) => (line ? `    ${line}` : line))
        .join('\n')
      writeFileSync(file, `fencing:\n  devices:\n${indented}`)
      for (const d of loadHubConfig(file).fencing.devices) drivers.add(d.driver)
    })
    expect(drivers.has(folder)).toBe(true)
  },
)
