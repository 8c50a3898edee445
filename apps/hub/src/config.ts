import { readFileSync } from 'node:fs'
import { type ClusterSpec, checkClusterSpec, clusterSpecSchema } from '@vigil/engine'
import {
  brokerAndLogFlags,
  brokerAuthFields,
  type FlagSpec,
  loadConfigFile,
  logSectionSchema,
  type Override,
  parseConfig,
  VigilError,
} from '@vigil/kit'
import { nameSchema } from '@vigil/protocol'
import { z } from 'zod'
import { apiSchema } from './auth.js'
import { brokerTlsSchema } from './broker.js'
import { fencingSchema } from './fencing.js'
import { groupSchema } from './group.js'
import { tracingSchema } from './tracing.js'

const hostPort = z
  .string()
  .regex(
    /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/,
    'must be host:port, e.g. 127.0.0.1:1883 (port 0 picks a free one)',
  )

const name = nameSchema

/** The hub's config file (YAML). Every key has a default that works on one machine. */
export const hubConfigSchema = z.strictObject({
  cluster: name.default('default'),
  /** This hub's name, the `issuer.hub` of its commands. */
  name: name.default('hub'),
  /** The cluster node this hub runs on, if it runs on one: this hub never fences it. */
  node: name.optional(),
  http: z.strictObject({ listen: hostPort.default('127.0.0.1:7470') }).prefault({}),
  /** Who may use the API: bearer tokens with roles (viewer, operator, admin), rate limits. */
  api: apiSchema,
  /** Used when `mqtt.url` is unset: an in-process broker (aedes). */
  broker: z
    .strictObject({
      listen: hostPort.default('127.0.0.1:1883'),
      /**
       * Clients without credentials or certificate may publish any node's agent channels (never
       * commands). Default: allowed only while neither credentialsFile nor mutual TLS is set (the demo).
       */
      allowAnonymous: z.boolean().optional(),
      /** Agents' passwords (SHA-256 digests; `vigil credentials issue`): user name = node name. */
      credentialsFile: z.string().min(1).optional(),
      /** TLS for the broker's listener; with requireClientCert, mutual TLS (certificate CN = node). */
      tls: brokerTlsSchema.optional(),
    })
    .prefault({}),
  /** An external broker (e.g. mosquitto). Setting `url` disables the embedded broker. */
  mqtt: z
    .strictObject({
      url: z
        .string()
        .regex(/^(mqtts?|wss?):\/\/.+/, 'must be an mqtt://, mqtts://, ws:// or wss:// URL')
        .optional(),
      ...brokerAuthFields,
      /**
       * An external broker not reached within this at start: the hub exits 1 (its supervisor
       * retries). 0 waits for ever. Once connected, a lost broker is always waited for.
       */
      startDeadlineMs: z.number().int().min(0).max(3_600_000).default(30_000),
    })
    .prefault({}),
  store: z
    .strictObject({
      path: z.string().min(1).default('vigil-hub.sqlite'),
      /**
       * History older than this is pruned (events, decision records, fence runs, commands), at start
       * and every `everyMs`; the audit log is kept whole. `maxAgeDays: 0` keeps everything.
       */
      retention: z
        .strictObject({
          maxAgeDays: z.number().min(0).max(36_500).default(90),
          everyMs: z.number().int().min(1000).max(86_400_000).default(3_600_000),
        })
        .prefault({}),
    })
    .prefault({}),
  /** Removed: said so by name rather than as an unknown key (configs of earlier hubs have it). */
  liveness: z
    .never({
      error:
        "is no longer used: nodes are judged by the engine, whose timings are the cluster file's `detection` section; remove it",
    })
    .optional(),
  commands: z
    .strictObject({
      /** How long a command stays valid at the agent. */
      ttlMs: z.number().int().min(100).max(3_600_000).default(5000),
      /**
       * How long the hub waits for the agent to accept a command; the result is then awaited for
       * the action's deadline as the agent declares it (its driver's), plus this.
       */
      timeoutMs: z.number().int().min(100).max(3_600_000).default(5000),
    })
    .prefault({}),
  engine: z
    .strictObject({
      /** Cluster definition (nodes, fence levels, resources, policies). Without it the engine only observes. */
      clusterFile: z.string().optional(),
      tickMs: z.number().int().min(10).max(5000).default(100),
    })
    .prefault({}),
  /** OpenTelemetry: one trace per incident, exported over OTLP/HTTP when `otlpUrl` is set. */
  tracing: tracingSchema,
  /** The Ed25519 key commands are signed with (default: created beside the database). */
  signing: z.strictObject({ keyFile: z.string().min(1).optional() }).prefault({}),
  /** Fence devices; the cluster file's fence levels name them by id. */
  fencing: fencingSchema.prefault({}),
  /** A hub group: leadership and the safety-critical facts in etcd (docs/ha.md). Unset: alone. */
  group: groupSchema,
  /** A watchdog inside the process (docs/operations.md "When the hub fails"). */
  watchdog: z
    .strictObject({
      /** The event loop blocked this long: the process is killed so that it is restarted. 0: never. */
      stallMs: z.number().int().min(0).max(600_000).default(10_000),
      /** The hub stood still (frozen or blocked) at least this long: its detectors re-arm. */
      pauseMs: z.number().int().min(500).max(600_000).default(2000),
    })
    .prefault({}),
  log: logSectionSchema,
})

