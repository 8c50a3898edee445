import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  type Command,
  type CommandResult,
  generateSigningKey,
  privateKeyFromPem,
  signCommand,
} from '@vigil/protocol'
import mqtt from 'mqtt'
import { afterAll, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { startMosquitto } from '../harness/mosquitto.js'
import { tempDir, VigilProcess, writeLines } from '../harness/processes.js'

// An agent and the commands a hub signs, on a real mosquitto, with no hub in between: what the agent
// does with a command that repeats an action (the hub lost its answer and asks again).
const dir = tempDir('agent-commands')
const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  dir.remove()
})

test("an action asked again under its action id is answered from the agent's record, not run twice", async () => {
  const acl = writeLines(dir.path, 'open.acl', ['pattern readwrite #', ''])
  const broker = await startMosquitto(dir.path, { hub: 'hub-pass', 'node-a': 'a-pass' }, acl)
  cleanups.push(() => broker.stop())
  const key = generateSigningKey()
  const keyFile = join(dir.path, 'hub.pub.pem')
  writeFileSync(keyFile, key.publicPem)
  // Each start of web appends a line: how many times it really ran.
  const starts = join(dir.path, 'starts.log')
  writeFileSync(starts, '')
  const agentFile = writeLines(dir.path, 'node-a.yaml', [
    'node: node-a',
    'mqtt: { username: node-a }',
    `commands: { hubPublicKeyFile: ${keyFile} }`,
    'resources:',
    '  - id: web',
    '    driver: process',
    '    config:',
    `      command: [sh, -c, 'echo started >> ${starts}; exec sleep 600']`,
    `      pidfile: ${join(dir.path, 'web.pid')}`,
    '',
  ])
  const agent = new VigilProcess(['agent', '--config', agentFile, '--mqtt-url', broker.url], {
    cwd: dir.path,
    env: { VIGIL_MQTT_PASSWORD: 'a-pass' },
  })
  cleanups.push(() => agent.stop())
  await agent.waitForLog('connected', (l) => l.msg === 'connected to broker')

  const hub = await mqtt.connectAsync(broker.url, {
    username: 'hub',
    password: 'hub-pass',
    reconnectPeriod: 0,
  })
  cleanups.push(() => void hub.end(true))
  const results: CommandResult[] = []
  await hub.subscribeAsync('vigil/v1/default/node/node-a/ack', { qos: 1 })
  hub.on('message', (_t, payload) => results.push(JSON.parse(payload.toString()) as CommandResult))
  let seq = 0
  const send = async (id: string, action: string) => {
    const now = Date.now()
    const body: Omit<Command, 'sig'> = {
      v: 1,
      id,
      issuer: { hub: 'hub', epoch: 7 },
      seq: ++seq,
      issuedAt: now,
      expiresAt: now + 60_000,
      target: 'node-a',
      action: 'restart',
      args: { resource: 'web', decision: 'd-7-1', action },
    }
    await hub.publishAsync(
      'vigil/v1/default/node/node-a/cmd',
      JSON.stringify({ ...body, sig: signCommand(body, privateKeyFromPem(key.privatePem)) }),
      { qos: 1 },
    )
  }
  const finished = (id: string) =>
    eventually(`the result of ${id}`, () =>
      results.find((r) => r.id === id && r.status !== 'accepted'),
    ).catch((err: Error) => {
      throw new Error(
        `${err.message}\nresults: ${JSON.stringify(results)}\nagent: ${agent.lines.map((l) => `${l.msg} ${l.reason ?? ''} ${l.err ?? ''}`).join(' | ')}\n${agent.stderr.join('')}`,
      )
    })
  const runs = () => readFileSync(starts, 'utf8').split('\n').filter(Boolean).length

  await send('11111111-1111-4111-8111-111111111111', 'a-7-1')
  expect(await finished('11111111-1111-4111-8111-111111111111')).toMatchObject({ status: 'ok' })
  expect(runs()).toBe(1)
  // The same action under a new command (new id, new sequence): answered, not run again.
  await send('22222222-2222-4222-8222-222222222222', 'a-7-1')
  const repeat = await finished('22222222-2222-4222-8222-222222222222')
  expect(repeat).toMatchObject({ status: 'ok', result: { resource: 'web', action: 'a-7-1' } })
  expect(runs()).toBe(1)
  expect(
    agent.lines.some(
      (l) => l.msg === 'command repeats an action already run here: answered from its record, not run again',
    ),
  ).toBe(true)
  // Another action id is another action: it runs.
  await send('33333333-3333-4333-8333-333333333333', 'a-7-2')
  expect(await finished('33333333-3333-4333-8333-333333333333')).toMatchObject({ status: 'ok' })
  expect(runs()).toBe(2)
})
