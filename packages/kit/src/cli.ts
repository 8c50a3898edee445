import { parseArgs } from 'node:util'
import { ConfigError, type Override } from './config.js'

/** How one command-line flag maps onto a config key. */
export interface FlagSpec {
  path: readonly string[]
  type: 'string' | 'number' | 'boolean'
  description: string
}

export interface ParsedFlags {
  configFile: string | undefined
  overrides: Override[]
  positionals: string[]
  /** Flags that are not config keys (e.g. --json), as parsed. */
  extra: Record<string, string | boolean | undefined>
}

/**
 * Parses argv against a table of config flags (plus `--config` and any `extra` flags), so every
 * config option is also settable by flag and a flag always names the key it sets.
 * Unknown flags and malformed numbers are ConfigErrors naming the flag.
 */
export function parseFlags(
  argv: string[],
  table: Record<string, FlagSpec>,
  extra: Record<string, { type: 'string' | 'boolean'; short?: string }> = {},
): ParsedFlags {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    config: { type: 'string', short: 'c' },
  }
  for (const [flag, spec] of Object.entries(table))
    options[flag] = { type: spec.type === 'boolean' ? 'boolean' : 'string' }
  Object.assign(options, extra)
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true })
  } catch (cause) {
    throw new ConfigError([{ key: '', message: (cause as Error).message }])
  }
  const overrides: Override[] = []
  const extras: Record<string, string | boolean | undefined> = {}
  for (const [flag, raw] of Object.entries(parsed.values)) {
    const spec = table[flag]
    if (!spec) {
      if (flag !== 'config') extras[flag] = raw as string | boolean | undefined
      continue
    }
    let value: unknown = raw
    if (spec.type === 'number') {
      value = Number(raw)
      if (raw === '' || !Number.isFinite(value)) {
        throw new ConfigError([
          { key: spec.path.join('.'), message: `--${flag} expects a number, got "${String(raw)}"` },
        ])
      }
    }
    overrides.push({ path: spec.path, value })
  }
  return {
    configFile: parsed.values.config as string | undefined,
    overrides,
    positionals: parsed.positionals,
    extra: extras,
  }
}

/** A usage block listing every flag with the key it sets. */
export function describeFlags(table: Record<string, FlagSpec>): string {
  const row = (left: string, right: string) => `${left.padEnd(34)}${right}`
  const rows = Object.entries(table).map(([flag, spec]) =>
    row(
      `  --${flag}${spec.type === 'boolean' ? '' : ` <${spec.type}>`}`,
      `${spec.description} (${spec.path.join('.')})`,
    ),
  )
  return [row('  -c, --config <file>', 'YAML config file'), ...rows].join('\n')
}
