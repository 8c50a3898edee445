import type { z } from 'zod'

/**
 * The dotted keys a schema rejects in `value` (an unknown key is reported by its own name), or null
 * if it accepts it. For "invalid config names the key" checks.
 */
export function rejectedKeys(schema: z.ZodType, value: unknown): string[] | null {
  const result = schema.safeParse(value)
  if (result.success) return null
  return result.error.issues.map((i) =>
    [...i.path, ...(i.code === 'unrecognized_keys' ? i.keys : [])].join('.'),
  )
}
