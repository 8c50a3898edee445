import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync as readFile, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { type HubProcess, hubKeyArgs, startHub } from '../harness/hub.js'
import { startMosquitto } from '../harness/mosquitto.js'
import { runVigil, tempDir, VigilProcess } from '../harness/processes.js'

// The broker is the way into every host: per-agent credentials, TLS, mutual TLS and topic
// ownership, on the embedded broker and on Debian's mosquitto with the shipped ACL. Credentials and
// certificates are made with the `vigil` CLI, as an operator would.

const dir = tempDir('transport')
const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  dir.remove()
})

const ca = join(dir.path, 'ca')
const cert = (cn: string) => ({ cert: join(ca, `${cn}.pem`), key: join(ca, `${cn}.key`) })

beforeAll(async () => {
  const init = await runVigil(['ca', 'init', '--dir', ca, '--cluster', 'default'])
  expect(init.code, init.stderr).toBe(0)
  for (const [cn, ...sans] of [
    ['broker', '127.0.0.1'],
    ['hub'],
    ['node-a'],
    ['node-b'],
    ['node-c'],
    ['node-d'],
  ]) {
    const issued = await runVigil([
      'ca',
      'issue',
      cn as string,
      '--dir',
      ca,
      ...sans.flatMap((s) => ['--san', s]),
    ])
    expect(issued.code, issued.stderr).toBe(0)
  }
})

const hb = (node: string) =>
  JSON.stringify({ v: 1, node, incarnation: 1, seq: 1, sentMono: 1, sentAt: Date.now(), intervalMs: 250 })

/** Connects, or resolves with why not: the CONNACK refusal (its code), a TLS error, or a close. */
function tryConnect(
  url: string,
  opts: mqtt.IClientOptions,
): Promise<{ client: mqtt.MqttClient | null; refused: (Error & { code?: number }) | null }> {
  return new Promise((resolve) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts })
    const fail = (err: Error & { code?: number }) => {
      client.end(true)
      resolve({ client: null, refused: err })
    }
    client.once('connect', () => {
      cleanups.push(() => void client.end(true))
      resolve({ client, refused: null })
    })
    client.once('error', fail)
    client.once('close', () => fail(new Error('connection closed before CONNACK')))
  })
}

const online = (hub: HubProcess, node: string) =>
  eventually(
    `${node} healthy`,
    async () => (await hub.api<{ state: string }>(`/api/nodes/${node}`)).body.state === 'healthy',
  )
const brokerRefusals = (hub: HubProcess) =>
  hub.process.lines.filter(
    (l) => l.msg === 'broker refused a publish' || l.msg === 'broker refused a subscription',
  )

