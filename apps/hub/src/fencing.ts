import type { Action, ClusterSpec, Input } from '@vigil/engine'
import { fenceAgentsDriver } from '@vigil/fence-agents'
import { apcSnmpDriver } from '@vigil/fence-apc-snmp'
import { ipmiDriver } from '@vigil/fence-ipmi'
import { type FenceDevice, type FenceDriverFactory, fenceNode, runFenceOp } from '@vigil/fence-kit'
import { libvirtDriver } from '@vigil/fence-libvirt'
import { MeatwareDevice, meatwareDriver } from '@vigil/fence-meatware'
import { sshDriver } from '@vigil/fence-ssh'
import { vsphereFenceDriver } from '@vigil/fence-vsphere'
import { type Clock, createLogger, type Logger, toVigilError, VigilError } from '@vigil/kit'
import { FENCE_OUTCOMES, type FenceOutcome, idSchema } from '@vigil/protocol'
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { z } from 'zod'
import type { EventRow, FenceOpRow, HubStore } from './store.js'
import { type DecisionTracer, finish } from './tracing.js'

/** The fence drivers this hub knows, by the name a device's `driver` key uses. */
export const FENCE_DRIVERS: Record<string, FenceDriverFactory> = {
  ipmi: ipmiDriver,
  'apc-snmp': apcSnmpDriver,
  ssh: sshDriver,
  'fence-agents': fenceAgentsDriver,
  libvirt: libvirtDriver,
  meatware: meatwareDriver,
  vsphere: vsphereFenceDriver,
}

const deviceId = idSchema

export const fenceDeviceSchema = z.strictObject({
  /** What the cluster file's fence levels call this device. */
  id: deviceId,
  driver: z.enum(Object.keys(FENCE_DRIVERS) as [string, ...string[]]),
  /** The nodes this device can fence, each with its plugs (outlets; empty for a BMC). */
  hosts: z.record(deviceId, z.array(z.string().min(1)).max(8)),
  /** The driver's own settings (see its README); checked against the driver's schema. */
  config: z.record(z.string(), z.unknown()).default({}),
})

export const fencingSchema = z
  .strictObject({
    devices: z.array(fenceDeviceSchema).default([]),
    /** Every device is checked this often (reachable, credentials accepted): "can X be fenced now?". */
    monitorIntervalMs: z.number().int().min(1000).max(3_600_000).default(60_000),
    /** How often the power state is read back after an off. */
    readBackMs: z.number().int().min(50).max(10_000).default(250),
    /**
     * Every node's power state is read through its devices this often (0: never), a channel of its
     * own for the engine: a node read off and silent everywhere else is dead and needs no off sent;
     * a node read off while heard points at a wrong device or plug before it is needed.
     */
    powerPollMs: z.number().int().min(0).max(3_600_000).default(5000),
  })
  .superRefine((f, ctx) => {
    if (f.powerPollMs > 0 && f.powerPollMs < 500)
      ctx.addIssue({
        code: 'custom',
        path: ['powerPollMs'],
        message: 'must be 0 (never) or at least 500 ms: a device read more often answers its fence late',
      })
    const seen = new Set<string>()
    f.devices.forEach((d, i) => {
      if (seen.has(d.id))
        ctx.addIssue({ code: 'custom', path: ['devices', i, 'id'], message: `duplicate device "${d.id}"` })
      seen.add(d.id)
      const driver = FENCE_DRIVERS[d.driver]
      if (!driver) return
      const parsed = driver.configSchema.safeParse(d.config)
      if (!parsed.success)
        for (const issue of parsed.error.issues)
          ctx.addIssue({
            code: 'custom',
            path: [
              'devices',
              i,
              'config',
              ...issue.path,
              ...(issue.code === 'unrecognized_keys' ? issue.keys : []),
            ],
            message: issue.message,
          })
    })
  })
export type FencingConfig = z.output<typeof fencingSchema>

interface DeviceEntry {
  id: string
  driver: string
  hosts: Record<string, string[]>
  device: FenceDevice
  health: { up: boolean | null; checkedAt: number | null; detail: string }
}

