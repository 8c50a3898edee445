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
      guestBootMs: z.number().int().nonnegative().default(1500),
      fenceMs: z.number().int().nonnegative().default(300),
      fenceErrorMs: z.number().int().nonnegative().default(1000),
    })
    .prefault({}),
  /** An agent that hears neither hub nor peers for this long stops its resources (self-fence). */
  isolationMs: z.number().int().positive().default(2000),
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
}

export interface Instance {
  state: 'running' | 'failed' | 'paused'
  hung: boolean
  /** Guest heartbeats start once booted (vms). */
  bootedAt: number
}

export type DeviceState = 'ok' | 'unreachable' | 'lying' | 'auth-fail'