export type HubConfig = z.output<typeof hubConfigSchema>

export const hubFlags: Record<string, FlagSpec> = {
  ...brokerAndLogFlags,
  cluster: { path: ['cluster'], type: 'string', description: 'cluster name' },
  name: { path: ['name'], type: 'string', description: 'hub name' },
  listen: {
    path: ['http', 'listen'],
    type: 'string',
    description: 'HTTP API, metrics and live feed address',
  },
  'broker-listen': {
    path: ['broker', 'listen'],
    type: 'string',
    description: 'embedded MQTT broker address',
  },
  'mqtt-url': {
    path: ['mqtt', 'url'],
    type: 'string',
    description: 'external broker URL (disables the embedded one)',
  },
  db: { path: ['store', 'path'], type: 'string', description: 'SQLite database file' },
  'cluster-file': {
    path: ['engine', 'clusterFile'],
    type: 'string',
    description: 'cluster definition for the engine',
  },
  'mqtt-start-deadline': {
    path: ['mqtt', 'startDeadlineMs'],
    type: 'number',
    description: 'ms to reach an external broker at start before exiting 1 (0: wait for ever)',
  },
  'command-timeout': {
    path: ['commands', 'timeoutMs'],
    type: 'number',
    description: 'ms to wait for an agent to accept a command',
  },
}

export function loadHubConfig(file: string | undefined, overrides: Override[] = []): HubConfig {
  return loadConfigFile(hubConfigSchema, file, overrides)
}

export function splitHostPort(value: string): { host: string; port: number } {
  const idx = value.lastIndexOf(':')
  return { host: value.slice(0, idx).replace(/^\[|\]$/g, ''), port: Number(value.slice(idx + 1)) }
}

/**
 * Loads and checks the engine's cluster definition; problems name the file, line and key. `more`:
 * further checks in the same form (the hub's fence devices against the file's fence levels).
 */
export function loadClusterSpec(file: string, more?: (spec: ClusterSpec) => string[]): ClusterSpec {
  return loadClusterFile(file, more).spec
}

/** The cluster file as `loadClusterSpec` loads it, with the text it was read from. */
export function loadClusterFile(
  file: string,
  more?: (spec: ClusterSpec) => string[],
): { spec: ClusterSpec; text: string } {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (cause) {
    throw new VigilError('config_unreadable', `${file}: cannot read config file`, { cause })
  }
  return { spec: parseClusterSpec(text, file, more), text }
}

/** A cluster file's text checked as `loadClusterSpec` checks the file (`file` names it in problems). */
export function parseClusterSpec(
  text: string,
  file: string,
  more?: (spec: ClusterSpec) => string[],
): ClusterSpec {
  return parseConfig(clusterSpecSchema, text, { file, check: clusterChecks(more) })
}

const clusterChecks = (more?: (spec: ClusterSpec) => string[]) => (spec: ClusterSpec) =>
  [...checkClusterSpec(spec), ...(more?.(spec) ?? [])].map((p) => ({
    path: (p.split(':')[0] ?? '').split('.'),
    message: p.slice(p.indexOf(':') + 2),
  }))
