import { hostname } from 'node:os'
import {
  brokerAndLogFlags,
  brokerAuthFields,
  type FlagSpec,
  loadConfigFile,
  logSectionSchema,
  type Override,
} from '@vigil/kit'
import { nameSchema } from '@vigil/protocol'
import { z } from 'zod'
import { diskHeartbeatSchema } from './disk-heartbeat.js'
import { MONITOR_ONLY, resourceEntrySchema } from './drivers.js'
import { isolationSchema } from './isolation.js'
import { peersSchema } from './peers.js'

const name = nameSchema

/** The default node name: the host name, made safe as a topic level. */
export function defaultNodeName(): string {
  const cleaned = hostname()
    .replace(/[^A-Za-z0-9_.-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 63)
  return cleaned || 'node'
}

const brokerUrl = z
  .string()
  .regex(
    /^(mqtts?|wss?):\/\/[^,]+(,(mqtts?|wss?):\/\/[^,]+)*$/,
    'must be an mqtt://, mqtts://, ws:// or wss:// URL (several: comma-separated)',
  )

export const agentConfigSchema = z
  .strictObject({
    cluster: name.default('default'),
    node: name.default(defaultNodeName),
    role: z.enum(['host', 'guest']).default('host'),
    mqtt: z
      .strictObject({
        /**
         * The broker, or every broker of a hub group (each hub's embedded one): the agent is
         * connected to each and says everything on each, so losing any one loses nothing.
         * A flag may give several, comma-separated.
         */
        url: z
          .union([brokerUrl, z.array(brokerUrl).min(1, 'needs at least one broker URL')])
          .default('mqtt://127.0.0.1:1883')
          .transform((v) => (Array.isArray(v) ? v : v.split(',')))
          .refine((v) => new Set(v).size === v.length, 'names a broker twice'),
        ...brokerAuthFields,
        keepaliveSeconds: z.number().int().min(1).max(600).default(5),
      })
      .prefault({}),
    heartbeat: z
      .strictObject({ intervalMs: z.number().int().min(10).max(600_000).default(250) })
      .prefault({}),
    facts: z
      .strictObject({ intervalMs: z.number().int().min(1000).max(86_400_000).default(30_000) })
      .prefault({}),
    /** Events kept while the broker is unreachable; the oldest are dropped (and counted) beyond this. */
    eventBuffer: z
      .strictObject({ capacity: z.number().int().min(1).max(1_000_000).default(1000) })
      .prefault({}),
    reconnect: z
      .strictObject({
        minMs: z.number().int().min(10).default(250),
        maxMs: z.number().int().min(10).default(10_000),
      })
      .prefault({})
      .refine((r) => r.maxMs >= r.minMs, { message: 'maxMs must be at least minMs', path: ['maxMs'] }),
    /** Resources this agent watches and acts on, each through a driver (see packages/drivers/). */
    resources: z.array(resourceEntrySchema).default([]),
    /** The hub's command signing key (public half, PEM): commands that do not verify never run. */
    commands: z
      .strictObject({
        hubPublicKeyFile: z.string().min(1).optional(),
        /**
         * Run commands nobody signed (no hubPublicKeyFile): anyone who can publish on this agent's
         * command topic could then stop its resources. For tests and throwaway setups only.
         */
        allowUnsigned: z.boolean().default(false),
        /** Where the replay floor (newest epoch and seq run) is kept across restarts (recommended). */
        stateFile: z.string().min(1).optional(),
      })
      .prefault({})
      .refine((c) => c.hubPublicKeyFile !== undefined || c.allowUnsigned, {
        message:
          "required: the hub's command signing public key (its <db>.pub.pem); only commands it signed run (commands.allowUnsigned: true runs unsigned ones, for tests only)",
        path: ['hubPublicKeyFile'],
      }),
    /** Self-fence: what this host does when it loses the hub and every peer (docs/fencing.md). */
    isolation: isolationSchema,
    /** The UDP heartbeat mesh between host agents (an independent channel for the hub's detection). */
    peers: peersSchema,
    /** The shared-disk heartbeat (SBD-like): a third channel, alive while the network is not. */
    diskHeartbeat: diskHeartbeatSchema,
    log: logSectionSchema,
  })
  .superRefine((c, ctx) => {
    const byId = new Map(c.resources.map((r) => [r.id, r]))
    c.resources.forEach((r, i) => {
      if (c.resources.findIndex((o) => o.id === r.id) !== i)
        ctx.addIssue({ code: 'custom', message: `"${r.id}" is listed twice`, path: ['resources', i, 'id'] })
      if (r.vouchesFor === undefined) return
      const target = byId.get(r.vouchesFor)
      const problem =
        target === undefined
          ? `names no resource of this agent ("${r.vouchesFor}")`
          : r.vouchesFor === r.id
            ? 'a resource cannot vouch for itself'
            : MONITOR_ONLY.has(target.driver as string)
              ? `"${r.vouchesFor}" is a watch too (${target.driver}): vouch for what it watches`
              : !MONITOR_ONLY.has(r.driver as string)
                ? `only a watch (${[...MONITOR_ONLY].join(', ')}) vouches for a resource; ${r.driver} has its own monitor`
                : target.vouchesFor !== undefined
                  ? `"${r.vouchesFor}" vouches for another resource itself`
                  : null
      if (problem) ctx.addIssue({ code: 'custom', message: problem, path: ['resources', i, 'vouchesFor'] })
    })
  })
  .refine(
    // Between broker pings nothing arrives: a shorter isolation time would fire on a healthy link.
    (c) => c.isolation.afterMs === undefined || c.isolation.afterMs > 2 * c.mqtt.keepaliveSeconds * 1000,
    {
      message: 'must be more than twice mqtt.keepaliveSeconds (the broker answers pings only that often)',
      path: ['isolation', 'afterMs'],
    },
  )

export type AgentConfig = z.output<typeof agentConfigSchema>

export const agentFlags: Record<string, FlagSpec> = {
  ...brokerAndLogFlags,
  cluster: { path: ['cluster'], type: 'string', description: 'cluster name' },
  node: { path: ['node'], type: 'string', description: "this node's name (default: host name)" },
  role: { path: ['role'], type: 'string', description: 'host or guest' },
  'mqtt-url': {
    path: ['mqtt', 'url'],
    type: 'string',
    description: 'broker URL (a hub group: every broker, comma-separated)',
  },
  'heartbeat-interval': {
    path: ['heartbeat', 'intervalMs'],
    type: 'number',
    description: 'heartbeat interval in ms',
  },
  'hub-key': {
    path: ['commands', 'hubPublicKeyFile'],
    type: 'string',
    description: "the hub's command signing public key (PEM file)",
  },
  'allow-unsigned-commands': {
    path: ['commands', 'allowUnsigned'],
    type: 'boolean',
    description: 'run commands nobody signed (tests and throwaway setups only)',
  },
  'facts-interval': {
    path: ['facts', 'intervalMs'],
    type: 'number',
    description: 'facts refresh interval in ms',
  },
}

export function loadAgentConfig(file: string | undefined, overrides: Override[] = []): AgentConfig {
  return loadConfigFile(agentConfigSchema, file, overrides)
}
