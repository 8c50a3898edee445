import type { Command, CommandResult } from '@vigil/protocol'

export type Refusal = 'wrong_target' | 'expired' | 'replayed' | 'stale_epoch' | 'unsigned' | 'bad_signature'

/**
 * Decides whether a command may run, before anything runs. Pure apart from its own memory of what
 * it has executed: refuses commands for another node, past their expiry, from an older hub epoch,
 * or at or below the newest sequence number seen in the current epoch (a replay, or a QoS 1
 * redelivery of a command already carried out). Each id therefore runs at most once.
 */
export class CommandGate {
  private newestEpoch = -1
  private newestSeq = -1

  constructor(private readonly self: string) {}

  check(cmd: Command, nowWall: number): Refusal | null {
    if (cmd.target !== this.self) return 'wrong_target'
    if (cmd.issuer.epoch < this.newestEpoch) return 'stale_epoch'
    if (cmd.issuer.epoch === this.newestEpoch && cmd.seq <= this.newestSeq) return 'replayed'
    if (nowWall >= cmd.expiresAt) return 'expired'
    this.newestEpoch = cmd.issuer.epoch
    this.newestSeq = cmd.seq
    return null
  }
}

export function refusal(
  cmd: Command,
  self: string,
  incarnation: number,
  reason: Refusal,
  at: number,
): CommandResult {
  const messages: Record<Refusal, string> = {
    wrong_target: `command is for "${cmd.target}", not "${self}"`,
    expired: `command expired at ${new Date(cmd.expiresAt).toISOString()}`,
    replayed: `command seq ${cmd.seq} of epoch ${cmd.issuer.epoch} was already seen`,
    stale_epoch: `epoch ${cmd.issuer.epoch} is older than one already seen`,
    unsigned: 'command is not signed, and this agent only runs commands signed by its hub',
    bad_signature: "command signature does not verify with the hub's public key",
  }
  return {
    v: 1,
    id: cmd.id,
    node: self,
    incarnation,
    status: 'refused',
    receivedAt: at,
    finishedAt: at,
    error: { code: reason, message: messages[reason] },
  }
}
