import { execFile } from 'node:child_process'

/** Runs a command and gives its standard output, whatever its exit code (null if it cannot run). */
export type CommandOutput = (file: string, args: string[], timeoutMs: number) => Promise<string | null>

const commandOutput: CommandOutput = (file, args, timeoutMs) =>
  new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs }, (err, stdout) => {
      // `is-system-running` exits non-zero for every state but "running": its word is still said.
      const code = (err as NodeJS.ErrnoException | null)?.code
      resolve(code === 'ENOENT' || (err?.killed ?? false) ? null : String(stdout))
    })
  })

/**
 * Whether this host is going down with the agent: systemd says the system is `stopping` (a
 * shutdown or reboot under way). Anything else, no systemd, or no answer within the budget: the
 * agent alone is stopping (a restart, an upgrade) and its host stays up.
 */
export async function hostShuttingDown(
  run: CommandOutput = commandOutput,
  timeoutMs = 500,
): Promise<boolean> {
  const out = await run('systemctl', ['is-system-running'], timeoutMs)
  return out?.trim() === 'stopping'
}
