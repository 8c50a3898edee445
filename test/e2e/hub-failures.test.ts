import { spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { generateSigningKey } from '@vigil/protocol'
import Database from 'better-sqlite3'
import { afterAll, describe, expect, test } from 'vitest'
import { eventually } from '../harness/eventually.js'
import { type HubProcess, startHub } from '../harness/hub.js'
import { freePort, startMosquitto } from '../harness/mosquitto.js'
import { runVigil, tempDir, VIGIL_BIN, VigilProcess, writeLines } from '../harness/processes.js'

/**
 * A hub (or agent) that cannot start says so in one plain line per problem and exits by itself:
 * 2 for configuration, 1 for the environment, never a stack trace. Then the run-time failures,
 * each with a real process: a database whose file system fills up, a broker that is killed, a hub
 * frozen (SIGSTOP) for longer than its watchdog.
 *
 * How fast each bad start exits is measured in bench/startup-failures, not asserted here.
 */
const dir = tempDir('hub-failures')
afterAll(() => dir.remove())

/** Runs the command under a private mount namespace in which `mount` has been run first. */
const inMountNamespace = (mount: string): string[] => [
  'unshare',
  '-m',
  'sh',
  '-c',
  `${mount} && exec "$@"`,
  'sh',
]

interface BadStart {
  name: string
  args: (d: string) => string[]
  code: 1 | 2
  line: RegExp
  /** Runs the process through this (a mount namespace). */
  wrap?: (d: string) => string[]
  setup?: (d: string) => void | Promise<void>
}

const taken: Server[] = []
afterAll(() => {
  for (const s of taken) s.close()
})
/** A port something else already listens on. */
async function takenPort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()))
  taken.push(s)
  return (s.address() as { port: number }).port
}
let busyPort = 0
const HUB_PUBLIC_KEY = generateSigningKey().publicPem

const hub = (d: string, ...args: string[]) => [
  'hub',
  '--listen',
  '127.0.0.1:0',
  '--broker-listen',
  '127.0.0.1:0',
  '--db',
  join(d, 'hub.sqlite'),
  ...args,
]

