import {
  type Action,
  type AgentAction,
  AgentTranslation,
  actionResultInput,
  type ClusterSpec,
  type EngineEnv,
  type EngineState,
  type Input,
  initialState,
  type ResourceSpec,
  step,
} from '@vigil/engine'
import type { CommandResult, Heartbeat, Observation, ObservationBatch, Status } from '@vigil/protocol'
import { prng } from './prng.js'
import type { ScriptEvent } from './script.js'
import type { DeviceState, Instance, SimNode, WorldSpec } from './world.js'

export interface SimResult {
  log: string[]
  violations: string[]
  state: EngineState
  /** Actions the engine issued, in order (for property checks). */
  actions: { at: number; action: Action }[]
}

export interface SimOptions {
  /** Called after every step with the world's ground truth, for extra invariant checks. */
  onStep?: (sim: Simulation) => void
}

/**
 * A deterministic world around the real engine: simulated hosts with agents, links, shared disk,
 * fence devices and resource instances (the ground truth), a hub that feeds the engine what it can
 * hear, and executes what the engine decides, with delays. Virtual time advances in ticks;
 * everything iterates in sorted order; randomness only from a seeded PRNG.
 */
export class Simulation {
  now = 0
  readonly nodes = new Map<string, SimNode>()
  /** resource -> host (node id, or vm id for guest applications) -> instance */
  readonly instances = new Map<string, Map<string, Instance>>()
  readonly devices = new Map<string, { node: string; state: DeviceState }>()
  readonly log: string[] = []
  readonly violations: string[] = []
  readonly issued: { at: number; action: Action }[] = []
  private state: EngineState
  private inbox: Input[] = []
  private scheduled: { at: number; seq: number; run: () => void }[] = []
  private seq = 0
  private ids = { action: 0, decision: 0 }
  private hubDownUntil: number | null = null
  /** The hub is frozen rather than down: what agents send meanwhile waits for it (queued). */
  private hubFrozenSince: number | null = null
  /** Nodes whose link to the hub delays each heartbeat: by `ms`, plus up to `jitterMs` at random. */
  private readonly linkDelays = new Map<string, { ms: number; jitterMs: number }>()
  /** Vms whose guest hangs at boot, before its agent sends anything. */
  private readonly bootHangs = new Set<string>()
  /** What each agent ran, by node and action id: see `answeredFromRecord`. */
  private readonly agentRecords = new Map<string, { incarnation: number; ok: boolean | null }>()
  /**
   * Vms whose monitor stopped answering (`monitor-stall`): since when (sim time), and the guest
   * heartbeat count of its last answer.
   */
  private readonly monitorStalls = new Map<string, { since: number; beats: number }>()
  /** The hub's translation of what agents send (a restarted hub starts a new one). */
  private translation = new AgentTranslation()
  /** Shared-disk heartbeat slots as last written, by writer. */
  private readonly diskSlots = new Map<string, { incarnation: number; counter: number }>()
  /** Each vm's guest heartbeat count (its console's lines). */
  private readonly guestBeats = new Map<string, number>()
  private readonly heartbeatSeqs = new Map<string, number>()
  private readonly batchSeqs = new Map<string, number>()
  private resultSeq = 0
  private queuedWhileFrozen: Input[] = []
  /** Times at which to keep a copy of the engine state (a hub-restart's persisted state). */
  private snapshotTimes: number[] = []
  private snapshot: EngineState | null = null
  /** The state a restarting hub resumes from, when older than the state it went down with. */
  private resumeFrom: EngineState | null = null
  /**
   * When a standby of the hub group last heard each node's heartbeat: it listens all along, also
   * while no hub acts after a `hub-takeover`.
   */
  private readonly standbyHeard = new Map<string, number>()
  /** A `hub-takeover` is under way: the hub that comes up is the standby. */
  private takingOver = false
  /** Resources whose stop fails, and resource@node pairs whose start fails. */
  private readonly stopFails = new Set<string>()
  /** `<resource>@<node>` -> the kind of error its failing start and restart answer. */
  private readonly startFails = new Map<string, 'local' | 'transient'>()
  /** Resources whose next live migration fails halfway. */
  private readonly migrateFails = new Set<string>()
  private readonly connectivity = new Map<string, { reachable: number; total: number }>()
  /** node -> what is degraded (a bond lost a slave); nodes whose agent watches its bond (once degraded). */
  private readonly degraded = new Map<string, string>()
  private readonly nicWatched = new Set<string>()
  private readonly random: () => number
  private readonly nodeIds: string[]
  private readonly env: EngineEnv

