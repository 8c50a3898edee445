import { promisify } from 'node:util'
import { gunzipSync, gzip } from 'node:zlib'
import { type Clock, type Logger, VigilError } from '@vigil/kit'
import type { Etcd3, Lease } from 'etcd3'
import { z } from 'zod'

const gzipAsync = promisify(gzip)

/**
 * `group:` in the hub's config: hubs on several machines share leadership and the safety-critical
 * facts through etcd. Unset (the default), the hub runs alone and needs no etcd.
 */
export const groupSchema = z
  .strictObject({
    /** etcd v3 client URLs (every member: the client moves on when one is down). */
    endpoints: z
      .array(z.string().regex(/^https?:\/\/.+/, 'must be an http:// or https:// URL'))
      .min(1, 'needs at least one etcd endpoint'),
    /**
     * The leader's lease: a leader that cannot renew it stops acting at once; a standby takes over
     * at most this long after the leader died. The failover budget of the hub group.
     */
    leaseTtlSeconds: z.number().int().min(1).max(60).default(2),
    /** This hub's API as the others should link to it (default: its `http.listen`). */
    advertiseUrl: z
      .string()
      .regex(/^https?:\/\/.+/, 'must be an http:// or https:// URL')
      .optional(),
    /** How often a standby looks for a vacant leadership (besides noticing the leader key go). */
    pollMs: z.number().int().min(20).max(10_000).default(200),
  })
  .optional()

export type GroupConfig = NonNullable<z.output<typeof groupSchema>>

export type GroupRole = 'leader' | 'standby' | 'no-quorum'

export interface Leadership {
  hub: string
  url: string
  /** The command epoch: the etcd revision that created the leader key (only grows). */
  epoch: number
  since: number
}

/** An action the leader is about to carry out, written to etcd before it leaves the hub. */
export interface Intent {
  id: string
  type: string
  node: string
  resource?: string
  decision: string
}

export interface GroupView {
  role: GroupRole
  self: string
  leader: Leadership | null
  epoch: number | null
  leaseRemainingMs: number | null
  takeovers: number
  etcd: { endpoints: string[]; reachable: boolean; lastError: string | null }
}

/** The etcd client library, loaded only by a hub in a group (its gRPC stack costs a hub alone 0.2 s at start). */
export type EtcdModule = typeof import('etcd3')
export const loadEtcd = (): Promise<EtcdModule> => import('etcd3')

/** What the hub does when this hub gains or loses the leadership. */
export interface GroupEvents {
  /** This hub now leads under `epoch`: resume from the group's state and act. */
  onLead(epoch: number): void
  /** This hub stopped leading (why): stop acting at once, keep observing. */
  onDepose(reason: string): void
  /**
   * Why this hub must not lead now (its database cannot be written), or null: while it says so,
   * the hub does not campaign, and a leader gives the leadership up.
   */
  mayLead?(): string | null
}

/** Keys under /vigil/<cluster>/ in etcd. */
const keys = (cluster: string) => {
  const root = `/vigil/${cluster}/`
  return {
    leader: `${root}leader`,
    state: `${root}engine-state`,
    intent: (epoch: number, id: string) => `${root}intents/${String(epoch).padStart(12, '0')}/${id}`,
    intents: `${root}intents/`,
    clusterFile: `${root}cluster-file`,
  }
}

/**
 * The cluster file the group runs, as its leader committed it: at its first leadership, and at
 * each `vigil cluster reload`. A hub taking over runs this one, whatever its own copy says.
 */
export interface CommittedClusterFile {
  /** sha256 of `text`. */
  digest: string
  text: string
  /** The hub that committed it, who asked, and when. */
  hub: string
  by: string
  at: number
}

/** etcd calls that take longer than this count as failed (the lease is the real bound). */
const CALL_DEADLINE_MS = 1000
/**
 * Intents recorded more than this many etcd revisions before a takeover are pruned then (the
 * decision records keep the story; a revision is one write, about one every 2 s from the leader).
 */
const INTENT_RETENTION_REVISIONS = 100_000

/**
 * One hub's membership in the hub group: a leadership held by an etcd lease, whose key's creation
 * revision is the command epoch (the fencing token agents compare), and the guarded writes that
 * let only the current leader record intents and engine state.
 *
 * Safety rests on two rules. A leader stops acting as soon as it cannot prove its lease is alive
 * (no renewal answered within the lease's TTL less a margin, measured on this process's monotonic
 * clock, so a pause or a cut makes it step down before etcd lets another take over). And every
 * action is preceded by `commit`, an etcd transaction that succeeds only while the leader key
 * still has this hub's creation revision: whatever a deposed, paused or cut-off hub still tries
 * is refused there, and whatever it did commit is in the state the next leader resumes.
 */
