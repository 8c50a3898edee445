import { execFile, execFileSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import {
  appendFileSync,
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { Daemon, freePort, readOrEmpty, waitFor } from './daemon.js'

const execFileAsync = promisify(execFile)
/** Every virsh call is bounded: a wedged libvirtd must fail a test, not hang it. */
const run = (file: string, args: string[], opts: { timeout?: number } = {}) =>
  execFileAsync(file, args, { timeout: 30_000, ...opts })
const URI = 'qemu:///system'

export interface Libvirt {
  uri: string
  /** Where libvirt keeps the pid file of a running guest's QEMU. */
  qemuPidFile(domain: string): string
  /**
   * Defines (not starts) a tiny guest: no disk, no network, QEMU TCG. Without options, 64 MiB and
   * no OS (SeaBIOS idles). `os: true`: 128 MiB booting scripts/guest-image.sh's kernel and busybox
   * init, which writes "vigil guest heartbeat N" every second to its serial console, the file
   * `consoleLog(name)`; `virsh inject-nmi` hangs it (panic, and panic=0 waits forever).
   */
  /**
   * os: boot the guest image (console heartbeat); fillMiB: it keeps that much random data in
   * memory, which a live migration must copy (a bandwidth limit then makes the migration long).
   */
  defineGuest(opts?: { os?: boolean; fillMiB?: number }): Promise<string>
  consoleLog(domain: string): string
  domstate(name: string): Promise<string>
  /** Any virsh command on this libvirt (suspend, resume, ...). */
  virsh(args: string[]): Promise<string>
  /**
   * Hangs libvirtd (SIGSTOP: every call waits, guests run on) or lets it go on (SIGCONT), as a
   * libvirtd stuck on a lock or on storage does. It may be shared with another test process's.
   */
  hang(on: boolean): void
  stop(): Promise<void>
}

let guests = 0

/** scripts/guest-image.sh's kernel and initramfs (bootstrap builds them; built here if missing). */
export function guestImage(): { kernel: string; initrd: string } {
  const { kernel, initrd } = guestImageFiles()
  if (!existsSync(kernel) || !existsSync(initrd)) {
    const script = new URL('../../../scripts/guest-image.sh', import.meta.url).pathname
    execFileSync('bash', [script, dirname(kernel)], { stdio: 'ignore', timeout: 300_000 })
  }
  return { kernel, initrd }
}

function guestImageFiles(): { kernel: string; initrd: string } {
  const dir = '/var/cache/vigil/guest'
  return { kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.gz') }
}

/**
 * The guest image's files as fresh inodes, without the owners that a libvirtd killed while its guests
 * ran left remembered in their xattrs (`trusted.libvirt.security.*`): a libvirtd that runs QEMU as
 * another user would refuse them as "already in use". Called before this machine's libvirtd starts.
 */
function forgetRememberedOwners(): void {
  for (const file of Object.values(guestImageFiles()))
    if (existsSync(file)) {
      cpSync(file, `${file}.fresh`)
      renameSync(`${file}.fresh`, file)
    }
}

/**
 * A tiny QEMU (TCG) guest's domain XML: no disk, no network. Without `console`, 64 MiB and no OS
 * (SeaBIOS idles). With `console`, 128 MiB booting scripts/guest-image.sh's kernel and busybox init,
 * which writes "vigil guest heartbeat N" every second to its serial console, that file (QEMU
 * truncates it when it starts); `virsh inject-nmi` hangs it (panic, and panic=0 waits forever).
 */
export function guestDomainXml(name: string, opts: { console?: string; fillMiB?: number } = {}): string {
  const os = opts.console ? guestImage() : null
  const fill = opts.fillMiB ? ` vigil.fill=${opts.fillMiB}` : ''
  return `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>${os ? 128 + (opts.fillMiB ?? 0) : 64}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>${
    os
      ? `<kernel>${os.kernel}</kernel><initrd>${os.initrd}</initrd><cmdline>console=ttyS0 panic=0 quiet${fill}</cmdline>`
      : `<boot dev='hd'/>`
  }</os>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>${
    opts.console ? `<serial type='file'><source path='${opts.console}'/><target port='0'/></serial>` : ''
  }<memballoon model='none'/></devices>
</domain>
`
}

/** True if a daemon accepts connections on this unix socket (a stale socket file refuses them). */
function listening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path)
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

/**
 * The first connection after a start waits for libvirt's QEMU capability probe (~12 s under TCG), if
 * its cache (/var/cache/libvirt) is missing or outdated (a new QEMU or libvirt; see hideKvm).
 */
async function answers(timeout = 60_000): Promise<boolean> {
  try {
    await run('virsh', ['-c', URI, 'version'], { timeout })
    return true
  } catch {
    return false
  }
}

/**
 * Shell run in a libvirtd's private mount namespace before it starts: /dev/kvm becomes `node`, a
 * char device (null's, created if missing, and kept: libvirt moves /dev's mounts into each guest's
 * namespace) that only root may open. libvirt's two KVM checks must agree, or it finds its cached
 * QEMU capabilities outdated at every lookup and probes QEMU again (~2 s under TCG, several lookups
 * per define or start: ~16 s per guest). One is access(/dev/kvm, R|W) as the QEMU user; the other,
 * whether the probing QEMU, run as that user, enabled KVM. /dev/null itself, world-writable, passed
 * the first and failed the second ("KVM was not enabled when probing, but it should be usable now");
 * the node fails both. Root passes the first whatever the node: a libvirtd whose QEMU runs as root
 * keeps the real /dev/kvm, with which a probe as root enables KVM on these machines, so both pass
 * (KVM guests do not work here: the guests are TCG, `type='qemu'`, either way).
 */
function hideKvm(node: string): string {
  return `if [ -e /dev/kvm ]; then [ -c ${node} ] || mknod -m 0600 ${node} c 1 3; mount --bind ${node} /dev/kvm; fi`
}

/**
 * Perl (without single quotes: it goes inside a shell's '...') that runs its arguments as its child
 * and, a child subreaper, reaps at once every orphan left to it: libvirt daemonizes each guest's
 * QEMU, whose parent is then PID 1, and this machine's PID 1 reaps orphans only every ~2 s. libvirt
 * waits until a destroyed or crashed guest's QEMU is gone (kill(pid, 0)), which a zombie is not:
 * without this, every destroy and every crash took 1.2-2 s more. It ignores SIGTERM, SIGINT and
 * SIGHUP (they reach the command with its process group) and exits as the command does.
 */
const REAPER = [
  'eval { require "syscall.ph"; syscall(&SYS_prctl, 36, 1, 0, 0, 0) == 0 } or warn "testbed: no subreaper: $@$!\\n";',
  'defined(my $pid = fork) or die "testbed: fork: $!\\n";',
  'unless ($pid) { exec { $ARGV[0] } @ARGV; die "testbed: exec $ARGV[0]: $!\\n" }',
  '$SIG{$_} = "IGNORE" for qw(TERM INT HUP);',
  'while ((my $w = waitpid(-1, 0)) > 0) { exit($? & 127 ? 128 + ($? & 127) : $? >> 8) if $w == $pid }',
].join(' ')

/** Where test processes sharing the machine's libvirtd register (see startLibvirt). */
const SHARED = '/run/vigil-testbed-libvirt'
const LIBVIRT_SOCK = '/run/libvirt/libvirt-sock'
/** A start without a valid capability cache probes QEMU (~12 s under TCG idle, over a minute on a loaded CI). */
const LIBVIRTD_START_MS = 240_000

function alivePid(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * Runs `fn` holding the machine-wide registry lock (a directory: mkdir is atomic). A lock whose
 * holder died, or held longer than any holder needs, is broken.
 */
async function withSharedLock<T>(fn: () => Promise<T>): Promise<T> {
  mkdirSync(SHARED, { recursive: true })
  const lock = join(SHARED, 'lock')
  for (;;) {
    try {
      mkdirSync(lock)
      writeFileSync(join(lock, 'pid'), String(process.pid))
      break
    } catch {
      const holder = Number(readOrEmpty(join(lock, 'pid')))
      const age = Date.now() - (statOrNull(lock)?.mtimeMs ?? Date.now())
      if ((holder && !alivePid(holder)) || age > 30_000) rmSync(lock, { recursive: true, force: true })
      else await sleep(50)
    }
  }
  try {
    return await fn()
  } finally {
    rmSync(lock, { recursive: true, force: true })
  }
}

function statOrNull(path: string) {
  try {
    return statSync(path)
  } catch {
    return null
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** SIGTERM to a daemon's process group, SIGKILL after 3 s; waits until it is gone. */
async function stopGroup(pid: number): Promise<void> {
  const group = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig)
    } catch {
      // already gone
    }
  }
  group('SIGCONT')
  group('SIGTERM')
  const until = Date.now() + 3000
  while (alivePid(pid) && Date.now() < until) await sleep(50)
  if (alivePid(pid)) group('SIGKILL')
  while (alivePid(pid)) await sleep(50)
}

/**
 * Makes the machine's libvirtd answer, starting it if nobody serves. Another test process may be
 * starting one at the same moment (ours then exits on the pid file: wait for theirs), or the last
 * user of one may stop it while we wait (then start it again). Returns the pids we started.
 */
async function ensureLibvirtd(dir: string): Promise<number[]> {
  const until = Date.now() + LIBVIRTD_START_MS
  let libvirtd: Daemon | undefined
  const started: number[] = []
  for (;;) {
    // The first answer after a start waits for the QEMU capability probe.
    if (await answers(Math.max(1000, until - Date.now()))) return started
    if (libvirtd && !libvirtd.alive && !/acquire pid file/.test(libvirtd.log()))
      throw new Error(`testbed: libvirtd exited: ${libvirtd.log().slice(-2000)}`)
    if (Date.now() > until)
      throw new Error(
        `testbed: libvirtd not answering within ${LIBVIRTD_START_MS} ms${libvirtd ? `: ${libvirtd.log().slice(-2000)}` : ''}`,
      )
    if (!libvirtd?.alive && !(await listening(LIBVIRT_SOCK))) {
      if (started.length === 0) forgetRememberedOwners()
      // Never let libvirtd create its NAT network (virbr0 and firewall rules) on a shared machine.
      rmSync('/etc/libvirt/qemu/networks/autostart/default.xml', { force: true })
      // In the foreground, as our own children: a daemonizing libvirtd keeps the caller's pipes open.
      if (!(await listening('/run/libvirt/virtlogd-sock'))) {
        const virtlogd = Daemon.start('virtlogd', ['virtlogd'], { logFile: join(dir, 'virtlogd.log') })
        started.push(virtlogd.pid)
      }
      // KVM hidden consistently (see hideKvm), or every define and start probes QEMU again; its
      // guests' QEMU reaped at once (see REAPER), or every destroy waits for this machine's PID 1.
      libvirtd = Daemon.start(
        'libvirtd',
        [
          'unshare',
          '--mount',
          'perl',
          '-e',
          REAPER,
          '--',
          'sh',
          '-c',
          `${hideKvm(join(SHARED, 'kvm'))}; exec libvirtd`,
        ],
        { logFile: join(dir, 'libvirtd.log') },
      )
      started.push(libvirtd.pid)
      // Clients connecting while libvirtd probes QEMU can stall its start: wait for the socket.
      const socketBy = Date.now() + 30_000
      while (libvirtd.alive && !(await listening(LIBVIRT_SOCK)) && Date.now() < socketBy) await sleep(100)
    } else await sleep(500)
  }
}

/**
 * The machine's libvirt (qemu:///system), started by hand if it is not running (no systemd here):
 * virtlogd and libvirtd in their own process groups. Test processes running at once share it: each
 * registers in /run/vigil-testbed-libvirt, and the last one to stop stops the daemons a testbed
 * started (never a libvirtd that was running before any test). Guests are QEMU under TCG
 * (`type='qemu'`): nested KVM does not work on these machines. Needs root.
 */
export async function startLibvirt(): Promise<Libvirt> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-libvirt-'))
  const user = join(SHARED, 'users', `${process.pid}-${randomUUID()}`)
  await withSharedLock(async () => {
    mkdirSync(dirname(user), { recursive: true })
    writeFileSync(user, '')
  })
  const daemons = join(SHARED, 'daemons')
  try {
    const started = (await ensureLibvirtd(dir)).filter(alivePid)
    if (started.length > 0)
      await withSharedLock(async () => appendFileSync(daemons, started.map((pid) => `${pid}\n`).join('')))
  } catch (err) {
    rmSync(user, { force: true })
    throw err
  }
  const release = () =>
    withSharedLock(async () => {
      rmSync(user, { force: true })
      const users = readdirSync(dirname(user))
      // A test process that died without stopping uses nothing any more.
      for (const name of users.filter((n) => !alivePid(Number(n.split('-')[0]))))
        rmSync(join(dirname(user), name), { force: true })
      if (users.some((n) => alivePid(Number(n.split('-')[0])))) return
      // The last user: stop what testbeds started, libvirtd before its virtlogd.
      const pids = readOrEmpty(daemons).split('\n').filter(Boolean).map(Number).reverse()
      for (const pid of pids) await stopGroup(pid)
      rmSync(daemons, { force: true })
    })
  const defined: string[] = []
  // QEMU runs as libvirt-qemu: the console files' directory must be writable by it.
  const consoles = join(dir, 'console')
  mkdirSync(consoles, { mode: 0o1777 })
  chmodSync(dir, 0o755)
  chmodSync(consoles, 0o1777)
  const consoleLog = (name: string) => join(consoles, `${name}.log`)
  return {
    uri: URI,
    qemuPidFile: (domain) => `/run/libvirt/qemu/${domain}.pid`,
    consoleLog,
    async defineGuest(opts = {}) {
      const name = `vigil-test-${process.pid}-${guests++}`
      const xml = join(dir, `${name}.xml`)
      writeFileSync(
        xml,
        guestDomainXml(name, opts.os ? { console: consoleLog(name), fillMiB: opts.fillMiB } : {}),
      )
      await run('virsh', ['-c', URI, 'define', xml])
      defined.push(name)
      return name
    },
    async virsh(args) {
      return (await run('virsh', ['-c', URI, ...args])).stdout
    },
    async domstate(name) {
      return (await run('virsh', ['-c', URI, 'domstate', name])).stdout.trim()
    },
    hang(on) {
      process.kill(Number(readFileSync('/run/libvirtd.pid', 'utf8')), on ? 'SIGSTOP' : 'SIGCONT')
    },
    async stop() {
      // qemu processes outlive libvirtd: destroy our guests first.
      for (const name of defined) {
        await run('virsh', ['-c', URI, 'destroy', name]).catch(() => {})
        await run('virsh', ['-c', URI, 'undefine', name]).catch(() => {})
      }
      await release()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * The files of a libvirtd of its own, as another host has, in `dir`: its own configuration, state,
 * runtime and log directories (bound in a private mount namespace over /etc/libvirt, /run/libvirt,
 * /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt), its own host UUID, and TCP on
 * `address` (no auth: for a test or the lab only). `command` starts it in the foreground (run it in
 * the host's network namespace); started again on the same files, it finds its domains as it left
 * them (a guest whose QEMU died meanwhile is shut off). `qemuRunAsRoot`: its guests' QEMU runs as
 * root, so console files may live anywhere root can write (the lab's directory may be private).
 */
export function preparePeerLibvirt(
  dir: string,
  opts: { address: string; port: number; qemuRunAsRoot?: boolean },
): { uri: string; command: string[]; qemuPidFile(domain: string): string } {
  // The machine's configuration without its domains or networks; its capability cache, so this
  // one need not probe QEMU again (~12 s under TCG; once, if its QEMU runs as root: see hideKvm).
  cpSync('/etc/libvirt', join(dir, 'etc'), { recursive: true })
  for (const sub of ['qemu', 'qemu/autostart']) {
    const d = join(dir, 'etc', sub)
    for (const name of existsSync(d) ? readdirSync(d) : []) if (name.endsWith('.xml')) rmSync(join(d, name))
  }
  rmSync(join(dir, 'etc', 'qemu', 'networks', 'autostart'), { recursive: true, force: true })
  appendFileSync(
    join(dir, 'etc', 'libvirtd.conf'),
    `\nlisten_tls = 0\nlisten_tcp = 1\nlisten_addr = "${opts.address}"\ntcp_port = "${opts.port}"\nauth_tcp = "none"\nhost_uuid = "${randomUUID()}"\n`,
  )
  if (opts.qemuRunAsRoot) appendFileSync(join(dir, 'etc', 'qemu.conf'), '\nuser = "root"\ngroup = "root"\n')
  // No owner remembered in the shared guest kernel's xattrs: this libvirtd dies with its host (a
  // SIGKILL), and the counts it left there made every later libvirtd that runs QEMU as another user
  // refuse to start a guest ("Setting different DAC user or group ... already in use").
  appendFileSync(join(dir, 'etc', 'qemu.conf'), '\nremember_owner = 0\n')
  for (const d of ['run', 'lib/qemu', 'cache', 'log']) mkdirSync(join(dir, d), { recursive: true })
  cpSync('/var/cache/libvirt', join(dir, 'cache'), { recursive: true })
  const qemuUser = statSync('/var/lib/libvirt/qemu')
  if (!opts.qemuRunAsRoot) chownSync(join(dir, 'lib', 'qemu'), qemuUser.uid, qemuUser.gid)
  const script = [
    'set -e',
    // A QEMU run as root passes both of libvirt's KVM checks (see hideKvm) on the real /dev/kvm.
    opts.qemuRunAsRoot ? '' : hideKvm(join(dir, 'kvm')),
    ...[
      ['etc', '/etc/libvirt'],
      ['run', '/run/libvirt'],
      ['lib', '/var/lib/libvirt'],
      ['cache', '/var/cache/libvirt'],
      ['log', '/var/log/libvirt'],
    ].map(([from, to]) => `mount --bind ${join(dir, from as string)} ${to}`),
    `virtlogd -d -p ${join(dir, 'run', 'virtlogd.pid')}`,
    // Its guests' QEMU reaped at once (see REAPER).
    `exec perl -e '${REAPER}' -- libvirtd --listen -p ${join(dir, 'run', 'libvirtd.pid')}`,
  ].join('\n')
  writeFileSync(join(dir, 'start.sh'), script)
  return {
    uri: `qemu+tcp://${opts.address}:${opts.port}/system`,
    command: ['unshare', '--mount', '--propagation', 'private', 'sh', join(dir, 'start.sh')],
    qemuPidFile: (domain) => join(dir, 'run', 'qemu', `${domain}.pid`),
  }
}

/**
 * A second libvirtd on this machine, as a second host would have (or, given a lab host, that
 * host's own libvirtd, in its network namespace): its own configuration, state,
 * runtime and log directories (a private mount namespace binds its own over /etc/libvirt,
 * /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt), its own host UUID,
 * and TCP on 127.0.0.1 (no auth: loopback in a test only), so live migration between it and the
 * machine's libvirt (startLibvirt) works. Its QEMU guests run in its namespace; stop() destroys them.
 */
export async function startPeerLibvirt(
  /** A lab host: run inside its network namespace, listening on its address. */
  host?: { exec(argv: string[]): string[]; ip: string },
): Promise<Libvirt & { port: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-libvirt-peer-'))
  const address = host?.ip ?? '127.0.0.1'
  const port = host ? 16509 : await freePort('tcp')
  const { uri, command, qemuPidFile } = preparePeerLibvirt(dir, { address, port })
  const libvirtd = Daemon.start('libvirtd-peer', [...(host?.exec([]) ?? []), ...command], {
    logFile: join(dir, 'libvirtd.log'),
  })
  const virsh = async (args: string[]) => (await run('virsh', ['-c', uri, ...args])).stdout
  const answersHere = async () => {
    if (!libvirtd.alive) throw new Error(`peer libvirtd exited: ${libvirtd.log().slice(-2000)}`)
    return virsh(['version'])
      .then(() => true)
      .catch(() => false)
  }
  await waitFor('peer libvirtd answering', answersHere, 60_000)
  return {
    uri,
    port,
    qemuPidFile,
    consoleLog: () => {
      throw new Error('testbed: a migrated guest keeps the console file its definition names')
    },
    async defineGuest() {
      throw new Error('testbed: define guests on the machine libvirt and migrate them here')
    },
    virsh,
    async domstate(name) {
      return (await virsh(['domstate', name])).trim()
    },
    hang(on) {
      // Its own /run/libvirt (see preparePeerLibvirt): the daemon itself, not the shell that ran it.
      process.kill(Number(readFileSync(join(dir, 'run', 'libvirtd.pid'), 'utf8')), on ? 'SIGSTOP' : 'SIGCONT')
    },
    async stop() {
      const names = (await virsh(['list', '--all', '--name']).catch(() => '')).split('\n').filter(Boolean)
      for (const name of names) {
        await virsh(['destroy', name]).catch(() => {})
        await virsh(['undefine', name]).catch(() => {})
      }
      await libvirtd.stop()
      try {
        process.kill(Number(readFileSync(join(dir, 'run', 'virtlogd.pid'), 'utf8')), 'SIGTERM')
      } catch {
        // not started, or gone
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
