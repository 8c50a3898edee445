import { execFileSync, spawn } from 'node:child_process'
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { eventually } from './eventually.js'

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

export interface Mosquitto {
  url: string
  port: number
  log(): string
  stop(): Promise<void>
}

/**
 * Debian's mosquitto, started by the test on a free loopback port with password authentication
 * and Vigil's shipped ACL (deploy/mosquitto/vigil.acl).
 */
export async function startMosquitto(
  dir: string,
  users: Record<string, string>,
  aclFile: string,
  /** TLS on the listener; with clientCerts, mutual TLS and the certificate's CN as user name. */
  tls?: { caFile: string; certFile: string; keyFile: string; clientCerts: boolean },
  /** A fixed port (to restart a broker where its clients left it). */
  fixedPort?: number,
): Promise<Mosquitto> {
  const passwd = join(dir, 'passwd')
  writeFileSync(passwd, '')
  for (const [user, password] of Object.entries(users))
    execFileSync('mosquitto_passwd', ['-b', passwd, user, password])
  const tlsLines = tls
    ? [
        `cafile ${tls.caFile}`,
        `certfile ${tls.certFile}`,
        `keyfile ${tls.keyFile}`,
        ...(tls.clientCerts ? ['require_certificate true', 'use_identity_as_username true'] : []),
      ]
    : []
  copyFileSync(aclFile, join(dir, 'acl'))
  const port = fixedPort ?? (await freePort())
  const logFile = join(dir, 'mosquitto.log')
  writeFileSync(
    join(dir, 'mosquitto.conf'),
    [
      'per_listener_settings false',
      'allow_anonymous false',
      ...(tls?.clientCerts ? [] : [`password_file ${passwd}`]),
      `acl_file ${join(dir, 'acl')}`,
      'persistence false',
      `log_dest file ${logFile}`,
      'log_type all',
      'user root',
      'sys_interval 1',
      `listener ${port} 127.0.0.1`,
      ...tlsLines,
      '',
    ].join('\n'),
  )
  const child = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: 'ignore' })
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  await eventually('mosquitto listening', () =>
    readLog(logFile).includes(`Opening ipv4 listen socket on port ${port}`),
  )
  return {
    url: `${tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    port,
    log: () => readLog(logFile),
    async stop() {
      child.kill('SIGTERM')
      await exited
    },
  }
}

function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}