export class HubGroup {
  private readonly client: Etcd3
  private readonly k: ReturnType<typeof keys>
  private lease: Lease | null = null
  private leaseId: string | null = null
  /** Monotonic ms until which the lease is certainly alive (last renewal sent + TTL - margin). */
  private validUntil = 0
  private leadership: Leadership | null = null
  private known: Leadership | null = null
  private roleNow: GroupRole = 'standby'
  private reachable = false
  private lastError: string | null = null
  private takeoverCount = 0
  private timer: NodeJS.Timeout | null = null
  private campaigning = false
  /** The state last written, to skip rewriting an unchanged one. */
  private lastCommitted: string | null = null
  private closed = false

  constructor(
    private readonly etcd: EtcdModule,
    private readonly config: GroupConfig,
    private readonly self: { name: string; cluster: string; url: string },
    private readonly events: GroupEvents,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.client = new etcd.Etcd3({
      hosts: config.endpoints,
      dialTimeout: CALL_DEADLINE_MS,
      // Every unary call has a deadline: one left waiting on an etcd without quorum (a lease
      // grant, a revoke) would hold the leadership loop for good. Streams (keepalives) are long.
      defaultCallOptions: (context) =>
        context.isStream ? {} : { deadline: new Date(Date.now() + CALL_DEADLINE_MS) },
    })
    this.k = keys(self.cluster)
  }

  start(): void {
    const tick = () => {
      if (this.closed) return
      this.checkLease()
      void this.campaign()
    }
    tick()
    this.timer = setInterval(tick, this.config.pollMs)
  }

  get role(): GroupRole {
    return this.roleNow
  }

  /** The epoch this hub leads under, or null while it does not lead. */
  get epoch(): number | null {
    return this.leadership?.epoch ?? null
  }

  isLeader(): boolean {
    return this.leadership !== null && this.clock.monoMs() < this.validUntil
  }

  view(): GroupView {
    return {
      role: this.roleNow,
      self: this.self.name,
      leader: this.leadership ?? this.known,
      epoch: this.epoch,
      leaseRemainingMs: this.leadership ? Math.max(0, this.validUntil - this.clock.monoMs()) : null,
      takeovers: this.takeoverCount,
      etcd: { endpoints: this.config.endpoints, reachable: this.reachable, lastError: this.lastError },
    }
  }

  /**
   * Records the engine's state (as JSON text) and the intents of the actions about to be carried
   * out, only while this hub still leads (compare on the leader key's creation revision). False:
   * nothing was written and nothing may be carried out; the hub has been deposed.
   */
  async commit(json: string, intents: Intent[]): Promise<boolean> {
    const leading = this.leadership
    if (!leading || !this.isLeader()) return false
    // Nothing new to record: the lease, not this write, says we still lead.
    if (intents.length === 0 && json === this.lastCommitted) return true
    // On libuv's pool, not the event loop: at 10,000 nodes the state is about 8 MB of JSON. The
    // transaction below is still guarded by the leader key, whatever this wait lasts.
    const ops = [this.client.put(this.k.state).value(await gzipAsync(json))]
    for (const intent of intents)
      ops.push(
        this.client
          .put(this.k.intent(leading.epoch, intent.id))
          .value(
            JSON.stringify({ ...intent, hub: this.self.name, epoch: leading.epoch, at: this.clock.wallMs() }),
          ),
      )
    try {
      const res = await this.client
        .if(this.k.leader, 'Create', '==', leading.epoch)
        .then(...ops)
        .options({ deadline: new Date(Date.now() + CALL_DEADLINE_MS) })
        .commit()
      this.reachable = true
      if (!res.succeeded) {
        this.depose('the leader key is no longer ours (a newer leader, or our lease expired)')
        return false
      }
      // An answer that came after the lease may have run out proves nothing for what follows.
      if (!this.isLeader()) {
        this.depose('the lease ran out while the write was in flight')
        return false
      }
      this.lastCommitted = json
      return true
    } catch (err) {
      this.unreachable(err)
      this.depose(`could not record the intent in etcd: ${(err as Error).message}`)
      return false
    }
  }

  /** Records the cluster file the group runs, only while this hub still leads. */
  async commitClusterFile(file: CommittedClusterFile): Promise<boolean> {
    const leading = this.leadership
    if (!leading || !this.isLeader()) return false
    try {
      const res = await this.client
        .if(this.k.leader, 'Create', '==', leading.epoch)
        .then(this.client.put(this.k.clusterFile).value(JSON.stringify(file)))
        .options({ deadline: new Date(Date.now() + CALL_DEADLINE_MS) })
        .commit()
      this.reachable = true
      return res.succeeded && this.isLeader()
    } catch (err) {
      this.unreachable(err)
      return false
    }
  }

