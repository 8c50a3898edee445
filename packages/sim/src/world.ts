import { z } from 'zod'

export const worldSchema = z.strictObject({
  tickMs: z.number().int().min(10).default(50),
  seed: z.number().int().default(1),
  /** Stop here if the script has no `end`. */
  durationMs: z.number().int().positive().default(30_000),
  intervals: z
    .strictObject({
      heartbeatMs: z.number().int().positive().default(250),
      reportMs: z.number().int().positive().default(250),
      diskMs: z.number().int().positive().default(250),
      guestMs: z.number().int().positive().default(1000),
    })
    .prefault({}),
  delays: z
    .strictObject({
      startMs: z.number().int().nonnegative().default(300),
      stopMs: z.number().int().nonnegative().default(200),
      restartMs: z.number().int().nonnegative().default(400),
      resetMs: z.number().int().nonnegative().default(300),
      rebootMs: z.number().int().nonnegative().default(1500),
      /** A suspend or a resume of a vm. */
      suspendMs: z.number().int().nonnegative().default(200),
      /** A live migration, from the command to the vm running on the target (default: restartMs). */
      migrateMs: z.number().int().nonnegative().optional(),
      /**
       * The last this-many ms of a live migration the guest is paused (its stop-and-copy
       * switchover; a migration without --live, rgmanager's migrate="pause", pauses it throughout):
       * it does not beat meanwhile. Default 0.
       */
      migratePausedMs: z.number().int().nonnegative().default(0),
      guestBootMs: z.number().int().nonnegative().default(1500),
      fenceMs: z.number().int().nonnegative().default(300),
      fenceErrorMs: z.number().int().nonnegative().default(1000),
    })
    .prefault({}),
  /** An agent that hears neither hub nor peers for this long stops its resources (self-fence). */
  isolationMs: z.number().int().positive().default(2000),
  /**
   * Resources whose storage is on the disk `disk-hang` stalls (the shared disk, as each node sees
   * it): while a node's disk hangs, such a vm running there is paused by its hypervisor (its I/O
   * error policy), such an application fails, and neither can start there.
   */
  onDisk: z.array(z.string()).default([]),
  /** Nodes whose agent writes a shared-disk heartbeat. */
  diskHeartbeat: z.array(z.string()).default([]),
  /** Resource -> the node (or nodes: a duplicate) it runs on at time 0; for a guest-app, its vm. */
  running: z.record(z.string(), z.union([z.string(), z.array(z.string())])).default({}),
  /** Node -> ping targets it reaches, of how many (reported every reportMs); none by default. */
  connectivity: z
    .record(
      z.string(),
      z.strictObject({ reachable: z.number().int().nonnegative(), total: z.number().int().positive() }),
    )
    .default({}),
  /**
   * Resource -> action -> the timeout its driver declares (ms), as every node's agent advertises it
   * when the hub first hears it (and again after each agent restart); none by default.
   */
  actionTimeouts: z.record(z.string(), z.record(z.string(), z.number().int().nonnegative())).default({}),
  /**
   * Resource -> action -> how long that action takes there (ms), instead of `delays`: a vm whose
   * guest shuts down slowly (the driver's graceful wait, then its destroy), a slow start.
   */
  actionDelays: z.record(z.string(), z.record(z.string(), z.number().int().nonnegative())).default({}),
  /**
   * The hub reads every fence device's power status this often (its `fencing.powerPollMs`): a
   * reachable device reports its node's power (a lying one: off); 0, the default, reads none.
   */
  powerPollMs: z.number().int().nonnegative().default(0),
  /** Fence device -> the node it powers (default: the node whose fencing lists it). */
  devices: z.record(z.string(), z.string()).default({}),
})
export type WorldSpec = z.output<typeof worldSchema>

export interface SimNode {
  power: 'on' | 'off'
  agent: boolean
  hubLink: boolean
  cut: Set<string>
  loss: number
  disk: 'ok' | 'hang'
  unheardSince: number | null
  selfFenced: boolean
  /** Bumped each time its agent starts (power-on, agent-start); the hub learns it when it hears the node. */
  incarnation: number
  heardIncarnation: number
  /** The incarnation whose action timeouts the hub was told (see WorldSpec.actionTimeouts). */
  declaredIncarnation: number | null
}

export interface Instance {
  /** paused: by its hypervisor (an I/O error); suspended: by an operator, on purpose. */
  state: 'running' | 'failed' | 'paused' | 'suspended'
  hung: boolean
  /** Guest heartbeats start once booted (vms). */
  bootedAt: number
  /** Paused for a migration's switchover: its guest does not beat. */
  switchingOver?: boolean
}

export type DeviceState = 'ok' | 'unreachable' | 'lying' | 'auth-fail'