  constructor(
    readonly spec: ClusterSpec,
    readonly world: WorldSpec,
  ) {
    this.random = prng(world.seed)
    this.nodeIds = spec.nodes.map((n) => n.id).sort()
    for (const id of this.nodeIds) {
      this.nodes.set(id, {
        power: 'on',
        agent: true,
        hubLink: true,
        cut: new Set(),
        loss: 0,
        disk: 'ok',
        unheardSince: null,
        selfFenced: false,
        incarnation: 1,
        heardIncarnation: 1,
        declaredIncarnation: null,
      })
    }
    for (const n of spec.nodes)
      for (const level of n.fencing)
        for (const d of level.devices) this.devices.set(d, { node: world.devices[d] ?? n.id, state: 'ok' })
    for (const r of spec.resources) this.instances.set(r.id, new Map())
    for (const [node, c] of Object.entries(world.connectivity)) this.connectivity.set(node, { ...c })
    for (const [resource, hosts] of Object.entries(world.running)) {
      for (const host of [hosts].flat())
        this.instances.get(resource)?.set(host, { state: 'running', hung: false, bootedAt: 0 })
    }
    this.env = {
      now: () => this.now,
      newId: (kind) => `${kind === 'action' ? 'a' : 'd'}${++this.ids[kind]}`,
      selfCheck: true,
    }
    this.state = initialState(spec, 0)
  }

  get engineState(): EngineState {
    return this.state
  }

  run(script: ScriptEvent[], options: SimOptions = {}): SimResult {
    const end = script.find((e) => e.verb === 'end')?.at ?? this.world.durationMs
    let next = 0
    this.snapshotTimes = script
      .filter((e) => (e.verb === 'hub-restart' || e.verb === 'hub-takeover') && e.args[1] !== undefined)
      .map((e) => e.at - Number(e.args[1]) * 1000)
      .sort((x, y) => x - y)
    for (this.now = 0; this.now <= end; this.now += this.world.tickMs) {
      if (this.snapshotTimes.length > 0 && this.now >= (this.snapshotTimes[0] as number)) {
        this.snapshotTimes.shift()
        this.snapshot = structuredClone(this.state)
      }
      while (next < script.length && (script[next] as ScriptEvent).at <= this.now)
        this.fault(script[next++] as ScriptEvent)
      this.runScheduled()
      this.agents()
      this.observe()
      if (this.hubDownUntil !== null && this.now >= this.hubDownUntil) this.hubUp()
      if (this.hubDownUntil === null) {
        if (this.queuedWhileFrozen.length > 0 && !this.inbox.some((i) => i.type === 'hub-paused')) {
          this.inbox.unshift(...this.queuedWhileFrozen)
          this.queuedWhileFrozen = []
        }
        const result = step(this.spec, this.state, this.inbox, this.env)
        this.inbox = []
        this.state = result.state
        for (const r of result.records) this.write(r.resource ?? r.node ?? 'cluster', r.summary)
        for (const a of result.actions) this.execute(a)
      } else if (this.hubFrozenSince === null) {
        this.inbox = []
      }
      this.checkInvariants()
      options.onStep?.(this)
    }
    return { log: this.log, violations: this.violations, state: this.state, actions: this.issued }
  }

  private write(subject: string, text: string): void {
    this.log.push(`${(this.now / 1000).toFixed(3).padStart(8)}  ${subject.padEnd(10)} ${text}`)
  }

  private node(id: string): SimNode {
    const n = this.nodes.get(id)
    if (!n) throw new Error(`sim: unknown node "${id}"`)
    return n
  }

  private resourceSpec(id: string): ResourceSpec {
    const r = this.spec.resources.find((x) => x.id === id)
    if (!r) throw new Error(`sim: unknown resource "${id}"`)
    return r
  }

  private schedule(delay: number, run: () => void): void {
    this.scheduled.push({ at: this.now + delay, seq: this.seq++, run })
    this.scheduled.sort((a, b) => a.at - b.at || a.seq - b.seq)
  }

  private runScheduled(): void {
    while (this.scheduled.length > 0 && (this.scheduled[0] as { at: number }).at <= this.now)
      this.scheduled.shift()?.run()
  }

  /** The hub hears a node's agent now (its link is up and this message was not lost). */
  private hubHears(id: string): boolean {
    const n = this.node(id)
    if (n.power !== 'on' || !n.agent || !n.hubLink) return false
    return n.loss === 0 || this.random() >= n.loss
  }

  private peersOf(id: string): string[] {
    const n = this.node(id)
    return this.nodeIds.filter((p) => {
      if (p === id || n.cut.has(p)) return false
      const peer = this.node(p)
      return peer.power === 'on' && peer.agent && !peer.cut.has(id)
    })
  }

  /** Where a resource's instances are: hosts of a vm or app; vms (when running) for guest apps. */
  private livingInstances(resource: string): string[] {
    const spec = this.resourceSpec(resource)
    const hosts = [...(this.instances.get(resource)?.keys() ?? [])].sort()
    if (spec.kind !== 'guest-app') return hosts.filter((h) => this.node(h).power === 'on')
    return hosts.filter((vm) => this.vmRunningOn(vm) !== null)
  }

  private vmRunningOn(vm: string): string | null {
    for (const [host, inst] of this.instances.get(vm) ?? []) {
      if (this.node(host).power === 'on' && inst.state === 'running' && !inst.hung) return host
    }
    return null
  }

