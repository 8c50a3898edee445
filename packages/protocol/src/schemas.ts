import { z } from 'zod'
import { PROTOCOL_VERSION } from './topics.js'
import { nameSchema } from './vocabulary.js'

// Every payload is a strict object: an unknown field is a sender bug or a newer protocol, and
// either way the hub must say so rather than guess. Adding optional fields is a compatible change
// only after every hub in the fleet knows them (docs/protocol.md, "Versioning").

const name = nameSchema
const version = z.literal(PROTOCOL_VERSION)
const epochMs = z.number().int().nonnegative().max(8.64e15)
const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)
const nonNegative = z.number().finite().nonnegative()
const shortText = z.string().max(1024)
const attrs = z.record(z.string().max(64), z.union([z.string().max(1024), z.number(), z.boolean(), z.null()]))

/** Identifies one run of an agent: a new value after every restart (boot wall time in ms). */
const incarnation = count

/**
 * Sent every `intervalMs` (default 250 ms) at QoS 0, never retained. `seq` restarts at 0 with each
 * incarnation; `sentMono` is the agent's monotonic clock (ms) so gaps can be measured without
 * trusting wall clocks; `sentAt` is wall time, used only for latency estimates.
 */
export const heartbeatSchema = z.strictObject({
  v: version,
  node: name,
  incarnation,
  seq: count,
  sentMono: nonNegative,
  sentAt: epochMs,
  intervalMs: z.number().int().min(10).max(600_000),
  /**
   * The peers this node heard over the peer mesh within its peer timeout (absent when the mesh is
   * off): how the hub tells "I cannot hear X" from "nobody can hear X".
   */
  hears: z.array(name).max(256).optional(),
  /** Other nodes' slots as this node last read them on the shared-disk heartbeat device. */
  disk: z
    .array(z.strictObject({ node: name, incarnation, counter: count }))
    .max(256)
    .optional(),
})
export type Heartbeat = z.infer<typeof heartbeatSchema>

/** ping and refresh-facts are the agent's own; the rest act on a resource (args.resource). */
export const COMMAND_ACTIONS = [
  'ping',
  'refresh-facts',
  'start',
  'stop',
  'restart',
  'reset-vm',
  'reboot-vm',
  'migrate',
  /** A vm paused on purpose (an operator's `vigil resource suspend`), and continued. */
  'suspend',
  'resume',
] as const
export type CommandAction = (typeof COMMAND_ACTIONS)[number]

/**
 * Retained, QoS 1. The agent publishes `online` when it connects (birth), `offline` before a clean
 * exit, and registers `gone` as its MQTT last will (broker publishes it if the connection drops).
 */
export const statusSchema = z.strictObject({
  v: version,
  node: name,
  incarnation,
  state: z.enum(['online', 'offline', 'gone']),
  at: epochMs,
  agentVersion: z.string().max(64),
  role: z.enum(['host', 'guest']),
  /** The agent's own (`ping`, ...) and one per resource: `<driver>:<resource>:<action>+<action>...`. */
  capabilities: z.array(z.string().max(256)).max(256),
  /**
   * The agent's isolation response (absent: none), for the hub to check against its detection
   * and fencing timings: it must be done before the hub could fence the node.
   */
  isolation: z
    .strictObject({
      afterMs: count,
      action: z.enum(['stop', 'freeze', 'reboot']),
      /** From the last word from the hub to the response done, at worst. */
      doneWithinMs: count,
      /** Whether this node writes a shared-disk heartbeat. */
      diskHeartbeat: z.boolean(),
    })
    .optional(),
  /**
   * Each resource's declared timeout per command action, in ms (a driver's own budget, as OCF
   * meta-data advises per action): the hub's engine waits that long, plus a margin, for the result.
   */
  actionTimeouts: z
    .record(z.string().max(64), z.partialRecord(z.enum(COMMAND_ACTIONS), count))
    .refine((t) => Object.keys(t).length <= 256, 'at most 256 resources')
    .optional(),
  /**
   * With `offline`: what is stopping. `agent`: the agent alone, its host and resources staying up
   * (a restart, an upgrade): the hub holds its judgement of the node. `host`: the host is shutting
   * down: its silence is judged as usual. Absent (older agents): as `host`.
   */
  stopping: z.enum(['agent', 'host']).optional(),
})
export type Status = z.infer<typeof statusSchema>

export const filesystemSchema = z.strictObject({
  mount: z.string().max(4096),
  device: z.string().max(4096),
  fstype: z.string().max(64),
  sizeBytes: count,
  freeBytes: count,
  availBytes: count,
  inodes: count,
  inodesFree: count,
})
export type Filesystem = z.infer<typeof filesystemSchema>

export const interfaceSchema = z.strictObject({
  name: z.string().max(64),
  mac: z.string().max(64).nullable(),
  mtu: count.nullable(),
  operstate: z.enum(['up', 'down', 'dormant', 'lowerlayerdown', 'notpresent', 'testing', 'unknown']),
  carrier: z.boolean().nullable(),
  speedMbps: z.number().int().nullable(),
  addresses: z.array(z.string().max(64)).max(64),
})
export type NetInterface = z.infer<typeof interfaceSchema>

