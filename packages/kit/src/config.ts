import { readFileSync } from 'node:fs'
import { type Document, isMap, LineCounter, parseDocument } from 'yaml'
import type { z } from 'zod'
import { VigilError } from './errors.js'

/** One problem in a config, located as precisely as the source allows. */
export interface ConfigProblem {
  /** Dotted key path, e.g. `mqtt.url`; empty for the document root. */
  key: string
  message: string
  file?: string
  line?: number
  column?: number
}

export class ConfigError extends VigilError {
  constructor(readonly problems: ConfigProblem[]) {
    super('config_invalid', problems.map(formatProblem).join('\n'))
  }
}

export function formatProblem(p: ConfigProblem): string {
  const where = p.file ? `${p.file}${p.line ? `:${p.line}:${p.column ?? 1}` : ''}: ` : ''
  return `${where}${p.key || '(root)'}: ${p.message}`
}

/**
 * A check of a valid config against something outside it (another file's timings): each problem
 * names its key path, and is located in the file like a schema error.
 */
export type CrossCheck<T> = (config: T) => { path: string[]; message: string }[]

/** A value from a command-line flag or an environment variable, to lay over the file's values. */
export interface Override {
  path: readonly string[]
  value: unknown
}

/**
 * Parses YAML text, applies overrides, validates with a strict zod schema and returns the typed
 * config, or throws a ConfigError whose problems name the file, line and key.
 * Unknown keys are errors (schemas are built with z.strictObject): a typo must not be ignored.
 */
export function parseConfig<S extends z.ZodType>(
  schema: S,
  text: string,
  options: { file?: string; overrides?: Override[]; check?: CrossCheck<z.output<S>> } = {},
): z.output<S> {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  const file = options.file
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0])
        return {
          key: '',
          message: `YAML syntax: ${e.message.split('\n')[0]}`,
          file,
          line: pos.line,
          column: pos.col,
        }
      }),
    )
  }
  let raw: unknown
  try {
    // Aliases resolve here: an unknown one, or one expanding into a bomb, is the file's fault.
    raw = doc.contents === null ? {} : doc.toJS({ maxAliasCount: 1000 })
  } catch (err) {
    throw new ConfigError([{ key: '', message: `YAML: ${(err as Error).message.split('\n')[0]}`, file }])
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError([{ key: '', message: 'expected a mapping of keys to values', file }])
  }
  const merged = structuredClone(raw) as Record<string, unknown>
  for (const o of options.overrides ?? []) setPath(merged, o.path, o.value)

  const result = schema.safeParse(merged)
  if (result.success) {
    const found = options.check?.(result.data) ?? []
    if (found.length === 0) return result.data
    throw new ConfigError(found.map((p) => locate(doc, lineCounter, p.path, p.message, file)))
  }
  const problems: ConfigProblem[] = []
  for (const issue of result.error.issues) {
    const path = issue.path.map(String)
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) {
        problems.push(
          locate(
            doc,
            lineCounter,
            [...path, k],
            'unknown key (a typo, or an option that does not exist)',
            file,
          ),
        )
      }
    } else {
      problems.push(locate(doc, lineCounter, path, issue.message, file))
    }
  }
  throw new ConfigError(problems)
}

/** Reads and parses a config file; a missing file with `optional` yields the schema's defaults. */
export function loadConfigFile<S extends z.ZodType>(
  schema: S,
  file: string | undefined,
  overrides: Override[] = [],
  check?: CrossCheck<z.output<S>>,
): z.output<S> {
  if (!file) return parseConfig(schema, '', { overrides, check })
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (cause) {
    throw new VigilError('config_unreadable', `${file}: cannot read config file`, { cause })
  }
  return parseConfig(schema, text, { file, overrides, check })
}

function locate(
  doc: Document,
  lineCounter: LineCounter,
  path: string[],
  message: string,
  file: string | undefined,
): ConfigProblem {
  const key = path.join('.')
  // Walk down to the deepest node that exists in the file, preferring the key's own position.
  let line: number | undefined
  let column: number | undefined
  for (let depth = path.length; depth >= 0; depth--) {
    const parentPath = path.slice(0, Math.max(0, depth - 1))
    const parent = parentPath.length === 0 ? doc.contents : doc.getIn(parentPath, true)
    if (depth > 0 && isMap(parent)) {
      const pair = parent.items.find(
        (it) => String((it.key as { value?: unknown })?.value ?? it.key) === path[depth - 1],
      )
      const range = (pair?.key as { range?: [number, number, number] } | undefined)?.range
      if (range) {
        const pos = lineCounter.linePos(range[0])
        line = pos.line
        column = pos.col
        break
      }
    }
  }
  return { key, message, file, line, column }
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let cursor: Record<string, unknown> = target
  for (const [i, segment] of path.entries()) {
    if (i === path.length - 1) {
      cursor[segment] = value
      return
    }
    const next = cursor[segment]
    if (next === null || typeof next !== 'object' || Array.isArray(next)) cursor[segment] = {}
    cursor = cursor[segment] as Record<string, unknown>
  }
}