  /** The agents' own behaviour: the isolation response (self-fence) of a host that hears nobody. */
  private agents(): void {
    for (const id of this.nodeIds) {
      const n = this.node(id)
      if (n.power !== 'on' || !n.agent) {
        n.unheardSince = null
        continue
      }
      const alone = !n.hubLink && this.peersOf(id).length === 0
      if (!alone) {
        n.unheardSince = null
        n.selfFenced = false
        continue
      }
      n.unheardSince ??= this.now
      if (!n.selfFenced && this.now - n.unheardSince >= this.world.isolationMs) {
        n.selfFenced = true
        const stopped = this.stopAllOn(id)
        this.write(
          'world',
          `${id}: isolation response: heard nobody for ${this.world.isolationMs} ms, stopped ${stopped.join(', ') || 'nothing'}`,
        )
      }
    }
  }

  private stopAllOn(host: string): string[] {
    const stopped: string[] = []
    for (const [resource, byHost] of [...this.instances.entries()].sort()) {
      if (byHost.delete(host)) {
        stopped.push(resource)
        if (this.resourceSpec(resource).kind === 'vm') this.dropGuestApps(resource)
      }
    }
    return stopped
  }

  /**
   * What the hub receives this tick, as agents send it: heartbeats (with the peers each hears and
   * the shared-disk slots it read), complete observation batches (a host's resources, its links and
   * pings, its vms' guest heartbeat counts; a guest agent's applications), birth messages. They
   * reach the engine through the hub's own translation (AgentTranslation).
   */
  private observe(): void {
    const { intervals, powerPollMs } = this.world
    const every = (ms: number) => this.now % ms === 0
    if (powerPollMs > 0 && every(powerPollMs)) {
      // The hub's periodic status read of each device, over the management network.
      for (const [device, d] of [...this.devices.entries()].sort()) {
        if (d.state === 'unreachable' || d.state === 'auth-fail') continue
        const state = d.state === 'lying' ? 'off' : this.node(d.node).power
        this.inbox.push({ type: 'power-state', node: d.node, state, device, polled: true })
      }
    }
    // The shared disk: a writer's slot advances while its host, agent and disk are up.
    if (every(intervals.diskMs))
      for (const id of this.world.diskHeartbeat) {
        const n = this.node(id)
        if (n.power !== 'on' || !n.agent || n.disk !== 'ok') continue
        const slot = this.diskSlots.get(id)
        this.diskSlots.set(id, { incarnation: n.incarnation, counter: (slot?.counter ?? 0) + 1 })
      }
    // A guest's own heartbeat (its console line), counted while it is booted and not hung.
    if (every(intervals.guestMs))
      for (const r of this.spec.resources) {
        if (r.kind !== 'vm') continue
        const host = this.vmRunningOn(r.id)
        const inst = host ? this.instances.get(r.id)?.get(host) : undefined
        if (inst && this.now >= inst.bootedAt && !inst.switchingOver)
          this.guestBeats.set(r.id, (this.guestBeats.get(r.id) ?? 0) + 1)
      }
    const heard = new Set<string>()
    for (const id of this.nodeIds) {
      const n = this.node(id)
      if (!this.hubHears(id)) continue
      heard.add(id)
      if (n.heardIncarnation !== n.incarnation) {
        // The first message of a restarted agent: the hub sees a new incarnation.
        n.heardIncarnation = n.incarnation
        this.inbox.push({ type: 'agent-restarted', node: id })
      }
      if (n.declaredIncarnation !== n.incarnation) {
        // The agent's birth message: what each of its drivers declares per action.
        n.declaredIncarnation = n.incarnation
        this.hear(this.translation.status(this.statusOf(id)))
      }
      if (every(intervals.heartbeatMs)) {
        const hb = this.heartbeatOf(id)
        const delay = this.linkDelays.get(id)
        if (delay) {
          // A slow or jittery link: each heartbeat arrives late, in whatever order its delay gives.
          const ms = Math.round(delay.ms + this.random() * delay.jitterMs)
          this.schedule(ms, () => {
            if (this.hubDownUntil !== null) return
            this.hear(this.translation.heartbeat(hb))
            this.standbyHeard.set(id, this.now)
          })
        } else {
          this.hear(this.translation.heartbeat(hb))
          this.standbyHeard.set(id, this.now)
        }
      }
      if (every(intervals.reportMs)) this.hear(this.translation.observations(this.hostBatch(id)))
    }
    // Guest agents speak through their host's network, once their guest has booted.
    if (every(intervals.reportMs))
      for (const r of this.spec.resources) {
        if (r.kind !== 'vm') continue
        const host = this.vmRunningOn(r.id)
        const inst = host ? this.instances.get(r.id)?.get(host) : undefined
        if (!host || !inst || !heard.has(host) || this.now < inst.bootedAt) continue
        this.hear(this.translation.observations(this.guestBatch(r.id)))
      }
  }

