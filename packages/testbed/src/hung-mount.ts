import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A filesystem that can be made to hang: see startHangableMount. */
export interface HangableMount {
  /** The directory behind the view (always answers). */
  source: string
  /** The FUSE view of `source`: every call into it waits while the mount hangs. */
  view: string
  /** Hangs every call into `view` (SIGSTOP of its FUSE server). */
  hang(): void
  /** Ends the hang: waiting calls complete. */
  thaw(): void
  /** Thaws, unmounts and removes both directories. */
  remove(): void
}

/**
 * bindfs shows a fresh directory at a view, with `files` (name to size in bytes) in it. A SIGSTOP
 * of bindfs leaves every call into the view waiting in the kernel, as a dead SAN path or a hard NFS
 * mount does: the hung disk of the lab, made without device-mapper. Needs root (FUSE) and bindfs.
 */
export async function startHangableMount(files: Record<string, number> = {}): Promise<HangableMount> {
  const source = mkdtempSync(join(tmpdir(), 'vigil-hang-source-'))
  const view = mkdtempSync(join(tmpdir(), 'vigil-hang-view-'))
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(source, name), Buffer.alloc(bytes))
  writeFileSync(join(source, '.mounted'), '')
  const bindfs: ChildProcess = spawn('bindfs', ['-f', source, view], { stdio: 'ignore' })
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(bindfs.pid as number, s)
    } catch {
      // gone already
    }
  }
  const remove = () => {
    signal('SIGCONT')
    try {
      execFileSync('umount', ['-l', view], { stdio: 'ignore' })
    } catch {
      // never mounted (bindfs failed to start): nothing to undo
    }
    bindfs.kill()
    rmSync(view, { recursive: true, force: true })
    rmSync(source, { recursive: true, force: true })
  }
  const until = Date.now() + 10_000
  while (!readdirSync(view).includes('.mounted')) {
    if (Date.now() > until || bindfs.exitCode !== null) {
      remove()
      throw new Error(`bindfs did not mount ${source} at ${view} (is bindfs installed?)`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return { source, view, hang: () => signal('SIGSTOP'), thaw: () => signal('SIGCONT'), remove }
}
