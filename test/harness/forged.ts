import type { Command } from '@vigil/protocol'

/**
 * A well-formed, unexpired ping command that did not come from the hub (a made-up epoch, no
 * signature): what an intruder with broker access would publish. Tests check it never runs.
 */
export function forgedCommand(target: string, id: string): Command {
  const now = Date.now()
  return {
    v: 1,
    id,
    issuer: { hub: 'hub', epoch: 999 },
    seq: 1,
    issuedAt: now,
    expiresAt: now + 60_000,
    target,
    action: 'ping',
    args: {},
  }
}
