import { execFileSync } from 'node:child_process'

let counter = 0

/**
 * A host made of a network namespace, joined to the root namespace by a veth pair on a /30 of
 * 10.213.0.0/16 that exists only between the two ends. Needs root (CAP_NET_ADMIN).
 */
export class NetnsHost {
  private constructor(
    readonly name: string,
    /** The host's address (inside the namespace). */
    readonly ip: string,
    /** The root namespace's end, where the host reaches services on the machine. */
    readonly gatewayIp: string,
    private readonly outerLink: string,
  ) {}

  static create(prefix = 'vg'): NetnsHost {
    const n = counter++
    const a = process.pid % 250
    const b = (n * 4) % 256
    const name = `${prefix}${process.pid}-${n}`
    const outer = `${prefix}o${process.pid % 100000}x${n}`.slice(0, 15)
    const inner = `${prefix}i${process.pid % 100000}x${n}`.slice(0, 15)
    const gatewayIp = `10.213.${a}.${b + 1}`
    const ip = `10.213.${a}.${b + 2}`
    const run = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' })
    run('netns', 'add', name)
    try {
      run('link', 'add', outer, 'type', 'veth', 'peer', 'name', inner)
      run('link', 'set', inner, 'netns', name)
      run('addr', 'add', `${gatewayIp}/30`, 'dev', outer)
      run('link', 'set', outer, 'up')
      run('-n', name, 'addr', 'add', `${ip}/30`, 'dev', inner)
      run('-n', name, 'link', 'set', inner, 'up')
      run('-n', name, 'link', 'set', 'lo', 'up')
    } catch (err) {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' })
      throw err
    }
    return new NetnsHost(name, ip, gatewayIp, outer)
  }

  /** The argv prefix that runs a command inside this host. */
  exec(argv: string[]): string[] {
    return ['ip', 'netns', 'exec', this.name, ...argv]
  }

  /** Cut the host's only link (a partition), or restore it. */
  link(up: boolean): void {
    execFileSync('ip', ['link', 'set', this.outerLink, up ? 'up' : 'down'], { stdio: 'pipe' })
  }

  /** PIDs of every process inside the namespace. */
  pids(): number[] {
    const out = execFileSync('ip', ['netns', 'pids', this.name], { encoding: 'utf8' })
    return out.split('\n').filter(Boolean).map(Number)
  }

  /** A crash (or a power-off): SIGKILL of every process of the host. */
  killAll(): void {
    for (const pid of this.pids()) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone already
      }
    }
  }

  destroy(): void {
    this.killAll()
    execFileSync('ip', ['link', 'del', this.outerLink], { stdio: 'ignore' })
    execFileSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' })
  }
}