describe('embedded broker', () => {
  test('per-agent passwords: an agent speaks only for itself, reads only its own commands; others cannot connect', async () => {
    const credentials = join(dir.path, 'agents.yaml')
    const passwords: Record<string, string> = {}
    for (const node of ['node-a', 'node-b']) {
      const issued = await runVigil(['credentials', 'issue', node, '--file', credentials])
      expect(issued.code, issued.stderr).toBe(0)
      passwords[node] = issued.stdout.trim()
      writeFileSync(join(dir.path, `${node}.password`), passwords[node] as string)
    }
    const hubFile = join(dir.path, 'hub-credentials.yaml')
    writeFileSync(hubFile, `broker: { credentialsFile: ${credentials} }\n`)
    const hub = await startHub(dir.path, ['--config', hubFile, '--db', join(dir.path, 'credentials.sqlite')])
    cleanups.push(() => hub.process.stop())
    const agent = new VigilProcess(
      [
        'agent',
        '--node',
        'node-a',
        '--mqtt-url',
        hub.mqttUrl,
        '--mqtt-username',
        'node-a',
        '--mqtt-password-file',
        join(dir.path, 'node-a.password'),
        ...hubKeyArgs(hub),
      ],
      { cwd: dir.path },
    )
    cleanups.push(() => agent.stop())
    await online(hub, 'node-a')

    // node-a's own credentials, used to speak for node-b and to read node-b's commands.
    const { client: impostor } = await tryConnect(hub.mqttUrl, {
      username: 'node-a',
      password: passwords['node-a'],
    })
    expect(impostor).not.toBeNull()
    // Refused with a SUBACK failure code (mqtt.js rejects), the connection kept.
    await expect(impostor?.subscribeAsync('vigil/v1/default/node/node-b/cmd', { qos: 1 })).rejects.toThrow(
      /Subscribe error/,
    )
    await expect(impostor?.subscribeAsync('vigil/#', { qos: 0 })).rejects.toThrow(/Subscribe error/)
    // Its own commands it may read.
    expect((await impostor?.subscribeAsync('vigil/v1/default/node/node-a/cmd', { qos: 1 }))?.[0]?.qos).toBe(1)
    await impostor?.publishAsync('vigil/v1/default/node/node-b/hb', hb('node-b'), { qos: 1 }).catch(() => {})
    await eventually('the broker refused both and the publish', () => brokerRefusals(hub).length >= 3)
    expect(brokerRefusals(hub).map((l) => l.topic)).toEqual(
      expect.arrayContaining([
        'vigil/v1/default/node/node-b/cmd',
        'vigil/#',
        'vigil/v1/default/node/node-b/hb',
      ]),
    )
    expect((await hub.api(`/api/nodes/node-b`)).status).toBe(404)

    // No credentials, a wrong password, another node's password: no connection at all.
    expect((await tryConnect(hub.mqttUrl, {})).refused?.code).toBe(5)
    expect((await tryConnect(hub.mqttUrl, { username: 'node-b', password: 'guess' })).refused?.code).toBe(4)
    expect(
      (await tryConnect(hub.mqttUrl, { username: 'node-b', password: passwords['node-a'] })).refused?.code,
    ).toBe(4)

    // Revoked: the next connection is refused, without restarting the hub.
    expect((await runVigil(['credentials', 'revoke', 'node-b', '--file', credentials])).code).toBe(0)
    await eventually(
      'node-b refused',
      async () =>
        (await tryConnect(hub.mqttUrl, { username: 'node-b', password: passwords['node-b'] })).refused
          ?.code === 4,
    )
  })

  test('mutual TLS: the certificate is the identity; no certificate, no connection', async () => {
    const hubFile = join(dir.path, 'hub-mtls.yaml')
    writeFileSync(
      hubFile,
      `broker: { tls: { certFile: ${cert('broker').cert}, keyFile: ${cert('broker').key}, caFile: ${join(ca, 'ca.pem')}, requireClientCert: true } }\n`,
    )
    const hub = await startHub(dir.path, ['--config', hubFile, '--db', join(dir.path, 'mtls.sqlite')])
    cleanups.push(() => hub.process.stop())
    expect(hub.mqttUrl).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/)
    const agent = new VigilProcess(
      [
        'agent',
        '--node',
        'node-c',
        '--mqtt-url',
        hub.mqttUrl,
        '--mqtt-ca',
        join(ca, 'ca.pem'),
        '--mqtt-cert',
        cert('node-c').cert,
        '--mqtt-key',
        cert('node-c').key,
        ...hubKeyArgs(hub),
      ],
      { cwd: dir.path },
    )
    cleanups.push(() => agent.stop())
    await online(hub, 'node-c').catch((err) => {
      throw new Error(
        `${err}\nagent: ${agent.stdout.slice(-5).join('\n')}\nhub: ${hub.process.stdout.slice(-5).join('\n')}`,
      )
    })

    const tlsOpts = (cn: string) => ({
      ca: readFile(join(ca, 'ca.pem')),
      cert: readFile(cert(cn).cert),
      key: readFile(cert(cn).key),
    })
    const { client: impostor } = await tryConnect(hub.mqttUrl, tlsOpts('node-d'))
    expect(impostor).not.toBeNull()
    await impostor?.publishAsync('vigil/v1/default/node/node-c/hb', hb('node-c'), { qos: 1 }).catch(() => {})
    await eventually('the broker refused node-d speaking for node-c', () =>
      brokerRefusals(hub).some((l) => l.node === 'node-d' && l.topic === 'vigil/v1/default/node/node-c/hb'),
    )
    // A certificate's CN and a user name that disagree; and no certificate at all.
    expect((await tryConnect(hub.mqttUrl, { ...tlsOpts('node-d'), username: 'node-c' })).refused?.code).toBe(
      5,
    )
    const noCert = await tryConnect(hub.mqttUrl, { ca: readFile(join(ca, 'ca.pem')) })
    expect(noCert.client).toBeNull()
  })
})

