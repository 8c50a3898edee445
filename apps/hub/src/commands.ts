import type { KeyObject } from 'node:crypto'
import { randomUUID } from 'node:crypto'
import { type Clock, type Logger, VigilError } from '@vigil/kit'
import {
  type Command,
  type CommandAction,
  type CommandResult,
  encode,
  nodeTopic,
  signCommand,
} from '@vigil/protocol'
import type { HubMetrics } from './metrics.js'
import type { CommandRow, HubStore } from './store.js'

export interface CommandOutcome {
  command: Command
  result: CommandResult
  roundTripMs: number
}

interface Pending {
  command: Command
  sentMono: number
  resolve: (outcome: CommandOutcome) => void
  reject: (err: VigilError) => void
  timer: NodeJS.Timeout
  /** The action's deadline as the agent declared it on accepting (null until accepted). */
  acceptedBudgetMs: number | null
}

/** The longest action deadline an agent may declare (a day): a bigger one is a bug, capped. */
const MAX_ACTION_BUDGET_MS = 86_400_000

/** A result that came after the hub stopped waiting for it, with the command it answers. */
export type LateResult = { command: CommandRow; result: CommandResult }

/**
 * Sends commands to agents and matches their results. Each command carries this hub's epoch and a
 * sequence number that only grows within the epoch, an expiry, its target and the hub's Ed25519
 * signature over all of them; it is recorded before it is published, and its outcome is recorded
 * exactly once.
 *
 * Two clocks, one per leg: `timeoutMs` covers delivery and acceptance (the agent says `accepted`
 * at once, with the action's deadline as its driver declares it); the result is then awaited for
 * that deadline plus `timeoutMs` (the way back), so a migration of 10 minutes is waited for and a
 * lost command is noticed in seconds. A result arriving after the hub stopped waiting (or one for a
 * command an earlier run of this hub sent) is still recorded and handed to `onLateResult`: the
 * outcome of a real action is never dropped.
 */
export class CommandDispatcher {
  private seq: number
  private readonly pending = new Map<string, Pending>()
  private lateListener: ((late: LateResult) => void) | null = null
  private foreignListener: ((actionId: string, result: CommandResult) => void) | null = null

  constructor(
    private readonly opts: {
      cluster: string
      hubName: string
      epoch: number
      /** Why this hub may not command now (a standby of a hub group), or null. */
      mayCommand?: () => VigilError | null
      ttlMs: number
      timeoutMs: number
      /** Ed25519 private key every command is signed with. */
      /** The key to sign with now (it may be rotated while the hub runs). */
      signingKey: () => KeyObject
    },
    private readonly publish: (topic: string, payload: string) => Promise<void>,
    private readonly store: HubStore,
    private readonly metrics: HubMetrics,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.seq = store.maxCommandSeq(opts.epoch)
  }

  /**
   * A new leadership of the hub group: commands from now on carry its epoch, with a sequence that
   * starts above whatever this hub sent under it before.
   */
  setEpoch(epoch: number): void {
    this.opts.epoch = epoch
    this.seq = this.store.maxCommandSeq(epoch)
  }

  async send(target: string, action: CommandAction, args: Command['args'] = {}): Promise<CommandOutcome> {
    const refused = this.opts.mayCommand?.()
    if (refused) throw refused
    const issuedAt = this.clock.wallMs()
    const unsigned: Omit<Command, 'sig'> = {
      v: 1,
      id: randomUUID(),
      issuer: { hub: this.opts.hubName, epoch: this.opts.epoch },
      seq: ++this.seq,
      issuedAt,
      expiresAt: issuedAt + this.opts.ttlMs,
      target,
      action,
      args,
    }
    // Signed: a broker foothold (even the hub's own broker credentials) cannot command an agent.
    const command: Command = { ...unsigned, sig: signCommand(unsigned, this.opts.signingKey()) }
    this.store.insertCommand({
      id: command.id,
      node: target,
      action,
      args,
      epoch: command.issuer.epoch,
      seq: command.seq,
      issuedAt,
      expiresAt: command.expiresAt,
    })
    const outcome = new Promise<CommandOutcome>((resolve, reject) => {
      const timer = setTimeout(() => this.expire(command.id), this.opts.timeoutMs)
      this.pending.set(command.id, {
        command,
        sentMono: this.clock.monoMs(),
        resolve,
        reject,
        timer,
        acceptedBudgetMs: null,
      })
    })
    try {
      await this.publish(nodeTopic(this.opts.cluster, target, 'cmd'), encode('cmd', command))
    } catch (cause) {
      this.settle(command.id, 'failed', null)
      throw new VigilError('unavailable', `could not publish command to ${target}`, { cause })
    }
    this.log.info({ node: target, command: command.id, action, seq: command.seq }, 'command sent')
    return outcome
  }