export interface FenceDeviceView {
  id: string
  driver: string
  hosts: Record<string, string[]>
  up: boolean | null
  checkedAt: number | null
  detail: string
}

type FenceAction = Extract<Action, { type: 'fence' }>

/** Whether a device's status is the host's power as seen from outside it (not ssh, not a person). */
function readsPower(device: FenceDevice): boolean {
  return device.canPowerOn && !(device instanceof MeatwareDevice)
}

/**
 * Carries out the engine's fence actions through real devices, and watches the devices.
 *
 * A fence action names one level of a node: every device of the level runs at once, each powering
 * off all of the node's plugs on it and reading them back (`fenceNode`); each device's outcome goes
 * back to the engine, which confirms the node off only when every device of the level said `off`,
 * and then waits for its heartbeats to stay silent. Everything is recorded in the fence history.
 */
/** What a cluster file's fence levels are checked against: a device's hosts, and whether it needs plugs. */
export interface FenceDeviceShape {
  hosts: Record<string, string[]>
  needsPlug: boolean
}

/**
 * Each device of `fencing.devices` as its driver makes it (its config validated, its secrets read),
 * for checking a cluster file before the hub starts (`vigil config check`, the hub's own start).
 * A device its driver refuses is a config error naming it.
 */
export function fenceDeviceShapes(config: FencingConfig): Map<string, FenceDeviceShape> {
  const silentLog = createLogger('fence-check', 'silent')
  const shapes = new Map<string, FenceDeviceShape>()
  for (const d of config.devices) {
    const device = createDevice(d, silentLog)
    shapes.set(d.id, { hosts: d.hosts, needsPlug: device.needsPlug })
  }
  return shapes
}

/** Fence levels naming a device the hub lacks, or one without an entry (or plugs) for the node. */
export function fenceLevelProblems(
  spec: ClusterSpec,
  devices: ReadonlyMap<string, FenceDeviceShape>,
): string[] {
  const problems: string[] = []
  for (const [i, n] of spec.nodes.entries()) {
    for (const [l, level] of n.fencing.entries()) {
      for (const [k, id] of level.devices.entries()) {
        const d = devices.get(id)
        const key = `nodes.${i}.fencing.${l}.devices.${k}`
        if (!d) problems.push(`${key}: no fence device "${id}" in the hub's fencing.devices`)
        else if (!(n.id in d.hosts))
          problems.push(`${key}: device "${id}" has no entry for ${n.id} in its hosts`)
        else if (d.needsPlug && (d.hosts[n.id] ?? []).length === 0)
          problems.push(`${key}: device "${id}" needs the plugs (outlets) of ${n.id} in its hosts`)
      }
    }
  }
  return problems
}

function createDevice(d: FencingConfig['devices'][number], log: Logger): FenceDevice {
  const factory = FENCE_DRIVERS[d.driver] as FenceDriverFactory
  try {
    return factory.create(factory.configSchema.parse(d.config), {
      deviceId: d.id,
      log: log.child({ device: d.id }),
    })
  } catch (err) {
    throw new VigilError('config_invalid', `fencing.devices "${d.id}": ${toVigilError(err).message}`, {
      cause: err,
    })
  }
}

export class FenceService {
  private readonly devices = new Map<string, DeviceEntry>()
  private readonly inFlight = new Map<string, AbortController>()
  private readonly wasFenceable = new Map<string, boolean>()
  private monitorTimer: NodeJS.Timeout | null = null
  private powerTimer: NodeJS.Timeout | null = null
  private readonly opsTotal: Counter<'device' | 'outcome'>
  private readonly duration: Histogram<'driver'>