  /** Engine inputs the hub's translation made of a message. */
  private hear(inputs: Input[]): void {
    this.inbox.push(...inputs)
  }

  private heartbeatOf(id: string): Heartbeat {
    const n = this.node(id)
    const readsDisk = this.world.diskHeartbeat.includes(id) && n.disk === 'ok'
    const seq = (this.heartbeatSeqs.get(id) ?? 0) + 1
    this.heartbeatSeqs.set(id, seq)
    return {
      v: 1,
      node: id,
      incarnation: n.incarnation,
      seq,
      sentMono: this.now,
      sentAt: this.now,
      intervalMs: this.world.intervals.heartbeatMs,
      hears: this.peersOf(id),
      ...(readsDisk
        ? {
            disk: [...this.diskSlots]
              .sort(([x], [y]) => x.localeCompare(y))
              .map(([node, slot]) => ({ node, ...slot })),
          }
        : {}),
    }
  }

  private statusOf(id: string): Status {
    const timeouts = this.world.actionTimeouts
    return {
      v: 1,
      node: id,
      incarnation: this.node(id).incarnation,
      state: 'online',
      at: this.now,
      agentVersion: 'sim',
      role: 'host',
      capabilities: [],
      ...(Object.keys(timeouts).length > 0 ? { actionTimeouts: timeouts } : {}),
    }
  }

  /**
   * A host agent's complete batch: every resource it may run (running, or stopped), a vm with its
   * guest heartbeat count and the age of its monitor's answer, its links once one was degraded,
   * its ping targets.
   */
  private hostBatch(id: string): ObservationBatch {
    const observations: Observation[] = []
    for (const r of this.spec.resources) {
      if (r.kind === 'guest-app' || (r.allowedNodes && !r.allowedNodes.includes(id))) continue
      const inst = this.instances.get(r.id)?.get(id)
      const o: Observation = {
        driver: r.kind === 'vm' ? 'libvirt' : 'process',
        target: r.id,
        state: inst ? inst.state : 'stopped',
      }
      if (r.kind === 'vm' && inst?.state === 'running') {
        // A stalled monitor keeps answering with its last sample, older by the tick.
        const stall = this.monitorStalls.get(r.id)
        o.metrics = { guestHeartbeats: stall ? stall.beats : (this.guestBeats.get(r.id) ?? 0) }
        o.ageMs = stall ? this.now - stall.since : 0
      }
      observations.push(o)
    }
    if (this.nicWatched.has(id)) {
      const degraded = this.degraded.get(id)
      observations.push(
        degraded
          ? { driver: 'nic', target: 'bond0', state: 'running', metrics: { degraded: 1 }, detail: degraded }
          : { driver: 'nic', target: 'bond0', state: 'running' },
      )
    }
    const c = this.connectivity.get(id)
    if (c) observations.push({ driver: 'ping', target: 'gateways', state: 'running', metrics: { ...c } })
    return this.batch(id, observations)
  }

  /** A guest agent's complete batch: the applications of its vm. */
  private guestBatch(vm: string): ObservationBatch {
    const observations: Observation[] = []
    for (const app of this.spec.resources) {
      if (app.kind !== 'guest-app' || app.vm !== vm) continue
      const a = this.instances.get(app.id)?.get(vm)
      observations.push({ driver: 'process', target: app.id, state: a ? a.state : 'stopped' })
    }
    return this.batch(vm, observations)
  }

  private batch(node: string, observations: Observation[]): ObservationBatch {
    const seq = (this.batchSeqs.get(node) ?? 0) + 1
    this.batchSeqs.set(node, seq)
    const incarnation = this.nodes.get(node)?.incarnation ?? 1
    return { v: 1, node, incarnation, seq, at: this.now, observations, complete: true }
  }

