import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

/**
 * netem's delay and jitter without netem (this kernel is built without sch_netem): iptables sends
 * the packets of a namespace's `eth0` to an NFQUEUE, and native/netdelay.c (built by
 * scripts/bootstrap.sh) holds each one for `delayMs` +/- `jitterMs` (uniform, never below 0)
 * before it lets it go, each way. Packets may be reordered, as under netem with jitter.
 */
export interface NetworkDelay {
  /** Ends the delay: traffic flows at once, and every packet still held is let go, none dropped. */
  stop(): Promise<{ packets: number }>
}

export const NETDELAY_PATH = join(import.meta.dirname, '..', 'native', 'netdelay')

let nextQueue = 100 + Math.floor(Math.random() * 1000)

export async function startNetworkDelay(
  netns: string,
  options: { delayMs: number; jitterMs?: number; seed?: number; device?: string },
): Promise<NetworkDelay> {
  if (!existsSync(NETDELAY_PATH))
    throw new Error(`testbed: ${NETDELAY_PATH} is missing; scripts/bootstrap.sh builds it`)
  const device = options.device ?? 'eth0'
  const queue = String(nextQueue++)
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      netns,
      NETDELAY_PATH,
      '--queue',
      queue,
      '--delay-ms',
      String(Math.round(options.delayMs)),
      '--jitter-ms',
      String(Math.round(options.jitterMs ?? 0)),
      ...(options.seed === undefined ? [] : ['--seed', String(options.seed)]),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let output = ''
  child.stdout?.on('data', (d) => {
    output += d
  })
  child.stderr?.on('data', (d) => {
    output += d
  })
  await untilReady(child, () => output)
  const rules = [
    { chain: 'INPUT', spec: ['-i', device] },
    { chain: 'OUTPUT', spec: ['-o', device] },
  ].map(({ chain, spec }) => ({
    chain,
    spec: [...spec, '-j', 'NFQUEUE', '--queue-num', queue, '--queue-bypass'],
  }))
  const iptables = (...args: string[]) =>
    execFileSync('ip', ['netns', 'exec', netns, 'iptables', ...args], { stdio: 'pipe' })
  for (const { chain, spec } of rules) iptables('-I', chain, '1', ...spec)
  return {
    async stop() {
      // Rules first (new packets pass), then the program lets go of what it holds.
      for (const { chain, spec } of rules) {
        try {
          iptables('-D', chain, ...spec)
        } catch {
          // the namespace's processes or rules went with a crash of the host
        }
      }
      // 'close', not 'exit': its last words ("held N packets") may still be in the pipe at exit.
      if (child.stdout?.readableEnded !== true) {
        const closed = new Promise((resolve) => child.once('close', resolve))
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
        await closed
      }
      return { packets: Number(/held (\d+) packets/.exec(output)?.[1] ?? 0) }
    },
  }
}

function untilReady(child: ChildProcess, output: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onData = () => {
      if (output().includes('ready\n')) {
        child.stdout?.off('data', onData)
        child.off('exit', onExit)
        resolve()
      }
    }
    const onExit = (code: number | null) =>
      reject(new Error(`testbed: netdelay exited (${code}) before it was ready: ${output().trim()}`))
    child.stdout?.on('data', onData)
    child.once('exit', onExit)
    onData()
  })
}
