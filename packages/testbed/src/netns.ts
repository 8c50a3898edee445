import { execFileSync } from 'node:child_process'
import { type NetworkDelay, startNetworkDelay } from './netdelay.js'

/**
 * Claims a free slot among `slots` by creating a network namespace named after it: `ip netns add`
 * fails for a name that exists, so two test processes (turbo runs packages side by side) never get
 * the same slot, hence never the same addresses. Starts at a random slot to keep retries rare.
 */
function claimSlot(slots: number, nameOf: (slot: number) => string): number {
  const first = Math.floor(Math.random() * slots)
  for (let k = 0; k < slots; k++) {
    const slot = (first + k) % slots
    try {
      execFileSync('ip', ['netns', 'add', nameOf(slot)], { stdio: 'pipe' })
      return slot
    } catch {
      // taken by another test process (or left over): try the next
    }
  }
  throw new Error('testbed: no free network slot (leftover namespaces? see `ip netns list`)')
}

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
    /** The root namespace's end of the veth pair. */
    readonly outerLink: string,
  ) {}

  static create(): NetnsHost {
    // 16,384 slots of a /30 each in 10.213.0.0/16; the namespace's name is its slot.
    const slot = claimSlot(16_384, (i) => `vnet${i}`)
    const name = `vnet${slot}`
    const outer = `vnet${slot}o`
    const inner = `vnet${slot}i`
    const a = slot >> 6
    const b = (slot & 63) * 4
    const gatewayIp = `10.213.${a}.${b + 1}`
    const ip = `10.213.${a}.${b + 2}`
    const run = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' })
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
    return namespacePids(this.name)
  }

  /** A crash (or a power-off): SIGKILL of every process of the host. */
  killAll(): void {
    signalNamespace(this.name, 'SIGKILL')
  }

  destroy(): void {
    this.killAll()
    execFileSync('ip', ['link', 'del', this.outerLink], { stdio: 'ignore' })
    execFileSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' })
  }
}

export interface LabHost {
  name: string
  /** The network namespace that is this host. */
  netns: string
  ip: string
  exec(argv: string[]): string[]
  /** Cut this host off the lab network (a partition), or reconnect it. */
  link(up: boolean): void
  /**
   * Random loss of `percent` % of the host's packets each way on its lab link (0 restores it).
   * iptables' statistic match (this kernel has no netem).
   */
  loss(percent: number): void
  /** Delay and jitter each way on its lab link until the handle is stopped (netdelay.ts). */
  delay(options: { delayMs: number; jitterMs?: number; seed?: number }): Promise<NetworkDelay>
  pids(): number[]
  /**
   * `signal` to every process of the host (SIGSTOP: a hang with the power on); a process that
   * exits between the listing and its signal is skipped.
   */
  signalAll(signal: NodeJS.Signals): void
  /** Crash or power-off: SIGKILL of every process of the host. */
  killAll(): void
}

/** PIDs of every process inside the network namespace `netns`. */
export function namespacePids(netns: string): number[] {
  return execFileSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map(Number)
}

/** `signal` to every process of `netns`; one gone between the listing and its signal is skipped. */
export function signalNamespace(netns: string, signal: NodeJS.Signals): void {
  for (const pid of namespacePids(netns)) {
    try {
      process.kill(pid, signal)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
    }
  }
}

/**
 * Random loss of `percent` % of the packets each way on `eth0` of a network namespace (0 restores
 * it), with iptables' statistic match: this kernel has no netem (delay and jitter: netdelay.ts).
 */
export function setPacketLoss(netns: string, percent: number): void {
  const iptables = (...args: string[]) =>
    execFileSync('ip', ['netns', 'exec', netns, 'iptables', ...args], { stdio: 'pipe' })
  for (const chain of ['INPUT', 'OUTPUT']) {
    iptables('-F', chain)
    if (percent > 0)
      iptables(
        '-A',
        chain,
        ...(chain === 'INPUT' ? ['-i', 'eth0'] : ['-o', 'eth0']),
        '-m',
        'statistic',
        '--mode',
        'random',
        '--probability',
        String(percent / 100),
        '-j',
        'DROP',
      )
  }
}