  /** The cluster file the group runs (null: no leader has committed one yet). */
  async loadClusterFile(): Promise<CommittedClusterFile | null> {
    const text = await this.client
      .get(this.k.clusterFile)
      .options({ deadline: new Date(Date.now() + CALL_DEADLINE_MS) })
      .string()
    return text ? (JSON.parse(text) as CommittedClusterFile) : null
  }

  /** The engine state the last leader committed (null: no leader has committed one yet). */
  async loadState(): Promise<unknown> {
    const buf = await this.client
      .get(this.k.state)
      .options({ deadline: new Date(Date.now() + CALL_DEADLINE_MS) })
      .buffer()
    return buf ? JSON.parse(gunzipSync(buf).toString('utf8')) : null
  }

  /** Every intent recorded under `epoch` (for tests and audits: each fence has one). */
  async intents(epoch?: number): Promise<(Intent & { hub: string; epoch: number; at: number })[]> {
    const prefix = epoch === undefined ? this.k.intents : this.k.intent(epoch, '')
    const all = await this.client.getAll().prefix(prefix).strings()
    return Object.values(all).map((v) => JSON.parse(v))
  }

  async close(): Promise<void> {
    this.closed = true
    if (this.timer) clearInterval(this.timer)
    const wasLeader = this.leadership !== null
    this.leadership = null
    this.roleNow = 'standby'
    // Revoking hands the leadership over at once instead of after the lease's TTL.
    if (this.lease) await this.dropLease(this.lease)
    if (wasLeader) this.log.info('left the leadership (lease revoked)')
    this.client.close()
  }

  /**
   * Gives the leadership up (the lease is revoked, so another hub can lead at once), e.g. when this
   * hub cannot take over after all. It campaigns again like any standby.
   */
  stepDown(reason: string): void {
    this.depose(reason)
  }

  /** A leader whose lease it can no longer prove alive stops acting now, before etcd decides. */
  private checkLease(): void {
    if (this.leadership && this.clock.monoMs() >= this.validUntil)
      this.depose(`no lease renewal answered within ${this.config.leaseTtlSeconds} s`)
  }

  private async campaign(): Promise<void> {
    if (this.campaigning || this.closed) return
    this.campaigning = true
    try {
      if (!this.lease) await this.newLease()
      if (!this.lease || !this.leaseId) return
      const veto = this.events.mayLead?.() ?? null
      if (veto !== null) {
        if (this.leadership) this.depose(`this hub may not lead: ${veto}`)
        this.roleNow = 'standby'
        return
      }
      const held = this.leadership
      if (held) {
        // Still ours? A key deleted by hand, or a lease etcd expired while we were paused.
        const kv = await this.client
          .get(this.k.leader)
          .options({ deadline: new Date(Date.now() + CALL_DEADLINE_MS) })
          .exec()
        this.reachable = true
        const createRev = Number(kv.kvs[0]?.create_revision ?? 0)
        // Deposed while the read was out (the lease ran out): nothing more to say.
        if (this.leadership === held && createRev !== held.epoch)
          this.depose('the leader key is gone or belongs to another hub')
        return
      }
      const startedMono = this.clock.monoMs()
      const value: Omit<Leadership, 'epoch'> = {
        hub: this.self.name,
        url: this.self.url,
        since: this.clock.wallMs(),
      }
      const res = await this.client
        .if(this.k.leader, 'Create', '==', 0)
        .then(this.client.put(this.k.leader).value(JSON.stringify(value)).lease(this.leaseId))
        .else(this.client.get(this.k.leader))
        .options({ deadline: new Date(Date.now() + CALL_DEADLINE_MS) })
        .commit()
      this.reachable = true
      this.lastError = null
      if (res.succeeded) {
        const epoch = Number(res.header.revision)
        // The lease was alive when this request left: it is certain for its TTL from then.
        this.validUntil = Math.min(this.validUntil, startedMono + this.leaseBudgetMs())
        if (this.clock.monoMs() >= this.validUntil) {
          // The key is ours but came too late to lead on: it must not stay, or its lease (still
          // renewed) would hold the leadership for ever with nobody leading (found by the chaos
          // run: an etcd member killed, the group leaderless for minutes). Dropping the lease
          // deletes the key; the next campaign starts with a fresh one.
          this.log.warn({ epoch }, 'won the leadership too late to trust the lease: giving the key up')
          if (this.lease) await this.dropLease(this.lease)
          return
        }
        this.leadership = { ...value, epoch }
        this.lastCommitted = null
        this.roleNow = 'leader'
        this.takeoverCount++
        this.log.warn({ epoch, hub: this.self.name }, 'this hub now leads the hub group')
        this.events.onLead(epoch)
        void this.pruneIntents(epoch)
        return
      }
      const kv = res.responses[0]?.response_range?.kvs?.[0]
      if (kv && this.lease && String(kv.lease) === this.leaseId) {
        // Held by this hub's own lease, yet it does not lead (a create whose answer was lost):
        // given up the same way, so that the group is not left with a leader nobody is.
        this.log.warn("the leader key is held by this hub's lease without its leadership: giving it up")
        await this.dropLease(this.lease)
        return
      }
      if (kv) {
        const v = JSON.parse(kv.value.toString()) as Omit<Leadership, 'epoch'>
        const known = { ...v, epoch: Number(kv.create_revision) }
        if (known.epoch !== this.known?.epoch)
          this.log.info({ leader: known.hub, epoch: known.epoch }, 'the hub group has a leader')
        this.known = known
      }
      this.roleNow = 'standby'
    } catch (err) {
      this.unreachable(err)
    } finally {
      this.campaigning = false
    }
  }