const badStarts: BadStart[] = [
  {
    name: 'a cluster file with no nodes and a resource of an unknown kind',
    setup: (d) => writeLines(d, 'c.yaml', ['resources:', '  - id: x', '    kind: proc']),
    args: (d) => hub(d, '--cluster-file', join(d, 'c.yaml')),
    code: 2,
    line: /c\.yaml:3:\d+: resources\.0\.kind: Invalid option/,
  },
  {
    name: 'a cluster file whose dependencies can only deadlock',
    setup: (d) =>
      writeLines(d, 'c.yaml', [
        'nodes: [{ id: n1 }]',
        'resources:',
        '  - id: web',
        '    dependsOn: [db]',
        '  - id: db',
        '    dependsOn: [web]',
      ]),
    args: (d) => hub(d, '--cluster-file', join(d, 'c.yaml')),
    code: 2,
    line: /c\.yaml:4:5: resources\.0\.dependsOn: a dependency cycle \(web -> db -> web\)/,
  },
  {
    name: 'a cluster file that does not exist',
    args: (d) => hub(d, '--cluster-file', join(d, 'missing.yaml')),
    code: 2,
    line: /missing\.yaml/,
  },
  {
    name: 'an unknown key in the hub config',
    setup: (d) => writeLines(d, 'hub.yaml', ['htpp:', '  listen: 127.0.0.1:0']),
    args: (d) => ['hub', '-c', join(d, 'hub.yaml')],
    code: 2,
    line: /hub\.yaml:1:1: htpp: unknown key/,
  },
  {
    name: 'a tokens file that does not exist',
    setup: (d) => writeLines(d, 'hub.yaml', ['api:', `  tokensFile: ${join(d, 'tokens.yaml')}`]),
    args: (d) => hub(d, '-c', join(d, 'hub.yaml')),
    code: 2,
    line: /api\.tokensFile: cannot read .*tokens\.yaml/,
  },
  {
    name: 'a broker credentials file that does not exist',
    setup: (d) => writeLines(d, 'hub.yaml', ['broker:', `  credentialsFile: ${join(d, 'agents.yaml')}`]),
    args: (d) => hub(d, '-c', join(d, 'hub.yaml')),
    code: 2,
    line: /broker\.credentialsFile: cannot read .*agents\.yaml/,
  },
  {
    name: 'a signing key file that holds no key',
    setup: (d) => {
      writeFileSync(join(d, 'key.pem'), 'not a key\n')
      writeLines(d, 'hub.yaml', ['signing:', `  keyFile: ${join(d, 'key.pem')}`])
    },
    args: (d) => hub(d, '-c', join(d, 'hub.yaml')),
    code: 2,
    line: /signing\.keyFile: .*key\.pem is not a PEM Ed25519 private key/,
  },
  {
    name: "the broker's TLS certificate file missing",
    setup: (d) =>
      writeLines(d, 'hub.yaml', [
        'broker:',
        '  tls:',
        `    certFile: ${join(d, 'broker.crt')}`,
        `    keyFile: ${join(d, 'broker.key')}`,
      ]),
    args: (d) => hub(d, '-c', join(d, 'hub.yaml')),
    code: 2,
    line: /broker\.tls\.certFile: cannot read .*broker\.crt/,
  },
  {
    name: 'the HTTP port taken',
    setup: async () => {
      busyPort = await takenPort()
    },
    args: (d) => [...hub(d), '--listen', `127.0.0.1:${busyPort}`],
    code: 1,
    line: /cannot listen on 127\.0\.0\.1:\d+: address already in use \(EADDRINUSE\)/,
  },
  {
    name: "the embedded broker's port taken",
    setup: async () => {
      busyPort = await takenPort()
    },
    args: (d) => [...hub(d), '--broker-listen', `127.0.0.1:${busyPort}`],
    code: 1,
    line: /cannot listen on 127\.0\.0\.1:\d+: address already in use \(EADDRINUSE\)/,
  },
  {
    name: 'the database directory missing',
    args: (d) => [...hub(d), '--db', join(d, 'no-such-dir', 'hub.sqlite')],
    code: 1,
    line: /cannot open the database .*hub\.sqlite: its directory .*no-such-dir does not exist \(store\.path\)/,
  },
  {
    name: 'the database on a read-only file system',
    setup: (d) => mkdirSync(join(d, 'ro')),
    wrap: (d) => inMountNamespace(`mount --bind -o ro ${join(d, 'ro')} ${join(d, 'ro')}`),
    args: (d) => [...hub(d), '--db', join(d, 'ro', 'hub.sqlite')],
    code: 1,
    line: /cannot open the database .*ro\/hub\.sqlite: it cannot be opened for writing .*\(store\.path\)/,
  },
  {
    name: 'the database corrupt',
    setup: (d) =>
      writeFileSync(
        join(d, 'hub.sqlite'),
        'this is no database, and it is long enough to be read as one'.repeat(20),
      ),
    args: (d) => hub(d),
    code: 1,
    line: /cannot open the database .*hub\.sqlite: it is not a SQLite database or it is corrupt/,
  },
  {
    name: 'the database from a newer schema',
    setup: (d) => {
      const db = new Database(join(d, 'hub.sqlite'))
      db.pragma('user_version = 99')
      db.close()
    },
    args: (d) => hub(d),
    code: 1,
    line: /the database .*hub\.sqlite has schema version 99, newer than this hub's \d+/,
  },
  {
    name: 'an external broker unreachable past the start deadline',
    setup: async () => {
      busyPort = await freePort()
    },
    args: (d) => [...hub(d), '--mqtt-url', `mqtt://127.0.0.1:${busyPort}`, '--mqtt-start-deadline', '1000'],
    code: 1,
    line: /cannot reach the MQTT broker at mqtt:\/\/127\.0\.0\.1:\d+ within 1 s \(mqtt\.startDeadlineMs; 0 waits for ever\)/,
  },
  {
    name: 'an agent config with an unknown key',
    setup: (d) => writeLines(d, 'agent.yaml', ['node: a', 'heartbeat:', '  everyMs: 100']),
    args: (d) => ['agent', '-c', join(d, 'agent.yaml')],
    code: 2,
    line: /agent\.yaml:3:3: heartbeat\.everyMs: unknown key/,
  },
  {
    name: "an agent's broker CA file missing",
    setup: (d) => writeFileSync(join(d, 'hub.pub.pem'), HUB_PUBLIC_KEY),
    args: (d) => [
      'agent',
      ...['--node', 'a', '--mqtt-url', 'mqtts://127.0.0.1:1', '--hub-key', join(d, 'hub.pub.pem')],
      ...['--mqtt-ca', join(d, 'ca.pem')],
    ],
    code: 2,
    line: /mqtt\.caFile: cannot read .*ca\.pem/,
  },
  {
    name: "an agent's hub key file that holds no key",
    setup: (d) => writeFileSync(join(d, 'hub.pub.pem'), 'not a key\n'),
    args: (d) => [
      'agent',
      ...['--node', 'a', '--mqtt-url', 'mqtt://127.0.0.1:1', '--hub-key', join(d, 'hub.pub.pem')],
    ],
    code: 2,
    line: /commands\.hubPublicKeyFile: .*hub\.pub\.pem holds no PEM public key/,
  },
]

