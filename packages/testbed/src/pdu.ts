import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Daemon, freePort, readOrEmpty, retryOnPortClash, startUdpDaemon } from './daemon.js'

export interface Pdu {
  host: string
  port: number
  /** v1/v2c communities: `public` may read, `private` may also switch outlets. */
  readCommunity: string
  writeCommunity: string
  /** SNMPv3 authPriv user (SHA + AES) allowed to switch outlets, and a read-only one. */
  v3: { user: string; readOnlyUser: string; authKey: string; privKey: string }
  /** Files holding the secrets above, as a Vigil config points at them. */
  files: { writeCommunity: string; authKey: string; privKey: string }
  dir: string
  daemon: Daemon
  outlet(n: number): 'on' | 'off'
  /** Every outlet change, as "outlet <n> on|off". */
  changes(): string[]
  stop(): Promise<void>
}

const passScript = fileURLToPath(new URL('../fixtures/apc-pdu-pass.py', import.meta.url))

/**
 * A real SNMP agent acting as an APC rack PDU: Debian's snmpd on loopback with a pass_persist
 * script serving PowerNet-MIB's outlet control and status tables (v1, v2c and v3). `hook`, if
 * given, is run as `hook <outlet> on|off` on every change, so an outlet can power a lab host.
 */
export function startPdu(opts: { outlets?: number; hook?: string } = {}): Promise<Pdu> {
  return retryOnPortClash(() => startPduOnce(opts))
}

async function startPduOnce(opts: { outlets?: number; hook?: string }): Promise<Pdu> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-pdu-'))
  mkdirSync(join(dir, 'persist'))
  const port = await freePort('udp')
  const v3 = { user: 'pduadmin', readOnlyUser: 'pduro', authKey: 'auth-pass-123', privKey: 'priv-pass-123' }
  writeFileSync(
    join(dir, 'snmpd.conf'),
    `agentAddress udp:127.0.0.1:${port}
rocommunity public 127.0.0.1
rwcommunity private 127.0.0.1
createUser ${v3.user} SHA "${v3.authKey}" AES "${v3.privKey}"
createUser ${v3.readOnlyUser} SHA "${v3.authKey}" AES "${v3.privKey}"
rwuser ${v3.user} priv
rouser ${v3.readOnlyUser} priv
pass_persist .1.3.6.1.4.1.318.1.1.12 /usr/bin/python3 ${passScript}
sysName vigil-test-pdu
sysObjectID .1.3.6.1.4.1.318.1.3.4.5
sysDescr APC Rack PDU simulator (net-snmp pass_persist)
`,
  )
  const files = {
    writeCommunity: join(dir, 'community'),
    authKey: join(dir, 'auth-key'),
    privKey: join(dir, 'priv-key'),
  }
  writeFileSync(files.writeCommunity, 'private\n', { mode: 0o600 })
  writeFileSync(files.authKey, `${v3.authKey}\n`, { mode: 0o600 })
  writeFileSync(files.privKey, `${v3.privKey}\n`, { mode: 0o600 })
  const daemon = await startUdpDaemon(
    'snmpd',
    [
      '/usr/sbin/snmpd',
      '-f',
      '-C',
      '-c',
      join(dir, 'snmpd.conf'),
      '-Lf',
      join(dir, 'snmpd.log'),
      '-I',
      '-ipCidrRouteTable,inetCidrRouteTable,diskio,lmSensors,hrSWRun',
    ],
    {
      port,
      logFile: join(dir, 'snmpd.stdout'),
      env: {
        SNMP_PERSISTENT_DIR: join(dir, 'persist'),
        MIBS: '',
        PDU_OUTLETS: String(opts.outlets ?? 8),
        PDU_STATE: join(dir, 'outlets.json'),
        PDU_LOG: join(dir, 'pdu.log'),
        PDU_HOOK: opts.hook ?? '',
      },
      logs: (d) => `${d.log()}${readOrEmpty(join(dir, 'snmpd.log'))}`,
    },
  )
  const read = (f: string) => readOrEmpty(join(dir, f))
  return {
    host: '127.0.0.1',
    port,
    readCommunity: 'public',
    writeCommunity: 'private',
    v3,
    files,
    dir,
    daemon,
    outlet: (n) => {
      // pass_persist starts at the first request; before that every outlet is on.
      const state = read('outlets.json')
      if (!state) return 'on'
      const o = (JSON.parse(state) as Record<string, { state: number }>)[String(n)]
      return o?.state === 2 ? 'off' : 'on'
    },
    changes: () =>
      read('pdu.log')
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(' ').slice(1).join(' ')),
    stop: () => daemon.stop(),
  }
}
