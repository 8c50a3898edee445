import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Daemon, waitFor } from './daemon.js'
import { NetnsHost } from './netns.js'

export interface Sshd {
  host: NetnsHost
  port: number
  username: string
  /** Private key that may log in, and one that may not. */
  clientKeyFile: string
  strangerKeyFile: string
  /** The server's host key as OpenSSH prints it ("SHA256:..."). */
  hostKeySha256: string
  dir: string
  daemon: Daemon
  /** A command that, run over ssh, powers the test host off: kills sshd and every session. */
  offCommand: string
  /** Starts sshd again once the host is down (after an off): "power on". */
  start(): Promise<void>
  /** Some process of the host is alive (after an off, the last of them may still be exiting). */
  running(): boolean
  /** sshd accepts connections. */
  answering(): Promise<boolean>
  stop(): Promise<void>
}

/**
 * Debian's openssh-server inside a network namespace of its own, root login by key only. Needs root.
 */
export async function startSshd(): Promise<Sshd> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-sshd-'))
  mkdirSync('/run/sshd', { recursive: true })
  const keygen = (file: string) => execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file])
  keygen(join(dir, 'host_key'))
  keygen(join(dir, 'client_key'))
  keygen(join(dir, 'stranger_key'))
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client_key.pub')))
  const host = NetnsHost.create()
  const port = 22
  const pidFile = join(dir, 'sshd.pid')
  writeFileSync(
    join(dir, 'sshd_config'),
    `Port ${port}
ListenAddress ${host.ip}
HostKey ${join(dir, 'host_key')}
PidFile ${pidFile}
AuthorizedKeysFile ${join(dir, 'authorized_keys')}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
LogLevel VERBOSE
`,
  )
  const pub = readFileSync(join(dir, 'host_key.pub'), 'utf8').split(' ')[1] as string
  const hostKeySha256 = `SHA256:${createHash('sha256').update(Buffer.from(pub, 'base64')).digest('base64').replace(/=+$/, '')}`
  let daemon: Daemon | null = null
  const listening = () =>
    new Promise<boolean>((resolve) => {
      const s = createConnection({ host: host.ip, port })
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
  const start = async () => {
    // The sessions must not run the login user's shell start-up files: a machine's ~/.bashrc can
    // do anything (this kind's runs `pyenv init`, whose rehash takes a lock file in ~/.pyenv), and
    // a power-off kills sessions mid-way, leaving such a lock for every later session to wait 60 s
    // on. sshd runs in a private mount namespace where the start-up files are empty.
    const quiet = startupFiles().map((f) => `mount --bind /dev/null ${f}`)
    const sshd = ['exec', '/usr/sbin/sshd', '-D', '-e', '-f', join(dir, 'sshd_config')].join(' ')
    daemon = Daemon.start(
      'sshd',
      host.exec([
        'unshare',
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        [...quiet, sshd].join(' && '),
      ]),
      { logFile: join(dir, 'sshd.log') },
    )
    await waitFor('sshd', async () => {
      if (!daemon?.alive) throw new Error(`sshd exited: ${daemon?.log()}`)
      return listening()
    })
  }
  await start()
  return {
    host,
    port,
    username: 'root',
    clientKeyFile: join(dir, 'client_key'),
    strangerKeyFile: join(dir, 'stranger_key'),
    hostKeySha256,
    dir,
    get daemon() {
      return daemon as Daemon
    },
    // Everything of this host runs in its namespace: killing it all is its power-off. Detached,
    // so the ssh session that runs it does not wait for its own end.
    offCommand: `setsid sh -c 'ip netns pids ${host.name} | xargs -r kill -9' </dev/null >/dev/null 2>&1 &`,
    start: async () => {
      await waitFor('the host to be down', async () => !(await listening()) && host.pids().length === 0)
      await start()
    },
    running: () => host.pids().length > 0,
    answering: listening,
    stop: async () => {
      await daemon?.stop()
      host.destroy()
    },
  }
}

/** The login user's shell start-up files that exist (bind-mounted empty for the test's sshd). */
function startupFiles(): string[] {
  const home = homedir()
  return ['.bashrc', '.bash_profile', '.bash_login', '.profile']
    .map((f) => join(home, f))
    .filter((f) => existsSync(f))
}