  constructor(
    private readonly config: FencingConfig,
    private readonly deps: {
      store: HubStore
      clock: Clock
      log: Logger
      registry: Registry
      input: (input: Input) => void
      onEvent: (event: EventRow) => void
      onFenceOp: (op: FenceOpRow) => void
      /** One span per device run, under the fence decision's span. */
      tracer: DecisionTracer
      /** The cluster spec (fence levels), or null in observe mode. */
      spec: ClusterSpec | null
      /** The node this hub runs on: never fenced by this hub (it would power itself off mid-fence). */
      hubNode?: string | undefined
    },
  ) {
    for (const d of config.devices) {
      const device = createDevice(d, deps.log)
      this.devices.set(d.id, {
        id: d.id,
        driver: d.driver,
        hosts: d.hosts,
        device,
        health: { up: null, checkedAt: null, detail: 'not checked yet' },
      })
    }
    const registers = [deps.registry]
    this.opsTotal = new Counter({
      name: 'vigil_fence_operations_total',
      help: 'Fence runs per device, by outcome (off = powered off and read back off).',
      labelNames: ['device', 'outcome'],
      registers,
    })
    this.duration = new Histogram({
      name: 'vigil_fence_duration_seconds',
      help: 'Time from a fence run start to its outcome (off and read-back included), by driver.',
      labelNames: ['driver'],
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
      registers,
    })
    // Every series exists from the start at 0: increase() and alerts see the first failure.
    for (const d of this.devices.values()) {
      for (const outcome of FENCE_OUTCOMES) this.opsTotal.inc({ device: d.id, outcome }, 0)
      this.duration.zero({ driver: d.driver })
    }
    const service = this
    new Gauge({
      name: 'vigil_node_fenceable',
      help: 'Whether a node can be fenced right now: 1 if one of its levels has every device passing its check, else 0.',
      labelNames: ['node'],
      registers,
      collect() {
        this.reset()
        for (const n of deps.spec?.nodes ?? []) this.set({ node: n.id }, service.fenceable(n.id) ? 1 : 0)
      },
    })
    new Gauge({
      name: 'vigil_fence_device_up',
      help: 'Fence device health from the last periodic check: 1 answers and accepts the credentials, 0 not, -1 not checked yet.',
      labelNames: ['device', 'driver'],
      registers,
      collect() {
        this.reset()
        for (const d of service.devices.values())
          this.set({ device: d.id, driver: d.driver }, d.health.up === null ? -1 : d.health.up ? 1 : 0)
      },
    })
  }

  /** Cross-checks the cluster file's fence levels against the configured devices. */
  /** A reloaded cluster file's fence levels (checked with `problemsWith` first). */
  setSpec(spec: ClusterSpec): void {
    ;(this.deps as { spec: ClusterSpec | null }).spec = spec
  }

  problemsWith(spec: ClusterSpec): string[] {
    return fenceLevelProblems(
      spec,
      new Map([...this.devices].map(([id, d]) => [id, { hosts: d.hosts, needsPlug: d.device.needsPlug }])),
    )
  }

