import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { eventually } from './eventually.js'

const require = createRequire(import.meta.url)
/** The built `vigil` binary, exactly what a user runs. */
export const VIGIL_BIN = join(require.resolve('@vigil/cli/package.json'), '..', 'bin', 'vigil.js')

export interface LogLine {
  msg?: string
  [key: string]: unknown
}

/** A real child process of the vigil binary, with its JSON log lines collected. */
export class VigilProcess {
  readonly lines: LogLine[] = []
  readonly stdout: string[] = []
  readonly stderr: string[] = []
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  private readonly child: ChildProcess

  /** `wrap` runs it through another program, e.g. `ip netns exec <host>` to run it on a lab host. */
  constructor(args: string[], options: { cwd?: string; env?: Record<string, string>; wrap?: string[] } = {}) {
    const argv = [...(options.wrap ?? []), process.execPath, VIGIL_BIN, ...args]
    this.child = spawn(argv[0] as string, argv.slice(1), {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let buffered = ''
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk
      const parts = buffered.split('\n')
      buffered = parts.pop() ?? ''
      for (const line of parts) {
        this.stdout.push(line)
        try {
          this.lines.push(JSON.parse(line) as LogLine)
        } catch {
          // not a log line (e.g. CLI output)
        }
      }
    })
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => this.stderr.push(chunk))
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })))
  }

  get pid(): number {
    return this.child.pid ?? -1
  }

  waitForLog(what: string, match: (line: LogLine) => boolean, timeoutMs = 20_000): Promise<LogLine> {
    return eventually(`${what} (stderr: ${this.stderr.join('').slice(-500)})`, () => this.lines.find(match), {
      timeoutMs,
    })
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal)
  }

  async stop(): Promise<void> {
    this.kill('SIGTERM')
    const timer = setTimeout(() => this.kill('SIGKILL'), 5000)
    await this.exited
    clearTimeout(timer)
  }
}

/** Runs `vigil <args>` to completion and returns its exit code and output. */
export async function runVigil(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = new VigilProcess(args, { env })
  const { code } = await p.exited
  return { code, stdout: p.stdout.join('\n'), stderr: p.stderr.join('') }
}

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `vigil-${prefix}-`))
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) }
}

/** Writes a config file (cluster, hub, agent) from its lines into `dir`; returns its path. */
export function writeLines(dir: string, name: string, lines: string[]): string {
  const file = join(dir, name)
  writeFileSync(file, lines.join('\n'))
  return file
}