describe('a bad start: one line per problem, an exit code, no stack trace', () => {
  let n = 0
  test.each(badStarts)('$name', async (c) => {
    const d = join(dir.path, `start-${++n}`)
    mkdirSync(d)
    await c.setup?.(d)
    const p = new VigilProcess(c.args(d), { cwd: d, ...(c.wrap ? { wrap: c.wrap(d) } : {}) })
    // It ends by itself: a hub that stays up after a fatal error is the defect this guards.
    const guard = setTimeout(() => p.kill('SIGKILL'), 20_000)
    const { code, signal } = await p.exited
    clearTimeout(guard)
    const stderr = p.stderr.join('')
    expect(signal, `ended by itself (stderr: ${stderr})`).toBeNull()
    expect(code, stderr).toBe(c.code)
    expect(stderr).toMatch(c.line)
    expect(stderr).not.toMatch(/^\s+at /m)
    expect(stderr).not.toMatch(/Error:/)
    expect(p.lines.some((l) => l.msg === 'hub ready' || l.msg === 'agent running')).toBe(false)
  })
})

describe('failures at run time', () => {
  const writeHubConfig = (d: string, lines: string[]) => writeLines(d, 'hub.yaml', lines)

  test('the database file system fills up: the hub stops acting, keeps serving reads, and acts again once it can write', async () => {
    const d = join(dir.path, 'full')
    const dbDir = join(d, 'db')
    mkdirSync(dbDir, { recursive: true })
    // The database on a 16 MiB tmpfs of its own, in the hub's private mount namespace.
    const h = await startHub(
      d,
      ['--db', join(dbDir, 'hub.sqlite')],
      {},
      inMountNamespace(`mount -t tmpfs -o size=16m vigil-db ${dbDir}`),
    )
    const agent = startAgent(d, h, 'node-a', `/proc/${h.process.pid}/root`)
    try {
      await eventually(
        'node-a online',
        async () => (await h.api<{ nodes: unknown[] }>('/api/nodes')).body.nodes.length === 1,
      )
      expect((await h.api('/healthz')).status).toBe(200)
      // Fill the hub's tmpfs (reached through its own root: it is not mounted out here).
      const filler = join(`/proc/${h.process.pid}/root`, dbDir, 'filler')
      fill(filler)
      const failing = await eventually('the store part failed', async () => {
        const r = await h.api<{ status: string; parts: { part: string; state: string; problem?: string }[] }>(
          '/healthz',
        )
        return r.status === 503 && r.body.parts.find((p) => p.part === 'store' && p.state === 'failed')
      })
      expect(failing.problem).toMatch(/cannot write the database .*hub\.sqlite: .*SQLITE_FULL/)
      expect((await h.api('/readyz')).status).toBe(503)
      expect(await h.metric('vigil_hub_part_up', { part: 'store' })).toBe(0)
      // Reads go on; a change is refused with why (it could not be audited before being acted on).
      expect((await h.api('/api/nodes')).status).toBe(200)
      const change = await h.api<{ error: { code: string; message: string } }>('/api/maintenance', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ on: true, by: 'test' }),
      })
      expect(change.status).toBe(503)
      expect(change.body.error.message).toMatch(/does not act while its database cannot be written/)
      // Space again: the hub writes, says for how long it could not, and acts again.
      rmSync(filler)
      await eventually('the store part is up again', async () => (await h.api('/healthz')).status === 200, {
        timeoutMs: 15_000,
      })
      const events = await h.api<{ events: { kind: string; message: string }[] }>('/api/events?limit=50')
      expect(events.body.events.find((e) => e.kind === 'hub.store-recovered')?.message).toMatch(
        /the database could not be written for [\d.]+ s; this hub did not act in that time and acts again/,
      )
      await eventually('the engine records that it acts again', async () => {
        const r = await h.api<{ decisions: { summary: string }[] }>('/api/decisions?limit=50')
        return r.body.decisions.some((x) =>
          x.summary.startsWith('hub acts again: its database can be written'),
        )
      })
      const after = await h.api('/api/maintenance', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ on: false, by: 'test' }),
      })
      expect(after.status).toBeLessThan(300)
      expect(h.process.pid).toBeGreaterThan(0)
      expect(await Promise.race([h.process.exited.then(() => 'exited'), Promise.resolve('running')])).toBe(
        'running',
      )
    } finally {
      await agent.stop()
      await h.process.stop()
    }
  })

  test('the external broker is killed: /healthz and /readyz say so, and recover when it is back', async () => {
    const d = join(dir.path, 'broker')
    mkdirSync(join(d, 'b1'), { recursive: true })
    mkdirSync(join(d, 'b2'), { recursive: true })
    const acl = join(import.meta.dirname, '../../deploy/mosquitto/vigil.acl')
    const users = { hub: 'hub-secret' }
    let broker = await startMosquitto(join(d, 'b1'), users, acl)
    const h = await startHub(d, ['--mqtt-url', broker.url, '--mqtt-username', 'hub'], {
      VIGIL_MQTT_PASSWORD: users.hub,
    })
    try {
      const healthy = await h.api('/healthz')
      expect(healthy.status, JSON.stringify(healthy.body)).toBe(200)
      // Healthy (no part failed) comes before ready (every part up: the broker connected, the
      // engine stepping): under load the first can be seen a moment before the second.
      await eventually('ready', async () => (await h.api('/readyz')).status === 200)
      await broker.stop()
      const down = await eventually('the broker part failed', async () => {
        const r = await h.api<{ parts: { part: string; state: string; problem?: string }[] }>('/healthz')
        return r.status === 503 && r.body.parts.find((p) => p.part === 'broker' && p.state === 'failed')
      })
      expect(down.problem).toBe(`not connected to the MQTT broker at ${broker.url}`)
      expect((await h.api('/readyz')).status).toBe(503)
      // What systemd's ExecStartPost runs: not ready, and which part is not, on stderr.
      const notReady = await runVigil(['ready', '--hub', h.httpUrl])
      expect(notReady.code).toBe(1)
      expect(notReady.stderr).toContain(`broker: failed (not connected to the MQTT broker at ${broker.url})`)
      broker = await startMosquitto(join(d, 'b2'), users, acl, undefined, broker.port)
      await eventually('healthy again', async () => (await h.api('/healthz')).status === 200, {
        timeoutMs: 30_000,
      })
      expect((await h.api('/readyz')).status).toBe(200)
      expect((await runVigil(['ready', '--hub', h.httpUrl, '--wait', '10'])).code).toBe(0)
    } finally {
      await h.process.stop()
      await broker.stop()
    }
  })

  test('the hub frozen (SIGSTOP) longer than its watchdog: not killed, re-arms its detectors, fences nothing', async () => {
    const d = join(dir.path, 'frozen')
    mkdirSync(d)
    writeHubConfig(d, ['watchdog:', '  stallMs: 1500', '  pauseMs: 1000'])
    const h = await startHub(d, ['-c', join(d, 'hub.yaml')])
    const agent = startAgent(d, h, 'node-a')
    try {
      await eventually(
        'node-a online',
        async () => (await h.api<{ nodes: unknown[] }>('/api/nodes')).body.nodes.length === 1,
      )
      h.process.kill('SIGSTOP')
      await new Promise((r) => setTimeout(r, 4000))
      h.process.kill('SIGCONT')
      const paused = await eventually('the pause recorded', async () => {
        const r = await h.api<{ events: { kind: string; attrs: { stoodStillMs: number } }[] }>(
          '/api/events?limit=50',
        )
        return r.body.events.find((e) => e.kind === 'hub.paused')
      })
      expect(paused.attrs.stoodStillMs).toBeGreaterThanOrEqual(3000)
      expect(await h.metric('vigil_hub_pauses_total')).toBe(1)
      const decisions = await h.api<{ decisions: { rule: string }[] }>('/api/decisions?limit=100')
      expect(decisions.body.decisions.some((x) => x.rule === 'hub.paused')).toBe(true)
      // Alive well past its watchdog's limit, healthy, and node-a never judged dead.
      await new Promise((r) => setTimeout(r, 2000))
      expect(h.process.pid).toBeGreaterThan(0)
      expect(await Promise.race([h.process.exited.then(() => 'exited'), Promise.resolve('running')])).toBe(
        'running',
      )
      expect((await h.api('/healthz')).status).toBe(200)
      const after = await h.api<{ decisions: { rule: string }[] }>('/api/decisions?limit=100')
      expect(
        after.body.decisions.filter((x) => x.rule === 'classify.dead' || x.rule.startsWith('fence')),
      ).toEqual([])
    } finally {
      await agent.stop()
      await h.process.stop()
    }
  })
})