  private async newLease(): Promise<void> {
    const lease = this.client.lease(this.config.leaseTtlSeconds, { autoKeepAlive: true })
    let firedAt = this.clock.monoMs()
    lease.on('keepaliveFired', () => {
      firedAt = this.clock.monoMs()
    })
    lease.on('keepaliveSucceeded', () => {
      if (this.lease !== lease) return
      this.reachable = true
      this.validUntil = firedAt + this.leaseBudgetMs()
    })
    lease.on('lost', (err) => {
      if (this.lease !== lease) return
      this.lease = null
      this.leaseId = null
      this.unreachable(err)
      this.depose(`lease lost: ${err.message}`)
    })
    const grantedFrom = this.clock.monoMs()
    try {
      this.leaseId = await lease.grant()
      this.lease = lease
      this.validUntil = grantedFrom + this.leaseBudgetMs()
    } catch (err) {
      lease.release()
      this.unreachable(err)
    }
  }

  /**
   * How long after a renewal was sent the lease is certainly alive: its TTL less a margin for
   * the clocks of etcd and this machine running at slightly different rates, and for the time
   * between the check and the act.
   */
  private leaseBudgetMs(): number {
    const ttl = this.config.leaseTtlSeconds * 1000
    return ttl - Math.min(500, ttl / 4)
  }

  private depose(reason: string): void {
    if (this.closed) return
    const had = this.leadership
    this.leadership = null
    this.roleNow = this.reachable ? 'standby' : 'no-quorum'
    if (!had) return
    this.log.warn({ epoch: had.epoch, reason }, 'this hub stopped leading the hub group')
    // A fresh lease for the next campaign. The old one stops being renewed now (a revoke that
    // waits on an etcd without quorum would otherwise leave its keepalives running, and keep the
    // leader key alive for ever once etcd is back), then is revoked if etcd answers in time.
    if (this.lease) this.dropLease(this.lease)
    this.events.onDepose(reason)
  }

  private async dropLease(lease: Lease): Promise<void> {
    if (this.lease === lease) {
      this.lease = null
      this.leaseId = null
    }
    lease.release()
    await lease.revoke({ deadline: new Date(Date.now() + CALL_DEADLINE_MS) }).catch(() => {})
  }

  private unreachable(err: unknown): void {
    this.reachable = false
    this.lastError = (err as Error)?.message ?? String(err)
    if (!this.leadership) this.roleNow = 'no-quorum'
  }

  private async pruneIntents(epoch: number): Promise<void> {
    const floor = this.k.intent(Math.max(0, epoch - INTENT_RETENTION_REVISIONS), '')
    await this.client
      .delete()
      .range(new this.etcd.Range(this.k.intents, floor))
      .catch(() => {})
  }
}

/** Thrown by what only the leader may do, on a standby: names who leads and where. */
export function notLeaderError(view: GroupView): VigilError {
  const leader = view.leader
  return new VigilError(
    'unavailable',
    leader
      ? `this hub (${view.self}) is a standby: the leader is ${leader.hub} at ${leader.url}`
      : `this hub (${view.self}) is not leading and the hub group has no leader now (etcd: ${view.etcd.reachable ? 'reachable' : 'unreachable'})`,
  )
}
