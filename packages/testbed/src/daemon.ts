import { type ChildProcess, spawn } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'

/** A port nobody listens on right now (bind to 0, read it, close). */
export function freePort(kind: 'tcp' | 'udp'): Promise<number> {
  return new Promise((resolve, reject) => {
    if (kind === 'tcp') {
      const srv = createServer()
      srv.once('error', reject)
      srv.listen(0, '127.0.0.1', () => {
        const port = (srv.address() as { port: number }).port
        srv.close(() => resolve(port))
      })
    } else {
      const sock = createSocket('udp4')
      sock.once('error', reject)
      sock.bind(0, '127.0.0.1', () => {
        const port = sock.address().port
        sock.close(() => resolve(port))
      })
    }
  })
}

/**
 * Retries `start` when its daemon lost the race for the free port it was given (another test
 * process took the port between our probe and the daemon's bind).
 */
export async function retryOnPortClash<T>(start: () => Promise<T>, attempts = 5): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await start()
    } catch (err) {
      const clash = /Address already in use|Error opening specified endpoint|EADDRINUSE/i.test(
        (err as Error).message,
      )
      if (!clash || i >= attempts) throw err
    }
  }
}

/**
 * The port being taken may be another process's doing: a daemon that lost the bind exits at once,
 * so it must still be alive a moment later (else its start failed; the error carries its log).
 */
export async function stillAlive(daemon: Daemon, log: () => string, ms = 200): Promise<void> {
  await new Promise((r) => setTimeout(r, ms))
  if (!daemon.alive) throw new Error(`${daemon.name} exited after start: ${log()}`)
}

/**
 * Starts a daemon that serves on a UDP port and has no readiness signal: ready once the port is
 * taken and the daemon is still alive a moment later (a daemon that lost the bind exits). Errors
 * carry `logs()` (its output, and any log file of its own).
 */
export async function startUdpDaemon(
  name: string,
  argv: string[],
  opts: {
    port: number
    /** The address it binds (default loopback). */
    host?: string
    logFile: string
    env?: NodeJS.ProcessEnv
    logs?: (daemon: Daemon) => string
  },
): Promise<Daemon> {
  const daemon = Daemon.start(name, argv, { logFile: opts.logFile, env: opts.env })
  const logs = () => (opts.logs ? opts.logs(daemon) : daemon.log())
  await waitFor(name, async () => {
    if (!daemon.alive) throw new Error(`${name} exited: ${logs()}`)
    return udpPortTaken(opts.port, opts.host)
  })
  await stillAlive(daemon, logs)
  return daemon
}

/** A file's text, or '' if it does not exist (yet). */
export function readOrEmpty(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

/** True if something is bound to this UDP port on `host` (default loopback). */
export function udpPortTaken(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket('udp4')
    s.once('error', () => resolve(true))
    s.bind(port, host, () => s.close(() => resolve(false)))
  })
}

export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms = 10_000,
): Promise<void> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`testbed: ${what} not ready within ${ms} ms`)
}

/** A daemon started by a test in its own process group, output to a log file, stopped by PID. */
export class Daemon {
  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly logFile: string,
  ) {}

  static start(
    name: string,
    argv: string[],
    opts: { logFile: string; env?: NodeJS.ProcessEnv; cwd?: string },
  ) {
    const fd = openSync(opts.logFile, 'a')
    const child = spawn(argv[0] as string, argv.slice(1), {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, ...opts.env },
      cwd: opts.cwd,
    })
    closeSync(fd)
    child.unref()
    return new Daemon(name, child, opts.logFile)
  }

  get pid(): number {
    return this.child.pid as number
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  log(): string {
    return readOrEmpty(this.logFile)
  }

  /** SIGSTOP: the daemon keeps its sockets but answers nothing (a hung device). */
  hang(): void {
    process.kill(this.pid, 'SIGSTOP')
  }

  resume(): void {
    process.kill(this.pid, 'SIGCONT')
  }

  /** SIGTERM to the whole process group, SIGKILL after 3 s. */
  async stop(): Promise<void> {
    if (!this.alive) return
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()))
    const group = (sig: NodeJS.Signals) => {
      try {
        process.kill(-this.pid, sig)
      } catch {
        // already gone
      }
    }
    group('SIGCONT')
    group('SIGTERM')
    const t = setTimeout(() => group('SIGKILL'), 3000)
    await exited
    clearTimeout(t)
  }
}