/** Retained, QoS 1: what the host is. Republished on connect and every `factsIntervalMs`. */
export const factsSchema = z.strictObject({
  v: version,
  node: name,
  incarnation,
  collectedAt: epochMs,
  hostname: z.string().max(255),
  os: z.strictObject({
    platform: z.string().max(32),
    release: z.string().max(128),
    arch: z.string().max(32),
  }),
  cpus: z.number().int().positive().max(100_000),
  memory: z.strictObject({ totalBytes: count, availableBytes: count }),
  load: z.tuple([nonNegative, nonNegative, nonNegative]),
  uptimeSeconds: nonNegative,
  processCount: count,
  filesystems: z.array(filesystemSchema).max(512),
  interfaces: z.array(interfaceSchema).max(512),
})
export type Facts = z.infer<typeof factsSchema>

/**
 * What runs a vm's guest, as its driver knows it: `kvm` (libvirt's qemu driver with hardware
 * virtualization), `qemu` (the same without it: TCG emulation, slow), `xen` (libvirt's libxl driver
 * or the xl toolstack) or `vsphere` (VMware ESX through vCenter). Closed set: a metric label.
 */
export const HYPERVISORS = ['kvm', 'qemu', 'xen', 'vsphere'] as const
export type Hypervisor = (typeof HYPERVISORS)[number]

/**
 * One sample of a watched thing, in the driver contract's terms: `state` is the three-state
 * monitor result (running / stopped cleanly / failed), `paused` for a vm whose CPUs are stopped
 * (not serving, yet still holding its disks), `suspended` for one paused on purpose by an operator
 * (no failure), or `unknown` when the monitor itself failed.
 * `hypervisor`: set for a vm, by drivers that manage one (absent for anything else).
 */
export const observationSchema = z.strictObject({
  driver: z.string().max(64),
  target: z.string().max(256),
  state: z.enum(['running', 'stopped', 'failed', 'paused', 'suspended', 'unknown']),
  detail: shortText.optional(),
  metrics: z.record(z.string().max(64), z.number().finite()).optional(),
  hypervisor: z.enum(HYPERVISORS).optional(),
  /**
   * How long ago its monitor produced this result (ms). A monitor that stopped answering leaves
   * its last result standing: the age tells that from a resource that simply did not change.
   */
  ageMs: z.number().int().nonnegative().max(8.64e15).optional(),
})
export type Observation = z.infer<typeof observationSchema>

/** QoS 0 batches of observations (they are superseded by the next batch). */
export const observationBatchSchema = z.strictObject({
  v: version,
  node: name,
  incarnation,
  seq: count,
  at: epochMs,
  observations: z.array(observationSchema).max(1000),
  /** The batch lists every resource this agent manages: a resource not listed is not on this node. */
  complete: z.boolean().optional(),
})
export type ObservationBatch = z.infer<typeof observationBatchSchema>

/** An edge (something changed), QoS 1; buffered by the agent while the broker is away. */
export const eventSchema = z.strictObject({
  v: version,
  node: name,
  incarnation,
  seq: count,
  at: epochMs,
  kind: z.string().regex(/^[a-z][a-z0-9_.]{0,63}$/, 'must be a lower-case dotted identifier'),
  severity: z.enum(['info', 'warning', 'critical']),
  message: shortText,
  attrs: attrs.optional(),
})
export type AgentEvent = z.infer<typeof eventSchema>

/**
 * Hub -> agent, QoS 1, never retained. An agent refuses a command whose target is not itself, whose
 * `expiresAt` has passed, whose id it has already executed, or whose issuer epoch is older than the
 * newest it has seen. `sig` is the issuer's signature over the canonical envelope (issue #8).
 */
export const commandSchema = z.strictObject({
  v: version,
  id: z.string().uuid(),
  issuer: z.strictObject({ hub: name, epoch: count }),
  seq: count,
  issuedAt: epochMs,
  expiresAt: epochMs,
  target: name,
  action: z.enum(COMMAND_ACTIONS),
  args: attrs,
  sig: z.string().max(512).optional(),
})
export type Command = z.infer<typeof commandSchema>

/**
 * Agent -> hub, QoS 1: the outcome of one command id. `accepted` comes first, as soon as the command
 * passed the agent's checks, with `result.timeoutMs` (the driver's deadline for the action): the
 * hub's command timeout covers only delivery and acceptance, and the final result (ok, failed or
 * refused) is awaited for that deadline plus a margin, however long the action takes.
 */
export const commandResultSchema = z.strictObject({
  v: version,
  id: z.string().uuid(),
  node: name,
  incarnation,
  status: z.enum(['accepted', 'ok', 'failed', 'refused']),
  receivedAt: epochMs,
  finishedAt: epochMs,
  result: attrs.optional(),
  error: z.strictObject({ code: z.string().max(64), message: shortText }).optional(),
})
export type CommandResult = z.infer<typeof commandResultSchema>
