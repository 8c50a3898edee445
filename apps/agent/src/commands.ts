/**
 * The hub's commands, carried out. Contract: `receive` takes one payload of the node's command topic.
 * A malformed one is logged and reported as a `command.malformed` event, and not answered. A
 * command id already handled (the same command reaching it through two brokers) is ignored. Else the
 * command is checked (its signature first when `verify` is given, then the gate) and answered
 * `refused` with the reason as its error code (and a `command.refused` event), never run; or it is
 * run and answered with its result (`ok` or `failed`), a resource action first with `accepted` and
 * the action's deadline. A resource action carrying the hub's action id is run once per id: asked
 * again under a new command, it is answered from its record (the same outcome, under the new id).
 */
import { type Action, DriverError } from '@vigil/driver-kit'
import type { Clock, Logger } from '@vigil/kit'
import { type Command, type CommandResult, decode } from '@vigil/protocol'
import type { EventInput } from './event-outbox.js'
import { type Refusal, refusal } from './executor.js'
import type { ResourceRunner } from './resources.js'

export interface CommandDeps {
  clock: Clock
  log: Logger
  /** Publishes a reply on the node's ack topic. */
  reply: (result: CommandResult) => void
  /** Queues an edge event. */
  emit: (event: EventInput) => void
  /**
   * Whether a signed command verifies with the hub's keys; null when unsigned commands are allowed
   * (commands.allowUnsigned), and then none is checked.
   */
  verify: ((cmd: Command) => boolean) | null
  /** The replay, expiry, epoch and target checks (CommandGate): null lets the command through. */
  gate: (cmd: Command, receivedAt: number) => Refusal | null
  /** Publishes the host's facts now (the refresh-facts command); never rejects. */
  refreshFacts: () => Promise<void>
  /** Runs the resource actions and says how long one may take (ResourceRunner). */
  resources: Pick<ResourceRunner, 'deadlineMs' | 'run'>
}

/** How many command ids, and how many actions' outcomes, are remembered. */
const REMEMBERED = 1000

export class CommandHandler {
  /** Ids of the commands handled lately: the same command reaching it through two brokers runs once. */
  private readonly handled = new Set<string>()
  /** The outcome of each resource action lately run here, by its idempotency key (see actionKeyOf). */
  private readonly actions = new Map<string, Promise<CommandResult>>()

  constructor(
    private readonly self: { node: string; incarnation: number },
    private readonly deps: CommandDeps,
  ) {}

  /** One message of the node's command topic. */
  receive(payload: Buffer): void {
    const { deps, self, handled, actions } = this
    const receivedAt = deps.clock.wallMs()
    const decoded = decode('cmd', payload)
    if (!decoded.ok) {
      deps.log.warn({ field: decoded.error.field, reason: decoded.error.reason }, 'malformed command ignored')
      deps.emit({ kind: 'command.malformed', severity: 'warning', message: decoded.error.message })
      return
    }
    const cmd = decoded.value
    if (handled.has(cmd.id)) return
    handled.add(cmd.id)
    if (handled.size > REMEMBERED) handled.delete(handled.values().next().value as string)
    // The signature first: an unverified command must not even move the replay floor.
    const refused = deps.verify
      ? !cmd.sig
        ? 'unsigned'
        : !deps.verify(cmd)
          ? 'bad_signature'
          : deps.gate(cmd, receivedAt)
      : deps.gate(cmd, receivedAt)
    if (refused) {
      deps.log.warn({ command: cmd.id, action: cmd.action, reason: refused }, 'command refused')
      deps.emit({
        kind: 'command.refused',
        severity: 'warning',
        message: `${cmd.action} refused: ${refused}`,
        attrs: { command: cmd.id, reason: refused },
      })
      deps.reply(refusal(cmd, self.node, self.incarnation, refused, receivedAt))
      return
    }
    deps.log.info(
      { command: cmd.id, action: cmd.action, seq: cmd.seq, epoch: cmd.issuer.epoch },
      'command accepted',
    )
    // Said at once, with the action's deadline: the hub's command timeout covers only delivery and
    // acceptance; it then awaits the result for as long as the driver may take (a live migration
    // of minutes), never giving up on an action that is still running.
    const deadlineMs = this.resourceDeadline(cmd)
    if (deadlineMs !== null)
      deps.reply({
        v: 1,
        id: cmd.id,
        node: self.node,
        incarnation: self.incarnation,
        status: 'accepted',
        receivedAt,
        finishedAt: receivedAt,
        result: { timeoutMs: deadlineMs },
      })
    // The hub's action id is the idempotency key, apart from the command's id and nonce: a hub that
    // lost the answer (it could not hear this node, or restarted) asks again under a new command,
    // and a migration or a reset that ran (or runs) here is answered from its record, not run twice.
    const key = actionKeyOf(cmd)
    let outcome = key === null ? undefined : actions.get(key)
    if (outcome) {
      deps.log.info(
        { command: cmd.id, action: cmd.action, resource: cmd.args.resource, key },
        'command repeats an action already run here: answered from its record, not run again',
      )
    } else {
      outcome = this.execute(cmd, receivedAt).catch(
        (err: unknown): CommandResult => ({
          v: 1,
          id: cmd.id,
          node: self.node,
          incarnation: self.incarnation,
          status: 'failed',
          receivedAt,
          finishedAt: deps.clock.wallMs(),
          error: { code: 'action_failed', message: err instanceof Error ? err.message : String(err) },
        }),
      )
      if (key !== null) {
        actions.set(key, outcome)
        if (actions.size > REMEMBERED) actions.delete(actions.keys().next().value as string)
      }
    }
    void outcome.then((result) => deps.reply({ ...result, id: cmd.id, receivedAt }))
  }