  /** Runs one level of a fence: every device at once, each outcome reported to the engine. */
  run(action: FenceAction, opts: { resume?: boolean } = {}): void {
    if (action.node === this.deps.hubNode) {
      const message = `refusing to fence ${action.node}: this hub runs on it (it would power itself off mid-fence)`
      this.deps.log.error({ node: action.node, decision: action.decision }, message)
      this.event(action.node, 'fence.refused-self', 'critical', message)
      for (const id of action.devices) this.report(action, id, 'auth-failed')
      return
    }
    for (const id of action.devices) {
      const entry = this.devices.get(id)
      if (!entry) {
        // problemsWith() refuses such a cluster file at start; this only guards a bug.
        this.report(action, id, 'auth-failed')
        continue
      }
      const key = `${action.id}/${id}`
      if (this.inFlight.has(key)) continue
      const controller = new AbortController()
      this.inFlight.set(key, controller)
      const plugs = entry.hosts[action.node] ?? []
      const log = this.deps.log.child({ node: action.node, device: id, decision: action.decision })
      log.warn({ level: action.level + 1, plugs }, 'fencing')
      const at = this.deps.clock.wallMs()
      const span = this.deps.tracer.startWork(action.decision, `fence ${id}`, {
        'vigil.node': action.node,
        'vigil.fence.device': id,
        'vigil.fence.driver': entry.driver,
        'vigil.fence.level': action.level + 1,
      })
      fenceNode(entry.device, plugs.length > 0 ? plugs : [null], {
        timeoutMs: action.timeoutMs,
        pollMs: this.config.readBackMs,
        log,
        signal: controller.signal,
        readFirst: opts.resume === true,
      })
        .then((result) => {
          this.duration.observe({ driver: entry.driver }, result.durationMs / 1000)
          const op = this.deps.store.appendFenceOp({
            at,
            node: action.node,
            device: id,
            actionId: action.id,
            decision: action.decision,
            level: action.level,
            outcome: result.outcome,
            detail: result.detail,
            durationMs: result.durationMs,
            steps: result.steps,
          })
          this.deps.onFenceOp(op)
          const line = { outcome: result.outcome, ms: result.durationMs, detail: result.detail }
          if (result.outcome === 'off') log.warn(line, 'fence device confirmed the node off')
          else log.error(line, 'fence device did not confirm the node off')
          finish(span, result.outcome === 'off', { 'vigil.fence.outcome': result.outcome }, result.detail)
          this.report(action, id, result.outcome)
        })
        .catch((err: unknown) => {
          log.error({ err }, 'fence run failed')
          finish(span, false, { 'vigil.fence.outcome': 'unreachable' }, String(err))
          this.report(action, id, 'unreachable')
        })
        .finally(() => this.inFlight.delete(key))
    }
  }

  private report(action: FenceAction, device: string, outcome: FenceOutcome): void {
    this.opsTotal.inc({ device, outcome })
    this.deps.input({ type: 'fence-result', actionId: action.id, node: action.node, device, outcome })
  }

  /** Checks every device now, then every `monitorIntervalMs`. */
  startMonitoring(): void {
    if (this.devices.size === 0) return
    const tick = () => {
      void this.checkAll().finally(() => {
        this.monitorTimer = setTimeout(tick, this.config.monitorIntervalMs)
        this.monitorTimer.unref()
      })
    }
    tick()
  }

  async checkAll(): Promise<void> {
    await Promise.all(
      [...this.devices.values()].map(async (d) => {
        let up: boolean
        let detail: string
        try {
          await runFenceOp(d.device, 'monitor', null, { log: this.deps.log })
          up = true
          detail = 'answers and accepts the credentials'
        } catch (err) {
          up = false
          detail = (err as Error).message
        }
        const was = d.health.up
        d.health = { up, checkedAt: this.deps.clock.wallMs(), detail }
        if (was === up || (was === null && up)) return
        const message = up
          ? `fence device ${d.id} answers again`
          : `fence device ${d.id} (${d.driver}) fails its check: ${detail}; it cannot fence ${Object.keys(d.hosts).join(', ')} now`
        this.event(null, up ? 'fence.device-up' : 'fence.device-down', up ? 'info' : 'warning', message, {
          device: d.id,
          driver: d.driver,
        })
        if (up) this.deps.log.info({ device: d.id }, message)
        else this.deps.log.warn({ device: d.id, detail }, message)
      }),
    )
    this.reportFenceability()
  }

  /**
   * Reads every node's power through each device that can tell (BMCs, PDUs, hypervisors: not ssh,
   * whose "off" is only "unreachable", nor meatware), now and every `powerPollMs`, and feeds the
   * engine each reading as a polled `power-state`. A device busy fencing, or failing its check, is
   * skipped; a read that fails says nothing (the device check reports it).
   */
  startPowerPolling(): void {
    if (this.config.powerPollMs === 0 || this.devices.size === 0) return
    const tick = () => {
      void this.pollPower().finally(() => {
        this.powerTimer = setTimeout(tick, this.config.powerPollMs)
        this.powerTimer.unref()
      })
    }
    tick()
  }