/**
 * Several hosts on one machine: a network namespace per host, joined by a bridge that lives in a
 * namespace of its own, on a private /24 that exists only inside them. The machine's root namespace
 * (where the hub runs) is attached too, at `hubIp`. Needs root.
 */
export class NetnsLab {
  readonly hosts = new Map<string, LabHost>()

  private constructor(
    readonly prefix: string,
    readonly bridgeNs: string,
    readonly hubIp: string,
    /** The root namespace's end of the hub's link to the bridge. */
    readonly hubLink: string,
  ) {}

  static create(hostNames: string[]): NetnsLab {
    // 250 labs of a /24 each in 10.214.0.0/16; the bridge namespace's name is its slot.
    const k = claimSlot(250, (i) => `vlab${i}-br`)
    const tag = `${k}`
    const subnet = `10.214.${k}`
    const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' })
    const bridgeNs = `vlab${k}-br`
    ip('-n', bridgeNs, 'link', 'add', 'br0', 'type', 'bridge')
    ip('-n', bridgeNs, 'link', 'set', 'br0', 'up')
    ip('-n', bridgeNs, 'link', 'set', 'lo', 'up')
    const hubLink = `vlab${tag}h`
    ip('link', 'add', hubLink, 'type', 'veth', 'peer', 'name', 'hub0', 'netns', bridgeNs)
    ip('-n', bridgeNs, 'link', 'set', 'hub0', 'master', 'br0', 'up')
    const lab = new NetnsLab(`vlab${tag}`, bridgeNs, `${subnet}.1`, hubLink)
    ip('addr', 'add', `${subnet}.1/24`, 'dev', hubLink)
    ip('link', 'set', hubLink, 'up')
    hostNames.forEach((name, i) => {
      const netns = `vlab${tag}-${name}`.slice(0, 40)
      const port = `p${i}`
      ip('netns', 'add', netns)
      ip('-n', bridgeNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns)
      ip('-n', bridgeNs, 'link', 'set', port, 'master', 'br0', 'up')
      const hostIp = `${subnet}.${10 + i}`
      ip('-n', netns, 'addr', 'add', `${hostIp}/24`, 'dev', 'eth0')
      ip('-n', netns, 'link', 'set', 'eth0', 'up')
      ip('-n', netns, 'link', 'set', 'lo', 'up')
      lab.hosts.set(name, {
        name,
        netns,
        ip: hostIp,
        exec: (argv) => ['ip', 'netns', 'exec', netns, ...argv],
        link: (up) => ip('-n', bridgeNs, 'link', 'set', port, up ? 'up' : 'down'),
        loss: (percent) => setPacketLoss(netns, percent),
        delay: (options) => startNetworkDelay(netns, options),
        pids: () => namespacePids(netns),
        signalAll: (signal) => signalNamespace(netns, signal),
        killAll: () => signalNamespace(netns, 'SIGKILL'),
      })
    })
    return lab
  }

  host(name: string): LabHost {
    const h = this.hosts.get(name)
    if (!h) throw new Error(`no lab host ${name}`)
    return h
  }

  /** Cut the hub (root namespace) off every host, or reconnect it. */
  hubLinkUp(up: boolean): void {
    execFileSync('ip', ['link', 'set', this.hubLink, up ? 'up' : 'down'], { stdio: 'pipe' })
  }

  destroy(): void {
    for (const h of this.hosts.values()) {
      h.killAll()
      execFileSync('ip', ['netns', 'del', h.netns], { stdio: 'ignore' })
    }
    execFileSync('ip', ['link', 'del', this.hubLink], { stdio: 'ignore' })
    execFileSync('ip', ['netns', 'del', this.bridgeNs], { stdio: 'ignore' })
  }
}