  private resourceDeadline(cmd: Command): number | null {
    if (cmd.action === 'ping' || cmd.action === 'refresh-facts') return null
    return this.deps.resources.deadlineMs(String(cmd.args.resource ?? ''), driverAction(cmd.action))
  }

  private async execute(cmd: Command, receivedAt: number): Promise<CommandResult> {
    const { clock } = this.deps
    const base = {
      v: 1 as const,
      id: cmd.id,
      node: this.self.node,
      incarnation: this.self.incarnation,
      receivedAt,
    }
    switch (cmd.action) {
      case 'ping':
        return {
          ...base,
          status: 'ok',
          finishedAt: clock.wallMs(),
          result: { pong: true, agentTime: clock.wallMs() },
        }
      case 'refresh-facts':
        await this.deps.refreshFacts()
        return { ...base, status: 'ok', finishedAt: clock.wallMs(), result: { refreshed: true } }
      case 'start':
      case 'stop':
      case 'restart':
      case 'reset-vm':
      case 'reboot-vm':
      case 'suspend':
      case 'resume':
      case 'migrate': {
        const id = String(cmd.args.resource ?? '')
        const action = driverAction(cmd.action)
        // The hub engine's action id, echoed: a hub of the group that did not send this command
        // (it took over meanwhile) still knows which action the result answers.
        const echo: Record<string, string> =
          typeof cmd.args.action === 'string' ? { action: cmd.args.action } : {}
        // migrate: the hub names the node to move to; the driver maps the name to its address.
        const target = cmd.action === 'migrate' ? String(cmd.args.to ?? '') : undefined
        try {
          await this.deps.resources.run(id, action, target === undefined ? {} : { target })
          return { ...base, status: 'ok', finishedAt: clock.wallMs(), result: { resource: id, ...echo } }
        } catch (err) {
          // The error's kind is the recovery scope the hub's engine acts on.
          const kind = err instanceof DriverError ? err.kind : 'transient'
          return {
            ...base,
            status: 'failed',
            finishedAt: clock.wallMs(),
            result: { resource: id, ...echo },
            error: { code: kind, message: (err as Error).message },
          }
        }
      }
    }
  }
}

/** The driver action a resource command runs (the hub's reset-vm and reboot-vm are reset, reboot). */
function driverAction(
  action: Exclude<Command['action'], 'ping' | 'refresh-facts'>,
): Exclude<Action, 'monitor'> {
  return action === 'reset-vm' ? 'reset' : action === 'reboot-vm' ? 'reboot' : action
}

/**
 * A resource command's idempotency key: the hub engine's action id with what it asks. Null for a
 * command without one (ping, facts, an older hub), which is simply run.
 */
function actionKeyOf(cmd: Command): string | null {
  const action = cmd.args.action
  if (typeof action !== 'string' || cmd.action === 'ping' || cmd.action === 'refresh-facts') return null
  return `${action}/${cmd.action}/${String(cmd.args.resource ?? '')}`
}