  /** Carries out an engine action, as the hub and the agents would, with delays. */
  private execute(a: Action): void {
    this.issued.push({ at: this.now, action: a })
    const { delays } = this.world
    if (a.type === 'alert') {
      this.write('alert', `${a.severity}: ${a.message}`)
      return
    }
    if (a.type === 'fence') {
      this.write('world', `fence ${a.node} level ${a.level + 1}: ${a.devices.join(' + ')}`)
      for (const d of a.devices) this.fenceDevice(a.id, a.node, d)
      return
    }
    if (a.type === 'migrate') {
      if (!this.answeredFromRecord(a)) this.migrate(a)
      return
    }
    this.checkStart(a)
    const host = a.node
    const reachable = () =>
      this.nodes.has(host)
        ? this.hubHears(host)
        : this.vmRunningOn(host) !== null && this.hubHears(this.vmRunningOn(host) as string)
    if (!reachable()) return // the command never arrives; the engine times out
    if (this.answeredFromRecord(a)) return
    const delay =
      this.world.actionDelays[a.resource]?.[a.type] ??
      {
        start: delays.startMs,
        stop: delays.stopMs,
        restart: delays.restartMs,
        'reset-vm': delays.resetMs,
        'reboot-vm': delays.rebootMs,
        suspend: delays.suspendMs,
        resume: delays.suspendMs,
      }[a.type]
    // A command is carried out by the agent that received it: one that died meanwhile (even if a
    // new one has started since) took it along, unanswered.
    const incarnation = this.nodes.has(host) ? this.node(host).incarnation : 0
    this.schedule(delay, () => {
      if (this.nodes.has(host) && (this.node(host).power !== 'on' || !this.node(host).agent)) return
      if (this.nodes.has(host) && this.node(host).incarnation !== incarnation) return
      const byHost = this.instances.get(a.resource)
      if (!byHost) return
      const startFailure =
        a.type === 'start' || a.type === 'restart'
          ? (this.startFails.get(`${a.resource}@${host}`) ??
            (this.world.onDisk.includes(a.resource) && this.nodes.has(host) && this.node(host).disk === 'hang'
              ? 'local'
              : undefined))
          : undefined
      const fails = a.type === 'stop' ? this.stopFails.has(a.resource) : startFailure !== undefined
      if (fails) {
        this.write('world', `${a.type} ${a.resource} on ${host}: failed`)
        this.settleRecord(a, false)
        if (reachable())
          this.answer(a, {
            code: a.type === 'stop' ? 'transient' : (startFailure ?? 'local'),
            message: `${a.type} failed on ${host}`,
          })
        return
      }
      if (a.type === 'suspend' || a.type === 'resume') {
        const i = byHost.get(host)
        if (i) i.state = a.type === 'suspend' ? 'suspended' : 'running'
      } else if (a.type === 'stop') {
        byHost.delete(host)
        if (this.resourceSpec(a.resource).kind === 'vm') this.dropGuestApps(a.resource)
      } else {
        const boot = this.resourceSpec(a.resource).kind === 'vm' ? delays.guestBootMs : 0
        byHost.set(host, {
          state: 'running',
          hung: this.bootHangs.has(a.resource),
          bootedAt: this.now + boot,
        })
        if (this.resourceSpec(a.resource).kind === 'vm') this.bootGuestApps(a.resource)
      }
      this.write('world', `${a.type} ${a.resource} on ${host}: done`)
      this.settleRecord(a, true)
      if (reachable()) this.answer(a)
    })
  }

  /**
   * The agent's record of the actions it ran, by action id (its idempotency key): an action asked
   * again is answered from it (at once if it is over, when it ends otherwise), never run twice. An
   * agent that restarted has no record of its predecessor's.
   */
  private answeredFromRecord(a: AgentAction): boolean {
    const host = this.nodes.has(a.node) ? a.node : this.vmRunningOn(a.node)
    if (host === null || !this.hubHears(host)) return false
    const incarnation = this.nodes.has(a.node) ? this.node(a.node).incarnation : 0
    const key = `${a.node}/${a.id}`
    const record = this.agentRecords.get(key)
    if (!record || record.incarnation !== incarnation) {
      this.agentRecords.set(key, { incarnation, ok: null })
      return false
    }
    this.write('world', `${a.type} ${a.resource} on ${a.node}: asked again, answered from the agent's record`)
    if (record.ok === true) this.answer(a)
    else if (record.ok === false)
      this.answer(a, { code: 'transient', message: `${a.type} failed on ${a.node} (the agent's record)` })
    return true
  }

  /**
   * The agent's result of the command an action became (its id the action's), through the hub's
   * translation; `error`: the driver's failure, its code the recovery scope.
   */
  private answer(a: AgentAction, error?: { code: string; message: string }): void {
    const n = this.nodes.get(a.node)
    const result: CommandResult = {
      v: 1,
      id: `00000000-0000-4000-8000-${String(++this.resultSeq).padStart(12, '0')}`,
      node: a.node,
      incarnation: n?.incarnation ?? 1,
      status: error ? 'failed' : 'ok',
      receivedAt: this.now,
      finishedAt: this.now,
      ...(error ? { error } : {}),
    }
    this.hear([actionResultInput(a.id, result)])
  }

  private settleRecord(a: { id: string; node: string }, ok: boolean): void {
    const record = this.agentRecords.get(`${a.node}/${a.id}`)
    if (record) record.ok = ok
  }