  /** Results that come after the hub stopped waiting for them (see the class comment). */
  onLateResult(listener: (late: LateResult) => void): void {
    this.lateListener = listener
  }

  /**
   * Results of commands this hub never sent (another hub of the group did, before this one took
   * over), carrying the engine's action id their agent echoed.
   */
  onForeignResult(listener: (actionId: string, result: CommandResult) => void): void {
    this.foreignListener = listener
  }

  /**
   * Called by ingest for every decoded result. An acceptance starts the wait for the result; a
   * result for a command this hub no longer waits for is recorded if the store knows the command
   * and it was sent to that node, then passed on; anything else is ignored.
   */
  handleResult(result: CommandResult): void {
    const pending = this.pending.get(result.id)
    if (!pending) {
      if (result.status !== 'accepted') this.late(result)
      return
    }
    if (pending.command.target !== result.node) return
    if (result.status === 'accepted') {
      this.accepted(pending, result)
      return
    }
    const roundTripMs = this.clock.monoMs() - pending.sentMono
    this.settle(result.id, result.status, {
      ...result.result,
      ...(result.error ? { error: result.error } : {}),
    })
    this.metrics.commandRoundTrip.observe({ action: pending.command.action }, roundTripMs / 1000)
    if (result.status === 'ok') {
      pending.resolve({ command: pending.command, result, roundTripMs })
    } else {
      const reason = result.error ? `${result.error.code}: ${result.error.message}` : result.status
      // The agent's result is the cause: callers read its error code (a driver's recovery scope).
      pending.reject(
        new VigilError('command_refused', `${result.node} ${result.status} the command: ${reason}`, {
          cause: result,
        }),
      )
    }
  }

  private accepted(pending: Pending, result: CommandResult): void {
    if (pending.acceptedBudgetMs !== null) return // a QoS 1 redelivery
    const declared = Number(result.result?.timeoutMs)
    const budget = Number.isFinite(declared) && declared >= 0 ? Math.min(declared, MAX_ACTION_BUDGET_MS) : 0
    pending.acceptedBudgetMs = budget
    clearTimeout(pending.timer)
    pending.timer = setTimeout(() => this.expire(pending.command.id), budget + this.opts.timeoutMs)
    this.store.acceptCommand(pending.command.id)
    this.log.info(
      { node: result.node, command: result.id, action: pending.command.action, deadlineMs: budget },
      'command accepted',
    )
  }

  private late(result: CommandResult): void {
    const command = this.store.getCommand(result.id)
    if (!command) {
      const actionId = result.result?.action
      if (typeof actionId === 'string') this.foreignListener?.(actionId, result)
      return
    }
    if (command.node !== result.node) return
    const outcome = { ...result.result, ...(result.error ? { error: result.error } : {}) }
    const status = result.status as 'ok' | 'failed' | 'refused'
    if (!this.store.finishCommand(result.id, status, outcome, this.clock.wallMs(), true)) return
    this.metrics.commandLateResults.inc({ action: command.action, status })
    this.log.info({ node: result.node, command: result.id, action: command.action, status }, 'late result')
    this.lateListener?.({ command, result })
  }

  private expire(id: string): void {
    const pending = this.pending.get(id)
    if (!pending) return
    this.settle(id, 'timeout', null)
    const waited =
      pending.acceptedBudgetMs === null
        ? `not accepted by ${pending.command.target} within ${this.opts.timeoutMs} ms`
        : `no result from ${pending.command.target} within its deadline of ${pending.acceptedBudgetMs} ms + ${this.opts.timeoutMs} ms`
    pending.reject(new VigilError('command_timeout', waited))
  }

  private settle(
    id: string,
    status: 'ok' | 'failed' | 'refused' | 'timeout',
    result: Record<string, unknown> | null,
  ): void {
    const pending = this.pending.get(id)
    if (!pending) return
    clearTimeout(pending.timer)
    this.pending.delete(id)
    this.store.finishCommand(id, status, result, this.clock.wallMs())
    this.metrics.commandsSent.inc({ action: pending.command.action, status })
  }

  close(): void {
    for (const id of [...this.pending.keys()]) {
      const pending = this.pending.get(id)
      this.settle(id, 'timeout', null)
      pending?.reject(new VigilError('unavailable', 'hub is shutting down'))
    }
  }
}
