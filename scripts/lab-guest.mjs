// The lab's stand-in for the inside of vm1 on one host (scripts/lab.mjs starts one per host, in its
// namespace, so it dies with the host). The lab's guest is a busybox kernel with no network and no
// room for Node, so what an application guest runs (its application, and Vigil's guest agent beside
// it) runs here instead, for exactly as long as the guest on this host is alive:
//   - alive: this host's QEMU for the domain runs (libvirt's pid file names a live process) and the
//     guest's console has shown a heartbeat line within the last 2.5 s (a hung guest stops them);
//   - started at the first heartbeat, killed when either stops, and killed at once when the vm is
//     reset or reboots (libvirt's reboot event, `--libvirt-uri` and `--domain`: the old guest's
//     processes are gone the moment its vCPUs are reset, as on real hardware, not seconds later
//     when the new guest's init says "booted"; a guest agent outliving the reset would report on
//     the old guest's applications to a hub that has already forgotten them), or at a "booted"
//     line; started again at the new guest's first heartbeat.
// The guest's processes share one PID namespace whose init is `--init`, so killing it kills them all,
// as the guest's death does. Each guest boot gets a fresh run directory (its /run). Each heartbeat
// line also appends "<host> <ns>" to `--witness`: the vm's own ground truth for the chaos checker.
//   node scripts/lab-guest.mjs --host H --console FILE --qemu-pidfile FILE --witness FILE --run-dir DIR --init SCRIPT
//     --libvirt-uri URI --domain NAME
import { spawn } from 'node:child_process'
import {
  appendFileSync,
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
} from 'node:fs'
import { parseArgs } from 'node:util'

const { values: opts } = parseArgs({
  options: {
    host: { type: 'string' },
    console: { type: 'string' },
    'qemu-pidfile': { type: 'string' },
    witness: { type: 'string' },
    'run-dir': { type: 'string' },
    init: { type: 'string' },
    'libvirt-uri': { type: 'string' },
    domain: { type: 'string' },
  },
})
for (const key of ['host', 'console', 'qemu-pidfile', 'witness', 'run-dir', 'init', 'libvirt-uri', 'domain'])
  if (!opts[key]) throw new Error(`lab-guest: --${key} is required`)

/** Beats are a second apart; 2.5 missed ones mean the guest is hung (or gone). */
const STALE_MS = 2500
const POLL_MS = 100
const log = (msg) => process.stdout.write(`${new Date().toISOString()} lab-guest ${opts.host}: ${msg}\n`)

/** Where reading the console resumes; what is there at start is history (another guest's). */
let offset = sizeOf(opts.console)
let partial = ''
let lastBeatAt = 0
let guest = null

function sizeOf(file) {
  try {
    return statSync(file).size
  } catch {
    return 0
  }
}

function qemuAlive() {
  try {
    process.kill(Number(readFileSync(opts['qemu-pidfile'], 'utf8')), 0)
    return true
  } catch {
    return false // no pid file (libvirt removes it when the guest stops), or its process is gone
  }
}

/** New complete lines of the console since the last read (a file a new QEMU truncated is read from 0). */
function newLines() {
  const size = sizeOf(opts.console)
  if (size < offset) {
    offset = 0
    partial = ''
  }
  if (size === offset) return []
  const fd = openSync(opts.console, 'r')
  const buf = Buffer.alloc(size - offset)
  readSync(fd, buf, 0, buf.length, offset)
  closeSync(fd)
  offset = size
  const lines = (partial + buf.toString('utf8')).split('\n')
  partial = lines.pop() ?? ''
  return lines
}

function startGuest() {
  rmSync(opts['run-dir'], { recursive: true, force: true })
  mkdirSync(opts['run-dir'], { recursive: true })
  const child = spawn(
    'unshare',
    ['--pid', '--fork', '--mount-proc', '--kill-child', 'sh', opts.init, opts.host, opts['run-dir']],
    { stdio: 'inherit' },
  )
  child.on('exit', () => {
    if (guest === child) guest = null
  })
  guest = child
  log(`guest up (pid namespace of ${child.pid})`)
}

function stopGuest(why) {
  if (!guest) return
  guest.kill('SIGKILL') // --kill-child: its init dies, and with it every process of the namespace
  guest = null
  log(`guest down: ${why}`)
}

/**
 * The console's new lines: heartbeats go to the witness, and (unless `old`: written before a reset)
 * count as the guest's; a "booted" line means the guest that was is gone.
 */
function readConsole({ old = false } = {}) {
  for (const line of newLines()) {
    if (line.includes('vigil guest booted')) {
      lastBeatAt = 0
      stopGuest('the guest booted again')
    } else if (line.includes('vigil guest heartbeat')) {
      const now = Date.now()
      if (!old) lastBeatAt = now
      appendFileSync(opts.witness, `${opts.host} ${BigInt(now) * 1_000_000n}\n`)
    }
  }
}

/**
 * libvirt's reboot event (QEMU reset the machine: `virsh reset`, or the guest rebooted): the guest's
 * processes die now. What its console holds so far was written before the reset. Watched again a
 * second after the watcher ends (libvirtd not up yet at a power-on, or restarted).
 */
let watcher = null
function watchResets() {
  watcher = spawn(
    'virsh',
    ['-c', opts['libvirt-uri'], 'event', '--domain', opts.domain, '--event', 'reboot', '--loop'],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  )
  let pending = ''
  watcher.stdout.on('data', (chunk) => {
    const lines = (pending + chunk.toString('utf8')).split('\n')
    pending = lines.pop() ?? ''
    if (!lines.some((line) => line.includes("event 'reboot'"))) return
    readConsole({ old: true })
    lastBeatAt = 0
    stopGuest('the vm was reset')
  })
  watcher.on('error', () => {}) // no virsh: its exit follows
  watcher.on('exit', () => setTimeout(watchResets, 1000))
}
watchResets()

setInterval(() => {
  readConsole()
  const alive = qemuAlive() && Date.now() - lastBeatAt <= STALE_MS
  if (alive && !guest) startGuest()
  else if (!alive && guest) stopGuest(qemuAlive() ? 'heartbeats stopped (hung)' : 'its QEMU is gone')
}, POLL_MS)
for (const signal of ['SIGTERM', 'SIGINT'])
  process.on(signal, () => {
    stopGuest(signal)
    watcher?.kill('SIGKILL')
    process.exit(0)
  })
