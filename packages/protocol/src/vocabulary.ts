/**
 * The words every Vigil package shares: the grammar of names and ids, and what a fence device can
 * answer. Declared here once and imported everywhere (engine, agent, hub, drivers, fence kit, CLI).
 *
 * This module is pure (zod only, no Node builtin) so the engine may import it through
 * `@vigil/protocol/vocabulary`; the package root also loads command signing (node:crypto).
 *
 * @example
 * import { idSchema, isValidName } from '@vigil/protocol/vocabulary'
 * isValidName('node-a') // true
 * idSchema.parse('vm:web-1') // 'vm:web-1'
 */
import { z } from 'zod'

/** Cluster, node and hub names: safe as MQTT topic levels, metric label values and file names. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/

export function isValidName(name: string): boolean {
  return NAME_PATTERN.test(name)
}

/** A cluster, node or hub name: safe as a topic level, label value and file name. */
export const nameSchema = z
  .string()
  .regex(NAME_PATTERN, 'must be 1-63 characters of letters, digits, "_", "." or "-"')

/**
 * Ids in the cluster file and configs (nodes, resources, groups, fence devices): a name that may
 * also hold ":" (`vm:web-1`). Ids never travel as topic levels; a node's id is its name, so a node
 * that runs an agent must also satisfy NAME_PATTERN.
 */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$/

export const idSchema = z
  .string()
  .regex(ID_PATTERN, 'must be 1-63 characters of letters, digits, "_", ".", ":" or "-"')

/**
 * What one fence device reports for a node after powering its plugs off and reading them back:
 * `off` (every plug read off: the only outcome that confirms a node dead), `unreachable`,
 * `auth-failed` (credentials or configuration: retrying the same device will not help),
 * `still-on` (the device answered but the plug stayed on) or `timeout` (no conclusion in time).
 */
export const FENCE_OUTCOMES = ['off', 'unreachable', 'auth-failed', 'still-on', 'timeout'] as const
export type FenceOutcome = (typeof FENCE_OUTCOMES)[number]
