import type { z } from 'zod'
import {
  commandResultSchema,
  commandSchema,
  eventSchema,
  factsSchema,
  heartbeatSchema,
  observationBatchSchema,
  statusSchema,
} from './schemas.js'
import type { NodeChannel } from './topics.js'

export const CHANNEL_SCHEMAS = {
  hb: heartbeatSchema,
  status: statusSchema,
  facts: factsSchema,
  obs: observationBatchSchema,
  event: eventSchema,
  cmd: commandSchema,
  ack: commandResultSchema,
} as const satisfies Record<NodeChannel, z.ZodType>

export type ChannelPayload<C extends NodeChannel> = z.infer<(typeof CHANNEL_SCHEMAS)[C]>

/** Largest accepted payload per channel, in bytes; bigger ones are rejected before parsing. */
export const MAX_PAYLOAD_BYTES: Record<NodeChannel, number> = {
  hb: 1024,
  status: 64 * 1024,
  facts: 512 * 1024,
  obs: 256 * 1024,
  event: 8 * 1024,
  cmd: 8 * 1024,
  ack: 16 * 1024,
}

/** Why a message was rejected. Closed set: it is a metric label. */
export const REJECT_REASONS = ['unknown_topic', 'too_large', 'not_json', 'schema', 'node_mismatch'] as const
export type RejectReason = (typeof REJECT_REASONS)[number]

export interface DecodeError {
  reason: RejectReason
  /** Dotted path of the offending field, when there is one (e.g. `filesystems.3.sizeBytes`). */
  field?: string
  message: string
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: DecodeError }

/**
 * Decodes one payload of a channel. Never throws: any input yields a typed value or a DecodeError
 * naming the field. With `expectedNode`, a payload that speaks for another node is rejected.
 */
export function decode<C extends NodeChannel>(
  channel: C,
  payload: Uint8Array | string,
  expectedNode?: string,
): Decoded<ChannelPayload<C>> {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength
  const limit = MAX_PAYLOAD_BYTES[channel]
  if (size > limit) {
    return fail('too_large', `payload of ${size} bytes exceeds the ${limit}-byte limit for "${channel}"`)
  }
  let json: unknown
  try {
    json = JSON.parse(typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8'))
  } catch {
    return fail('not_json', 'payload is not valid JSON')
  }
  const result = CHANNEL_SCHEMAS[channel].safeParse(json)
  if (!result.success) {
    const issue = result.error.issues[0]
    const path = issue?.path.map(String) ?? []
    if (issue?.code === 'unrecognized_keys') path.push(issue.keys[0] ?? '')
    const field = path.join('.')
    return fail('schema', `${field || '(payload)'}: ${issue?.message ?? 'invalid'}`, field || undefined)
  }
  const value = result.data as ChannelPayload<C>
  if (expectedNode !== undefined && channel !== 'cmd') {
    const speaker = (value as { node: string }).node
    if (speaker !== expectedNode) {
      return fail(
        'node_mismatch',
        `node: payload says "${speaker}" on the topic of "${expectedNode}"`,
        'node',
      )
    }
  }
  return { ok: true, value }
}

/** Serialises a payload after validating it, so a sender bug fails at the sender. */
export function encode<C extends NodeChannel>(channel: C, value: ChannelPayload<C>): string {
  const parsed = CHANNEL_SCHEMAS[channel].parse(value)
  return JSON.stringify(parsed)
}

function fail(reason: RejectReason, message: string, field?: string): { ok: false; error: DecodeError } {
  return { ok: false, error: field === undefined ? { reason, message } : { reason, field, message } }
}
