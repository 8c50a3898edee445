import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs'
import { VigilError } from '@vigil/kit'
import type { Command, CommandResult } from '@vigil/protocol'

export type Refusal =
  | 'wrong_target'
  | 'expired'
  | 'replayed'
  | 'stale_epoch'
  | 'unsigned'
  | 'bad_signature'
  | 'floor_unsaved'

/**
 * Decides whether a command may run, before anything runs. Pure apart from its own memory of what
 * it has executed: refuses commands for another node, past their expiry, from an older hub epoch,
 * or at or below the newest sequence number seen in the current epoch (a replay, or a QoS 1
 * redelivery of a command already carried out). Each id therefore runs at most once.
 */
export class CommandGate {
  private newestEpoch = -1
  private newestSeq = -1

  /**
   * With `stateFile`, the floor (newest epoch and seq) survives agent restarts: it is read at start
   * and written (fsynced, then renamed into place) before a command is let through, so a command
   * captured before a restart cannot be replayed after it, even within its expiry. A file that
   * cannot be written at start stops the agent there (config_invalid, naming the key); one that
   * cannot be written later refuses the command (`floor_unsaved`) and the agent goes on: a crash
   * on a command would make a healthy node look dead to the hub, and get it fenced.
   */
  constructor(
    private readonly self: string,
    private readonly stateFile?: string,
  ) {
    if (!stateFile) return
    try {
      const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as { epoch?: unknown; seq?: unknown }
      if (Number.isSafeInteger(saved.epoch) && Number.isSafeInteger(saved.seq)) {
        this.newestEpoch = saved.epoch as number
        this.newestSeq = saved.seq as number
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    try {
      persist(stateFile, { epoch: this.newestEpoch, seq: this.newestSeq })
    } catch (err) {
      throw new VigilError(
        'config_invalid',
        `commands.stateFile: cannot write ${stateFile} (${(err as Error).message}); its directory must exist and be writable by the agent`,
        { cause: err },
      )
    }
  }

  /** Why the last command was refused as `floor_unsaved`, for its refusal message. */
  lastSaveError: string | null = null

  check(cmd: Command, nowWall: number): Refusal | null {
    if (cmd.target !== this.self) return 'wrong_target'
    if (cmd.issuer.epoch < this.newestEpoch) return 'stale_epoch'
    if (cmd.issuer.epoch === this.newestEpoch && cmd.seq <= this.newestSeq) return 'replayed'
    if (nowWall >= cmd.expiresAt) return 'expired'
    // Raised in memory even when it cannot be saved: this process never runs what it refused.
    this.newestEpoch = cmd.issuer.epoch
    this.newestSeq = cmd.seq
    if (this.stateFile)
      try {
        persist(this.stateFile, { epoch: this.newestEpoch, seq: this.newestSeq })
      } catch (err) {
        this.lastSaveError = `${this.stateFile}: ${(err as Error).message}`
        return 'floor_unsaved'
      }
    return null
  }
}

function persist(file: string, floor: { epoch: number; seq: number }): void {
  const tmp = `${file}.tmp`
  const fd = openSync(tmp, 'w', 0o600)
  try {
    writeSync(fd, JSON.stringify(floor))
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, file)
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
    floor_unsaved:
      'the replay floor could not be saved (commands.stateFile), so nothing runs that a restart could let run twice',
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
