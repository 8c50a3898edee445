import { join } from 'node:path'
import { type LogLine, VigilProcess } from './processes.js'

export interface HubProcess {
  process: VigilProcess
  httpUrl: string
  mqttUrl: string
  liveUrl: string
  dbPath: string
  /** The hub's command signing public key (PEM file): agents run only what it signed. */
  hubKey: string
  api<T = unknown>(path: string, init?: RequestInit): Promise<{ status: number; body: T }>
  metric(name: string, labels?: Record<string, string>): Promise<number | undefined>
}

/** An agent's flags that make it trust this hub's signed commands (and only those). */
export function hubKeyArgs(hub: { hubKey: string }): string[] {
  return ['--hub-key', hub.hubKey]
}

/** Starts `vigil hub` on free ports (embedded broker unless args say otherwise) and waits until ready. */
export async function startHub(
  dir: string,
  args: string[] = [],
  env: Record<string, string> = {},
  /** An argv prefix to run it with (a lab host's `exec`: the hub inside a network namespace). */
  wrap?: string[],
): Promise<HubProcess> {
  const dbPath = join(dir, 'hub.sqlite')
  const process = new VigilProcess(
    ['hub', '--listen', '127.0.0.1:0', '--broker-listen', '127.0.0.1:0', '--db', dbPath, ...args],
    { cwd: dir, env, ...(wrap ? { wrap } : {}) },
  )
  const ready = await process.waitForLog('hub ready', (l: LogLine) => l.msg === 'hub ready')
  await process.waitForLog('hub connected to broker', (l: LogLine) => l.msg === 'connected to broker')
  const httpUrl = ready.httpUrl as string
  return {
    process,
    httpUrl,
    mqttUrl: ready.mqttUrl as string,
    liveUrl: ready.liveUrl as string,
    dbPath,
    hubKey: ready.commandPublicKeyFile as string,
    async api<T>(path: string, init?: RequestInit) {
      const res = await fetch(new URL(path, httpUrl), init)
      return { status: res.status, body: (await res.json()) as T }
    },
    async metric(name: string, labels: Record<string, string> = {}) {
      const text = await (await fetch(new URL('/metrics', httpUrl))).text()
      return parseMetric(text, name, labels)
    },
  }
}

/** The value of one sample in Prometheus text format, matching all given labels. */
export function parseMetric(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line)
    if (!m || m[1] !== name) continue
    const found: Record<string, string> = {}
    for (const pair of (m[2] ?? '').slice(1, -1).matchAll(/(\w+)="([^"]*)"/g))
      found[pair[1] as string] = pair[2] as string
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(m[3])
  }
  return undefined
}
