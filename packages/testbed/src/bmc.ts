import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Daemon, freePort, readOrEmpty, retryOnPortClash, startUdpDaemon } from './daemon.js'

export interface Bmc {
  host: string
  port: number
  username: string
  password: string
  /** A file holding the password (what a Vigil config points at). */
  passwordFile: string
  dir: string
  daemon: Daemon
  /** The host's power as the host control program sees it. */
  power(): 'on' | 'off'
  /** Every power change the BMC made, one line each ("on", "off"). */
  powerLog(): string[]
  stop(): Promise<void>
}

/**
 * A lab host's power as a BMC's `hostCtl` program (written to `file`): on while any process lives
 * in its network namespace; off kills them all (a real power-off). Power-on is the caller's: it
 * starts the host's processes again. With `offDelayMs`, an off first touches `<file>.off-requested`
 * (so a test knows a fence is in flight) and takes that long: a slow BMC, which answers nothing
 * else meanwhile (ipmi_sim waits for its chassis control).
 */
export function netnsPowerControl(file: string, netns: string, opts: { offDelayMs?: number } = {}): string {
  const slow = opts.offDelayMs ? `touch ${file}.off-requested; sleep ${opts.offDelayMs / 1000}; ` : ''
  writeFileSync(
    file,
    `#!/bin/sh
case "$1" in
  status) [ -n "$(ip netns pids ${netns})" ] && echo on || echo off ;;
  off) ${slow}ip netns pids ${netns} | xargs -r kill -9 ;;
esac
`,
  )
  chmodSync(file, 0o755)
  return file
}

/**
 * A real IPMI 2.0 BMC: OpenIPMI's ipmi_sim on loopback with a `chassis_control` program. The power
 * of the host it controls is whatever `hostCtl` says: a program called as `hostCtl status` (prints
 * on or off), `hostCtl on`, `hostCtl off`. By default the host is a state file; a lab passes a
 * program that kills every process of a network namespace, so off is a real power-off.
 */
export function startBmc(opts: BmcOptions = {}): Promise<Bmc> {
  return retryOnPortClash(() => startBmcOnce(opts))
}

interface BmcOptions {
  hostCtl?: string
  initialPower?: 'on' | 'off'
  /** The address its LAN channel listens on (default loopback; a lab's hub address for lab hosts). */
  listen?: string
}

async function startBmcOnce(opts: BmcOptions): Promise<Bmc> {
  const listen = opts.listen ?? '127.0.0.1'
  const dir = mkdtempSync(join(tmpdir(), 'vigil-bmc-'))
  const port = await freePort('udp')
  const password = 'bmc-secret-pass'
  const passwordFile = join(dir, 'password')
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 })
  const stateFile = join(dir, 'power')
  writeFileSync(stateFile, opts.initialPower ?? 'on')
  const hostCtl = opts.hostCtl ?? join(dir, 'hostctl.sh')
  if (!opts.hostCtl) {
    writeFileSync(
      hostCtl,
      `#!/bin/sh
case "$1" in
  status) cat "${stateFile}" ;;
  on|off) echo "$1" > "${stateFile}" ;;
esac
`,
    )
    chmodSync(hostCtl, 0o755)
  }
  // ipmi_sim runs this through popen() and waits for it: it must be quick, and anything it starts
  // must not keep its stdout open.
  const chassis = join(dir, 'chassis-ctl.sh')
  writeFileSync(
    chassis,
    `#!/bin/sh
log() { echo "$1" >> "${dir}/power.log"; }
op=$1; shift
case "$op" in
  get)
    for p in "$@"; do case $p in
      power) [ "$("${hostCtl}" status)" = on ] && echo "power:1" || echo "power:0" ;;
      *) echo "$p:0" ;;
    esac; done ;;
  set)
    while [ $# -gt 0 ]; do p=$1; v=$2; shift 2; case $p in
      power) if [ "$v" = 1 ]; then "${hostCtl}" on; log on; else "${hostCtl}" off; log off; fi ;;
      reset) "${hostCtl}" off; log off; "${hostCtl}" on; log on ;;
    esac; done </dev/null >/dev/null 2>&1 ;;
esac
exit 0
`,
  )
  chmodSync(chassis, 0o755)
  writeFileSync(
    join(dir, 'lan.conf'),
    `name "vigilbmc"
set_working_mc 0x20
  startlan 1
    addr ${listen} ${port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "${chassis}"
  user 1 true  ""      "test"      user  10 none md2 md5 straight
  user 2 true  "admin" "${password}" admin 10 none md2 md5 straight
`,
  )
  writeFileSync(
    join(dir, 'bmc.emu'),
    'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n',
  )
  const daemon = await startUdpDaemon(
    'ipmi_sim',
    ['ipmi_sim', '-c', join(dir, 'lan.conf'), '-f', join(dir, 'bmc.emu'), '-s', join(dir, 'state'), '-n'],
    { port, host: listen, logFile: join(dir, 'ipmi_sim.log') },
  )
  const read = (f: string) => readOrEmpty(join(dir, f))
  return {
    host: listen,
    port,
    username: 'admin',
    password,
    passwordFile,
    dir,
    daemon,
    power: () => {
      if (opts.hostCtl) throw new Error('power(): ask the host control program')
      return read('power').trim() === 'on' ? 'on' : 'off'
    },
    powerLog: () => read('power.log').split('\n').filter(Boolean),
    stop: () => daemon.stop(),
  }
}