/** An agent of this hub; `root` reaches the hub's files when it runs in a mount namespace of its own. */
describe('the systemd units', () => {
  const units = join(import.meta.dirname, '../../deploy/systemd')
  test.each(['vigil-hub.service', 'vigil-agent.service'])('%s passes systemd-analyze verify', (unit) => {
    // verify checks that ExecStart's program exists: point it at this checkout's vigil.
    const d = join(dir.path, 'units')
    mkdirSync(d, { recursive: true })
    const text = readFileSync(join(units, unit), 'utf8')
    writeFileSync(join(d, unit), text.replaceAll('/usr/local/bin/vigil', VIGIL_BIN))
    const out = spawnSync('systemd-analyze', ['verify', join(d, unit)], { encoding: 'utf8' })
    expect(out.status, out.stderr).toBe(0)
    expect(out.stderr.trim()).toBe('')
    // A configuration error is not retried; anything else is.
    expect(text).toMatch(/^Restart=on-failure$/m)
    expect(text).toMatch(/^RestartPreventExitStatus=2$/m)
  })

  test("the hub's unit is ready when /readyz is, and hardened; the agent's keeps its applications across a restart", () => {
    const hubUnit = readFileSync(join(units, 'vigil-hub.service'), 'utf8')
    expect(hubUnit).toMatch(/^ExecStartPost=\/usr\/local\/bin\/vigil ready --wait \d+$/m)
    for (const line of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes'])
      expect(hubUnit).toContain(`\n${line}\n`)
    expect(readFileSync(join(units, 'vigil-agent.service'), 'utf8')).toMatch(/^KillMode=process$/m)
  })
})

function startAgent(d: string, h: HubProcess, node: string, root = ''): VigilProcess {
  return new VigilProcess(
    ['agent', '--node', node, '--mqtt-url', h.mqttUrl, '--hub-key', `${root}${h.hubKey}`],
    {
      cwd: d,
    },
  )
}

/** Writes until the file system is full, to the last page. */
function fill(file: string): void {
  for (const size of [1024 * 1024, 4096]) {
    const chunk = Buffer.alloc(size, 7)
    try {
      for (let i = 0; i < 64 * 256; i++) writeFileSync(file, chunk, { flag: 'a' })
      throw new Error('the file system did not fill up')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
    }
  }
}