  /**
   * Live migration: the running instance (and its guests) moves as a whole; no restart. The result
   * comes from the agent that ran it: one that died meanwhile (even if a new one has started since)
   * took it along, unanswered, while the hypervisor finished the move.
   */
  private migrate(a: Extract<Action, { type: 'migrate' }>): void {
    if (!this.hubHears(a.node)) return
    const delays = this.world.delays
    const fails = this.migrateFails.delete(a.resource)
    const duration = delays.migrateMs ?? delays.restartMs
    const incarnation = this.node(a.node).incarnation
    const paused = Math.min(delays.migratePausedMs, duration)
    if (!fails && paused > 0)
      this.schedule(duration - paused, () => {
        const inst = this.instances.get(a.resource)?.get(a.node)
        if (inst) inst.switchingOver = true
      })
    this.schedule(fails ? Math.round(duration / 2) : duration, () => {
      const byHost = this.instances.get(a.resource)
      const inst = byHost?.get(a.node)
      if (inst) inst.switchingOver = false
      const target = this.node(a.to)
      const ok =
        !fails && Boolean(inst) && target.power === 'on' && target.agent && this.node(a.node).power === 'on'
      this.settleRecord(a, ok)
      if (ok && byHost && inst) {
        byHost.delete(a.node)
        byHost.set(a.to, inst)
        this.write('world', `migrate ${a.resource} ${a.node} -> ${a.to}: done`)
      } else {
        this.write(
          'world',
          `migrate ${a.resource} ${a.node} -> ${a.to}: failed${fails ? ' halfway (it stays on the source)' : ''}`,
        )
      }
      const source = this.node(a.node)
      if (source.incarnation !== incarnation || !source.agent) return
      if (this.hubHears(a.node))
        this.answer(a, ok ? undefined : { code: 'transient', message: 'migration failed' })
    })
  }

  /** A vm that stops takes its guest applications with it. */
  private dropGuestApps(vm: string): void {
    for (const [resource, byHost] of this.instances)
      if (this.resourceSpec(resource).vm === vm) byHost.delete(vm)
  }

  private bootGuestApps(vm: string): void {
    for (const app of this.spec.resources) {
      if (app.kind === 'guest-app' && app.vm === vm)
        this.instances.get(app.id)?.set(vm, { state: 'running', hung: false, bootedAt: this.now })
    }
  }

  private fenceDevice(actionId: string, node: string, device: string): void {
    const d = this.devices.get(device)
    const delays = this.world.delays
    if (!d) return
    const answer = (outcome: 'off' | 'unreachable' | 'auth-failed') => {
      if (this.hubDownUntil === null)
        this.inbox.push({ type: 'fence-result', actionId, node, device, outcome })
    }
    if (d.state === 'unreachable') {
      this.schedule(delays.fenceErrorMs, () => answer('unreachable'))
      return
    }
    if (d.state === 'auth-fail') {
      this.schedule(delays.fenceMs, () => answer('auth-failed'))
      return
    }
    this.schedule(delays.fenceMs, () => {
      if (d.state === 'ok') this.powerOff(d.node, `powered off by ${device}`)
      answer('off')
    })
  }

  private powerOff(id: string, why: string): void {
    const n = this.node(id)
    if (n.power === 'off') return
    n.power = 'off'
    n.agent = false
    const stopped = this.stopAllOn(id)
    this.write('world', `${id} ${why}${stopped.length ? ` (${stopped.join(', ')} gone)` : ''}`)
  }

  private hubUp(): void {
    this.hubDownUntil = null
    if (this.resumeFrom) {
      this.state = this.resumeFrom
      this.resumeFrom = null
    }
    if (this.hubFrozenSince !== null) {
      const forMs = this.now - this.hubFrozenSince
      this.hubFrozenSince = null
      this.write('world', 'hub runs again: its timers fire first, the messages queued meanwhile follow')
      // A resumed process runs its expired timers before it reads its sockets: the engine's
      // first step sees only that it stood still, the queued messages come a step later.
      this.queuedWhileFrozen = this.inbox
      this.inbox = [{ type: 'hub-paused', forMs }]
      return
    }
    if (this.takingOver) {
      const heardAgoMs = Object.fromEntries([...this.standbyHeard].map(([id, at]) => [id, this.now - at]))
      this.takingOver = false
      this.write(
        'world',
        'standby hub takes over: resumes the state the leader committed; reads power status of nodes being fenced',
      )
      this.inbox.push({ type: 'hub-takeover', heardAgoMs })
    } else {
      this.write(
        'world',
        'hub up: resumes from its persisted engine state; reads power status of nodes being fenced',
      )
      // A new process: what the last one had counted (disk slots, guest beats) starts over.
      this.translation = new AgentTranslation()
      this.inbox.push({ type: 'hub-restarted' })
    }
    for (const [id, n] of Object.entries(this.state.nodes)) {
      if (n.fence.phase !== 'running' && n.fence.phase !== 'verifying') continue
      const device = Object.entries(Object.fromEntries(this.devices)).find(
        ([, d]) => d.node === id && d.state === 'ok',
      )
      if (device && this.node(id).power === 'off')
        this.inbox.push({ type: 'power-state', node: id, state: 'off', device: device[0] })
    }
  }

