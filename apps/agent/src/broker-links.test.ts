import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger } from '@vigil/kit'
import { Daemon, freePort, waitFor } from '@vigil/testbed'
import mqtt, { type MqttClient } from 'mqtt'
import { afterAll, afterEach, describe, expect, test } from 'vitest'
import { BrokerLinks, fanOut, nextBackoff } from './broker-links.js'

const log = createLogger('test', 'silent')

describe('fanOut: done once, with an error only if no broker took it', () => {
  test.each([
    { name: 'no broker: an error at once', answers: [], expected: 'no broker connected' },
    { name: 'one broker takes it', answers: [null], expected: undefined },
    { name: 'one broker fails', answers: ['a'], expected: 'a' },
    { name: 'one taker is enough', answers: ['a', null], expected: undefined },
    { name: 'one taker is enough, whichever answers first', answers: [null, 'b'], expected: undefined },
    { name: 'none takes it: the last error', answers: ['a', 'b'], expected: 'b' },
  ])('$name', ({ answers, expected }) => {
    const sends: ((err?: Error) => void)[] = []
    const done: (string | undefined)[] = []
    fanOut(
      answers.map(() => (sent) => sends.push(sent)),
      (err) => done.push(err?.message),
    )
    for (const [i, answer] of answers.entries()) {
      expect(done, 'not done before every broker answered').toEqual([])
      sends[i]?.(answer === null ? undefined : new Error(answer))
    }
    expect(done).toEqual([expected])
  })
})

describe('nextBackoff: exponential, full jitter, bounded', () => {
  const reconnect = { minMs: 100, maxMs: 1000 }
  test.each([
    { backoffMs: 100, random: 1, expected: { backoffMs: 200, reconnectPeriod: 200 } },
    { backoffMs: 100, random: 0.5, expected: { backoffMs: 200, reconnectPeriod: 100 } },
    { backoffMs: 100, random: 0, expected: { backoffMs: 200, reconnectPeriod: 100 } }, // never below min
    { backoffMs: 400, random: 0.75, expected: { backoffMs: 800, reconnectPeriod: 600 } },
    { backoffMs: 800, random: 1, expected: { backoffMs: 1000, reconnectPeriod: 1000 } }, // bounded by max
    { backoffMs: 1000, random: 0.5, expected: { backoffMs: 1000, reconnectPeriod: 500 } },
  ])('from $backoffMs ms with jitter $random', ({ backoffMs, random, expected }) => {
    expect(nextBackoff(backoffMs, reconnect, () => random)).toEqual(expected)
  })
})

// Against real brokers: Debian's mosquitto, one process per broker, on a free loopback port.
describe('against real brokers', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-links-'))
  const cleanups: (() => unknown)[] = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  async function broker(port?: number) {
    const p = port ?? (await freePort('tcp'))
    const logFile = join(dir, `mosquitto-${p}-${Date.now()}.log`)
    const daemon = Daemon.start('mosquitto', ['mosquitto', '-p', String(p)], { logFile })
    cleanups.push(() => daemon.stop())
    await waitFor('mosquitto', () => daemon.log().includes(`Opening ipv4 listen socket on port ${p}`))
    return { url: `mqtt://127.0.0.1:${p}`, port: p, stop: () => daemon.stop() }
  }

  /** A plain client on one broker, recording what it hears. */
  async function listen(url: string) {
    const client: MqttClient = await mqtt.connectAsync(url, { reconnectPeriod: 0 })
    cleanups.push(() => client.endAsync())
    const heard: string[] = []
    client.on('message', (t, p) => heard.push(`${t} ${p.toString()}`))
    await client.subscribeAsync('t/#', { qos: 1 })
    return { client, heard }
  }

  function links(urls: string[]) {
    const l = new BrokerLinks(
      {
        urls,
        options: { clientId: 'links-test', reconnectPeriod: 50, connectTimeout: 1000 },
        reconnect: { minMs: 50, maxMs: 200 },
        commandTopic: 't/cmd',
        birth: { topic: 't/status', payload: () => 'online' },
        incarnation: 1,
      },
      log,
    )
    const connects: boolean[] = []
    const messages: string[] = []
    l.connect({
      onConnect: (first) => connects.push(first),
      onMessage: (t, p) => messages.push(`${t} ${p.toString()}`),
    })
    cleanups.push(() => l.close())
    return { links: l, connects, messages }
  }

  const publish = (l: BrokerLinks, topic: string, payload: string, heard = false) =>
    new Promise<string | undefined>((resolve) =>
      l.publishAll(topic, payload, { qos: 1 }, heard, (err) => resolve(err?.message)),
    )

  test('says everything on each broker and hears commands from any', async () => {
    const a = await broker()
    const b = await broker()
    const onA = await listen(a.url)
    const onB = await listen(b.url)
    const { links: l, connects, messages } = links([a.url, b.url])
    await waitFor('both connected', () => connects.length === 2 && l.commandable)
    expect(connects).toEqual([true, false])
    await waitFor(
      'birth on both',
      () => onA.heard.includes('t/status online') && onB.heard.includes('t/status online'),
    )

    expect(await publish(l, 't/hello', 'hi')).toBeUndefined()
    expect(await publish(l, 't/heard', 'hb', true)).toBeUndefined()
    await waitFor('said on both', () => [onA, onB].every((o) => o.heard.includes('t/heard hb')))
    expect(onA.heard).toContain('t/hello hi')
    expect(onB.heard).toContain('t/hello hi')

    await onB.client.publishAsync('t/cmd', 'c1', { qos: 1 })
    await waitFor('command heard', () => messages.includes('t/cmd c1'))
  })

  test('one broker down loses nothing; none up is an error; a broker back is reconnected', async () => {
    const a = await broker()
    const nowhere = `mqtt://127.0.0.1:${await freePort('tcp')}` // nothing listens there
    const onA = await listen(a.url)
    const { links: l, connects } = links([a.url, nowhere])
    await waitFor('connected to the one up', () => l.commandable)
    expect(await publish(l, 't/one', 'taken')).toBeUndefined()
    await waitFor('taken by the one up', () => onA.heard.includes('t/one taken'))

    await a.stop()
    await waitFor('no broker left', () => !l.connected)
    expect(await publish(l, 't/none', 'lost')).toBe('no broker connected')

    const again = await broker(a.port)
    const onAgain = await listen(again.url)
    await waitFor('reconnected', () => l.commandable)
    expect(connects).toEqual([true, false])
    expect(await publish(l, 't/back', 'heard', true)).toBeUndefined()
    await waitFor('heard again', () => onAgain.heard.includes('t/back heard'))
  })
})