  async pollPower(): Promise<void> {
    const fencing = new Set([...this.inFlight.keys()].map((k) => k.slice(k.lastIndexOf('/') + 1)))
    await Promise.all(
      [...this.devices.values()]
        .filter((d) => readsPower(d.device) && d.health.up !== false && !fencing.has(d.id))
        .map(async (d) => {
          for (const [node, plugs] of Object.entries(d.hosts)) {
            try {
              const states = await Promise.all(
                (plugs.length > 0 ? plugs : [null]).map((plug) =>
                  runFenceOp(d.device, 'status', plug, { log: this.deps.log }),
                ),
              )
              // A node with several plugs on the device is off only when every one of them is.
              const state = states.every((st) => st === 'off') ? 'off' : 'on'
              this.deps.input({ type: 'power-state', node, state, device: d.id, polled: true })
            } catch (err) {
              this.deps.log.debug({ device: d.id, node, err }, 'power status read failed')
            }
          }
        }),
    )
  }

  /** True if at least one of the node's levels has every device passing its check. */
  fenceable(node: string): boolean {
    if (node === this.deps.hubNode) return false
    const n = this.deps.spec?.nodes.find((x) => x.id === node)
    return !!n?.fencing.some((level) => level.devices.every((id) => this.devices.get(id)?.health.up === true))
  }

  /** "X cannot be fenced right now": raised when a node loses its last working level, before anyone needs it. */
  private reportFenceability(): void {
    for (const n of this.deps.spec?.nodes ?? []) {
      if (n.fencing.length === 0) continue // reported by the engine as "no fence devices"
      const now = this.fenceable(n.id)
      const was = this.wasFenceable.get(n.id)
      this.wasFenceable.set(n.id, now)
      if (was === now || (was === undefined && now)) continue
      if (now) this.event(n.id, 'fence.node-fenceable', 'info', `${n.id} can be fenced again`)
      else
        this.event(
          n.id,
          'fence.node-unfenceable',
          'critical',
          `${n.id} cannot be fenced right now: every fence level has a device failing its check`,
        )
    }
  }

  private event(
    node: string | null,
    kind: string,
    severity: 'info' | 'warning' | 'critical',
    message: string,
    attrs: Record<string, unknown> = {},
  ): void {
    const event = this.deps.store.appendEvent({
      at: this.deps.clock.wallMs(),
      node,
      source: 'hub',
      kind,
      severity,
      message,
      attrs,
    })
    this.deps.onEvent(event)
  }

  devicesView(): FenceDeviceView[] {
    return [...this.devices.values()].map((d) => ({
      id: d.id,
      driver: d.driver,
      hosts: d.hosts,
      up: d.health.up,
      checkedAt: d.health.checkedAt,
      detail: d.health.detail,
    }))
  }

  /** Meatware requests waiting for (or holding) an operator's confirmation. */
  pendingConfirmations(): {
    device: string
    node: string
    requestedAt: number
    confirmedBy: string | null
  }[] {
    const out = []
    for (const d of this.devices.values()) {
      if (!(d.device instanceof MeatwareDevice)) continue
      for (const r of d.device.pending())
        out.push({ device: d.id, node: r.plug, requestedAt: r.requestedAt, confirmedBy: r.confirmedBy })
    }
    return out
  }

  /** An operator confirms a node is off (meatware). False if no meatware device asked about it. */
  confirm(node: string, by: string): boolean {
    let confirmed = false
    for (const d of this.devices.values())
      if (d.device instanceof MeatwareDevice && d.device.confirm(node, by)) confirmed = true
    if (confirmed) {
      const event = this.deps.store.appendEvent({
        at: this.deps.clock.wallMs(),
        node,
        source: 'operator',
        kind: 'fence.confirmed-by-operator',
        severity: 'warning',
        message: `${by} confirmed ${node} is powered off`,
        attrs: { by },
      })
      this.deps.onEvent(event)
    }
    return confirmed
  }

  async close(): Promise<void> {
    if (this.monitorTimer) clearTimeout(this.monitorTimer)
    if (this.powerTimer) clearTimeout(this.powerTimer)
    for (const c of this.inFlight.values()) c.abort()
    await Promise.all([...this.devices.values()].map((d) => d.device.close?.()))
  }
}