describe('embedded broker, TLS asking for (not requiring) client certificates', () => {
  test('a certificate the CA did not sign names nobody', async () => {
    // A self-signed certificate claiming to be node-c.
    const rogue = join(dir.path, 'rogue')
    mkdirSync(rogue)
    execFileSync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      join(rogue, 'key.pem'),
      '-out',
      join(rogue, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=node-c',
    ])
    const credentials = join(dir.path, 'agents-tls.yaml')
    expect((await runVigil(['credentials', 'issue', 'node-a', '--file', credentials])).code).toBe(0)
    const hubFile = join(dir.path, 'hub-tls-optional.yaml')
    writeFileSync(
      hubFile,
      `broker: { credentialsFile: ${credentials}, tls: { certFile: ${cert('broker').cert}, keyFile: ${cert('broker').key}, caFile: ${join(ca, 'ca.pem')} } }\n`,
    )
    const hub = await startHub(dir.path, ['--config', hubFile, '--db', join(dir.path, 'tls-optional.sqlite')])
    cleanups.push(() => hub.process.stop())
    const withRogue = await tryConnect(hub.mqttUrl, {
      ca: readFile(join(ca, 'ca.pem')),
      cert: readFile(join(rogue, 'cert.pem')),
      key: readFile(join(rogue, 'key.pem')),
    })
    expect(withRogue.refused?.code).toBe(5) // not node-c: no credentials at all
    // A certificate from the CA still names its node.
    const { client } = await tryConnect(hub.mqttUrl, {
      ca: readFile(join(ca, 'ca.pem')),
      cert: readFile(cert('node-c').cert),
      key: readFile(cert('node-c').key),
    })
    expect(client).not.toBeNull()
  })
})

describe('mosquitto (Debian) with mutual TLS and the shipped ACL', () => {
  test('the hub and agents connect with certificates; an agent cannot speak for another; no certificate, no connection', async () => {
    const mdir = join(dir.path, 'mosquitto')
    mkdirSync(mdir)
    const broker = await startMosquitto(
      mdir,
      {},
      join(import.meta.dirname, '../../deploy/mosquitto/vigil.acl'),
      {
        caFile: join(ca, 'ca.pem'),
        certFile: cert('broker').cert,
        keyFile: cert('broker').key,
        clientCerts: true,
      },
    )
    cleanups.push(() => broker.stop())
    const tlsFlags = (cn: string) => [
      '--mqtt-ca',
      join(ca, 'ca.pem'),
      '--mqtt-cert',
      cert(cn).cert,
      '--mqtt-key',
      cert(cn).key,
    ]
    const hub = await startHub(mdir, ['--mqtt-url', broker.url, ...tlsFlags('hub')])
    cleanups.push(() => hub.process.stop())
    const agent = new VigilProcess(
      ['agent', '--node', 'node-a', '--mqtt-url', broker.url, ...tlsFlags('node-a'), ...hubKeyArgs(hub)],
      {
        cwd: mdir,
      },
    )
    cleanups.push(() => agent.stop())
    await online(hub, 'node-a')

    const { client: impostor } = await tryConnect(broker.url, {
      ca: readFile(join(ca, 'ca.pem')),
      cert: readFile(cert('node-a').cert),
      key: readFile(cert('node-a').key),
    })
    await impostor?.publishAsync('vigil/v1/default/node/node-b/hb', hb('node-b'), { qos: 1 })
    await eventually('mosquitto denied it', () =>
      /Denied PUBLISH from .*'vigil\/v1\/default\/node\/node-b\/hb'/.test(broker.log()),
    )
    expect((await hub.api('/api/nodes/node-b')).status).toBe(404)
    expect((await tryConnect(broker.url, { ca: readFile(join(ca, 'ca.pem')) })).client).toBeNull()
  })
})
