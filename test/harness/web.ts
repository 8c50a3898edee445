import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll } from 'vitest'
import { type HubProcess, hubKeyArgs } from './hub.js'
import { tempDir, VigilProcess } from './processes.js'

/**
 * The application most e2e tests fail over: `web`, a real process (`sleep 600`) managed by the
 * `process` driver, with its pidfile at `<dir>/<node>-web.pid` on every node that may run it.
 */
export function webPidfile(dir: string, node: string): string {
  return join(dir, `${node}-web.pid`)
}

/**
 * Writes `<dir>/<node>.yaml`, an agent config managing `web`, and starts that agent against the
 * hub (its broker unless `mqttUrl` says otherwise; its signing key).
 */
export function startWebAgent(
  dir: string,
  node: string,
  hub: HubProcess,
  opts: { mqttUrl?: string; args?: string[]; env?: Record<string, string> } = {},
): VigilProcess {
  const file = join(dir, `${node}.yaml`)
  writeFileSync(
    file,
    [
      `node: ${node}`,
      'resources:',
      '  - id: web',
      '    driver: process',
      '    config:',
      '      command: [sleep, "600"]',
      `      pidfile: ${webPidfile(dir, node)}`,
      '',
    ].join('\n'),
  )
  const mqttUrl = opts.mqttUrl ?? hub.mqttUrl
  return new VigilProcess(
    ['agent', '--config', file, '--mqtt-url', mqttUrl, ...hubKeyArgs(hub), ...(opts.args ?? [])],
    {
      cwd: dir,
      env: opts.env ?? {},
    },
  )
}

/** Kills every copy of `web` a test left (its process group), e.g. after its agent was SIGKILLed. */
export function killWebCopies(dir: string, nodes: string[]): void {
  for (const node of nodes) {
    const pidfile = webPidfile(dir, node)
    try {
      if (existsSync(pidfile)) process.kill(-Number(readFileSync(pidfile, 'utf8')), 'SIGKILL')
    } catch {}
  }
}

/**
 * A test file's temp dir and its cleanups, run after its tests (newest first), then every copy of
 * `web` it left killed and the dir removed.
 */
export function webTestFixture(prefix: string): {
  dir: { path: string; remove(): void }
  cleanups: (() => Promise<void> | void)[]
} {
  const dir = tempDir(prefix)
  const cleanups: (() => Promise<void> | void)[] = []
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c()
    killWebCopies(dir.path, ['node-a', 'node-b'])
    dir.remove()
  })
  return { dir, cleanups }
}
