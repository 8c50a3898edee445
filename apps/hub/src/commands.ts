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
import type { HubStore } from './store.js'

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
}

/**
 * Sends commands to agents and matches their results. Each command carries this hub's epoch and a
 * sequence number that only grows within the epoch, an expiry, its target and the hub's Ed25519
 * signature over all of them; it is recorded
 * before it is published, and its outcome is recorded exactly once.
 */
export class CommandDispatcher {
  private seq: number
  private readonly pending = new Map<string, Pending>()

  constructor(
    private readonly opts: {
      cluster: string
      hubName: string
      epoch: number
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

  async send(target: string, action: CommandAction, args: Command['args'] = {}): Promise<CommandOutcome> {
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
      this.pending.set(command.id, { command, sentMono: this.clock.monoMs(), resolve, reject, timer })
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

  /** Called by ingest for every decoded result; results for unknown or finished ids are ignored. */
  handleResult(result: CommandResult): void {
    const pending = this.pending.get(result.id)
    if (!pending || pending.command.target !== result.node) return
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

  private expire(id: string): void {
    const pending = this.pending.get(id)
    if (!pending) return
    this.settle(id, 'timeout', null)
    pending.reject(
      new VigilError(
        'command_timeout',
        `no result from ${pending.command.target} within ${this.opts.timeoutMs} ms`,
      ),
    )
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
