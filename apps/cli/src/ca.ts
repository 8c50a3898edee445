import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { runCommand } from '@vigil/kit'

/**
 * A cluster CA for the broker's TLS and agents' client certificates, made with the openssl binary
 * (Debian's openssl): `vigil ca init` once, `vigil ca issue <cn>` per node (CN = node name: under
 * mutual TLS that is the agent's identity) and for the broker (with its addresses as SANs).
 * Keys are EC P-256, owner-only; the CA key never leaves `dir`.
 */
async function openssl(args: string[]): Promise<void> {
  const r = await runCommand(['openssl', ...args], { timeoutMs: 30_000 })
  if (r.notStarted) throw new Error('openssl is not installed (apt-get install openssl)')
  if (r.code !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr.trim()}`)
}

/** `openssl req` arguments for a new unencrypted EC P-256 key written to `keyFile`. */
function newKey(keyFile: string): string[] {
  return ['-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile]
}

export async function caInit(dir: string, cluster: string): Promise<string> {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const key = join(dir, 'ca.key')
  const cert = join(dir, 'ca.pem')
  if (existsSync(key)) throw new Error(`${key} exists: this directory already holds a CA`)
  await openssl([
    'req',
    '-x509',
    ...newKey(key),
    '-out',
    cert,
    '-days',
    '3650',
    '-subj',
    `/O=Vigil/CN=Vigil cluster CA ${cluster}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ])
  chmodSync(key, 0o600)
  return cert
}

/** Issues `<cn>.pem` and `<cn>.key` signed by the CA in `dir`, usable as server and client. */
export async function caIssue(
  dir: string,
  cn: string,
  sans: string[],
  days = 825,
): Promise<{ cert: string; key: string }> {
  if (!/^[A-Za-z0-9.-]{1,63}$/.test(cn)) throw new Error(`"${cn}" is not a valid common name (a node name)`)
  const caKey = join(dir, 'ca.key')
  if (!existsSync(caKey)) throw new Error(`${caKey} does not exist: run vigil ca init first`)
  const key = join(dir, `${cn}.key`)
  const cert = join(dir, `${cn}.pem`)
  const csr = join(dir, `${cn}.csr`)
  const ext = join(dir, `${cn}.ext`)
  const altNames = [cn, ...sans].map((s) => (isIP(s) ? `IP:${s}` : `DNS:${s}`)).join(',')
  writeFileSync(
    ext,
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth,clientAuth',
      `subjectAltName=${altNames}`,
      '',
    ].join('\n'),
  )
  try {
    await openssl(['req', ...newKey(key), '-out', csr, '-subj', `/O=Vigil/CN=${cn}`])
    chmodSync(key, 0o600)
    await openssl([
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      join(dir, 'ca.pem'),
      '-CAkey',
      caKey,
      '-CAcreateserial',
      '-out',
      cert,
      '-days',
      String(days),
      '-extfile',
      ext,
    ])
  } finally {
    rmSync(csr, { force: true })
    rmSync(ext, { force: true })
  }
  return { cert, key }
}