  private fault(e: ScriptEvent): void {
    const [a, b, c, d] = e.args
    this.write('script', [e.verb, ...e.args].join(' '))
    const inst = (resource: string, host?: string) => {
      const byHost = this.instances.get(resource)
      const h = host ?? this.livingInstances(resource)[0]
      return h ? byHost?.get(h) : undefined
    }
    switch (e.verb) {
      case 'power-off':
        this.powerOff(a as string, 'power lost')
        break
      case 'power-on': {
        const n = this.node(a as string)
        if (n.power === 'off' || !n.agent) n.incarnation++
        n.power = 'on'
        n.agent = true
        break
      }
      case 'crash': {
        const n = this.node(a as string)
        n.agent = false
        this.stopAllOn(a as string)
        break
      }
      case 'agent-kill':
        this.node(a as string).agent = false
        break
      case 'agent-stop': {
        // Its last word, as the agent says it on a clean stop (if the hub can hear it), then silence.
        if (this.hubHears(a as string))
          this.hear(
            this.translation.status({
              ...this.statusOf(a as string),
              state: 'offline',
              stopping: b === 'host' ? 'host' : 'agent',
            }),
          )
        this.node(a as string).agent = false
        break
      }
      case 'agent-start': {
        const n = this.node(a as string)
        if (!n.agent) n.incarnation++
        n.agent = true
        break
      }
      case 'partition':
      case 'heal': {
        const up = e.verb === 'heal'
        const targets = a === 'hub' ? this.nodeIds : [a as string]
        for (const t of targets) {
          const n = this.node(t)
          const what = b ?? 'all'
          if (what === 'hub' || what === 'all') n.hubLink = up
          if (what === 'all' && a !== 'hub') {
            for (const p of this.nodeIds) {
              if (p === t) continue
              if (up) {
                n.cut.delete(p)
                this.node(p).cut.delete(t)
              } else n.cut.add(p)
            }
          } else if (what !== 'hub' && what !== 'all') {
            if (up) {
              n.cut.delete(what)
              this.node(what).cut.delete(t)
            } else n.cut.add(what)
          }
        }
        break
      }
      case 'loss':
        this.node(a as string).loss = Number(b) / 100
        break
      case 'delay':
        this.node(a as string) // a known node
        if (Number(b) === 0 && !c) this.linkDelays.delete(a as string)
        else this.linkDelays.set(a as string, { ms: Number(b), jitterMs: Number(c ?? 0) })
        break
      case 'disk-hang':
      case 'disk-ok':
        this.node(a as string).disk = e.verb === 'disk-hang' ? 'hang' : 'ok'
        if (e.verb === 'disk-hang')
          for (const id of this.world.onDisk) {
            // What lives on that disk stalls with it: a vm is paused on its I/O error, an app fails.
            const i = this.instances.get(id)?.get(a as string)
            if (i?.state === 'running') i.state = this.resourceSpec(id).kind === 'vm' ? 'paused' : 'failed'
          }
        break
      case 'app-crash': {
        const i = inst(a as string, b)
        if (i) i.state = 'failed'
        break
      }
      case 'app-stop': {
        const host = b ?? this.livingInstances(a as string)[0]
        if (host) this.instances.get(a as string)?.delete(host)
        break
      }
      case 'monitor-stall':
        if (!this.monitorStalls.has(a as string))
          this.monitorStalls.set(a as string, {
            since: this.now,
            beats: this.guestBeats.get(a as string) ?? 0,
          })
        break
      case 'monitor-ok':
        this.monitorStalls.delete(a as string)
        break
      case 'guest-boot-hang':
        this.bootHangs.add(a as string)
        break
      case 'guest-boot-ok':
        this.bootHangs.delete(a as string)
        break
      case 'guest-hang':
      case 'guest-resume': {
        const i = inst(a as string)
        if (i) i.hung = e.verb === 'guest-hang'
        break
      }
      case 'vm-pause':
      case 'vm-suspend':
      case 'vm-resume': {
        // pause: the hypervisor's own (an I/O error); suspend: an operator's, outside Vigil.
        for (const i of this.instances.get(a as string)?.values() ?? []) {
          if (e.verb === 'vm-pause' && i.state === 'running') i.state = 'paused'
          else if (e.verb === 'vm-suspend' && i.state === 'running') i.state = 'suspended'
          else if (e.verb === 'vm-resume' && (i.state === 'paused' || i.state === 'suspended'))
            i.state = 'running'
        }
        break
      }
      case 'vm-migrate-outside': {
        // An administrator live-migrates the vm with the hypervisor's own tools: it (and what
        // runs in it) moves as a whole, the cluster not asked.
        const byHost = this.instances.get(a as string)
        const i = byHost?.get(b as string)
        if (!byHost || !i) throw new Error(`script:${e.line}: ${a} does not run on ${b}`)
        byHost.delete(b as string)
        byHost.set(c as string, i)
        break
      }
      case 'resource-suspend':
      case 'resource-resume':
        this.inbox.push({
          type: 'operator',
          op: { op: 'suspend', resource: a as string, on: e.verb === 'resource-suspend' },
        })
        break
      case 'device': {
        const dev = this.devices.get(a as string)
        if (!dev) throw new Error(`script:${e.line}: unknown fence device "${a}"`)
        dev.state = b as DeviceState
        break
      }
      case 'move':
      case 'migrate':
        this.inbox.push({
          type: 'operator',
          op: {
            op: 'move',
            resource: a as string,
            node: b as string,
            forMs: Number(c) * 1000,
            ...(e.verb === 'migrate' ? { live: true } : {}),
          },
        })
        break
      case 'maintenance': {
        const scope = a as 'node' | 'resource' | 'cluster'
        const [id, onoff, secs] = scope === 'cluster' ? [undefined, b, c] : [b, c, d]
        this.inbox.push({
          type: 'operator',
          op: {
            op: 'maintenance',
            scope,
            id,
            on: onoff === 'on',
            ...(secs ? { forMs: Number(secs) * 1000 } : {}),
          },
        })
        break
      }
      case 'cleanup':
        this.inbox.push({ type: 'operator', op: { op: 'cleanup', resource: a as string } })
        break
      case 'resource-stop':
      case 'resource-start':
        this.inbox.push({
          type: 'operator',
          op: {
            op: 'target',
            resource: a as string,
            role: e.verb === 'resource-stop' ? 'stopped' : 'started',
          },
        })
        break
      case 'fence':
        this.inbox.push({ type: 'operator', op: { op: 'fence', node: a as string, by: 'alice' } })
        break
      case 'ack-fence':
        this.inbox.push({ type: 'operator', op: { op: 'ack-fence', node: a as string, by: 'operator' } })
        break
      case 'ping': {
        const c = this.connectivity.get(a as string)
        if (c) c.reachable = Number(b)
        break
      }
      case 'nic-degrade':
        this.degraded.set(a as string, `bond0 lost slave ${b ?? 'eth1'}`)
        this.nicWatched.add(a as string)
        break
      case 'nic-ok':
        this.degraded.delete(a as string)
        break
      case 'evacuate':
        this.inbox.push({ type: 'operator', op: { op: 'evacuate', node: a as string } })
        break
      case 'hub-takeover':
        // The leader dies; a standby that listened all along leads once the lease has run out. The
        // leader committed its state before every action and every 2 s: the standby resumes it as
        // it was, or (a second argument) as it was that long before.
        this.hubDownUntil = this.now + Number(a) * 1000
        this.takingOver = true
        if (b !== undefined) this.resumeFrom = this.snapshot
        this.write(
          'world',
          b === undefined
            ? `leader hub lost; a standby takes over in ${a} s (its lease)`
            : `leader hub lost; a standby takes over in ${a} s (its lease), from the state committed ${b} s ago`,
        )
        break
      case 'hub-pause':
        // SIGSTOP, or the hub's VM paused: it neither hears nor acts, but nothing is lost: what
        // agents send waits in the broker's queue and the sockets' buffers.
        this.hubDownUntil = this.now + Number(a) * 1000
        this.hubFrozenSince = this.now
        this.write('world', `hub frozen for ${a} s (messages meanwhile queue up)`)
        break
      case 'hub-restart':
        this.hubDownUntil = this.now + Number(a) * 1000
        if (b !== undefined) this.resumeFrom = this.snapshot
        this.write(
          'world',
          b === undefined
            ? `hub down for ${a} s (engine state persisted; messages meanwhile are lost)`
            : `hub down for ${a} s (its engine state last persisted ${b} s ago; messages meanwhile are lost)`,
        )
        break
      case 'stop-fail':
        this.stopFails.add(a as string)
        break
      case 'start-fail':
        this.startFails.set(`${a}@${b}`, c === 'transient' ? 'transient' : 'local')
        break
      case 'migrate-fail':
        this.migrateFails.add(a as string)
        break
      case 'end':
        break
    }
  }

