import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, test } from 'vitest'
import { loadAgentConfig } from './config.js'
import type { ResourceEntry } from './drivers.js'

// Every driver folder's README shows its config as agent.yaml fragments: each one is loaded here
// exactly as the agent loads its file, so a sample that drifts from the schema fails the build.
const driversDir = fileURLToPath(new URL('../../../packages/drivers/', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'vigil-driver-examples-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const yamlBlocks = (markdown: string): string[] =>
  [...markdown.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] as string)

test.each(readdirSync(driversDir))(
  'packages/drivers/%s: every README sample loads as agent.yaml',
  (folder) => {
    const samples = yamlBlocks(readFileSync(join(driversDir, folder, 'README.md'), 'utf8'))
    expect(samples.length, 'a driver folder shows at least one sample config').toBeGreaterThan(0)
    const drivers = new Set<string>()
    samples.forEach((sample, i) => {
      const file = join(dir, `${folder}-${i + 1}.yaml`)
      // The samples show resources; the agent's other sections keep their defaults.
      writeFileSync(file, `commands: { allowUnsigned: true }\n${sample}`)
      for (const r of loadAgentConfig(file).resources as ResourceEntry[]) drivers.add(r.driver)
    })
    expect([...drivers].some((d) => d === folder || d.startsWith(`${folder}-`))).toBe(true)
  },
)