  /** No start may be issued while a copy runs elsewhere (ground truth, not the engine's belief). */
  private checkStart(a: Action): void {
    if (a.type !== 'start' && a.type !== 'restart') return
    const elsewhere = this.livingInstances(a.resource).filter((h) => h !== a.node)
    if (elsewhere.length > 0)
      this.violate(`${a.type} of ${a.resource} on ${a.node} issued while it runs on ${elsewhere.join(', ')}`)
    const fenced = this.issued.some(
      (x) => x.at === this.now && x.action.type === 'fence' && x.action.node === a.node,
    )
    if (fenced) this.violate(`${a.resource} placed on ${a.node}, which is being fenced in the same step`)
  }

  private checkInvariants(): void {
    for (const r of this.spec.resources) {
      const where = this.livingInstances(r.id)
      // Duplicates the world started with are the scenario's premise, not Vigil's doing.
      const initial = [this.world.running[r.id] ?? []].flat()
      if (where.length > 1 && !where.every((h) => initial.includes(h)))
        this.violate(`${r.id} runs on ${where.join(' and ')} at once`)
    }
  }

  private violate(message: string): void {
    const line = `INVARIANT VIOLATED: ${message}`
    if (this.violations.at(-1) !== line) {
      this.violations.push(line)
      this.write('!!!', line)
    }
  }
}
