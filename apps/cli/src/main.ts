import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline/promises'
import { parseArgs } from 'node:util'
import { ConfigError, loadConfigFile, VigilError } from '@vigil/kit'
import { caInit, caIssue } from './ca.js'
import { cliEnv } from './env.js'
import { type FenceView, renderFence } from './fence.js'
import { renderStatus, type StatusGroup, type StatusResource } from './status.js'
import { issueAgentPassword, issueToken, revokeSecret } from './token.js'
import {
  type AuditEntry,
  type Decision,
  type ResourceNow,
  renderAudit,
  renderPlan,
  renderWhy,
  type WhatIf,
} from './why.js'

export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const

const USAGE = `Usage: vigil <command> [options]

Commands:
  hub                      run the hub (see vigil hub --help)
  agent                    run an agent (see vigil agent --help)
  status [--brief] [--watch] [--json]
                           nodes, their state, last heartbeat and facts; resources, where they run
  ping <node> [--json]     send a ping command and wait for the agent's result
  ready [--wait <seconds>] [--json]
                           whether the hub is ready (/readyz: every part up), waiting up to
                           --wait for it; exit 0 ready, 1 not ready (each part that is not up
                           on stderr), 3 unreachable (systemd's ExecStartPost uses it)
  fence [--json]           fence devices and their health, whether each node can be fenced now,
                           requests waiting for an operator, fence history
  fence <node> [--yes]     power a node off through its fence levels (asks to type its name);
                           its resources then start elsewhere
  fence confirm <node> [--by <name>]
  ack-fence <node> [--by <name>]
                           an operator confirms <node> is powered off (meatware, or after a
                           failed fence); its resources may then start elsewhere
  why <decision-id|resource|node> [--json]
                           why Vigil did what it did: the decision chain in plain words, with the
                           evidence per channel, the classification, the candidates and their scores
  plan [--json]            if each node died now: where its resources would go, what could not be placed
  move <resource> <node> [--for 1h]
                           place a resource on a node for a while (the placement expires by itself);
                           a vm that allows live migration moves live
  migrate <vm> <node> [--for 1h]
                           the same, live or not at all: refused for anything but a vm with
                           liveMigrate: true
  maintenance on|off [--node <n> | --resource <r>] [--for 30m]
                           stop acting on the cluster, a node or a resource (observe only); --for
                           re-arms by itself
  cleanup <resource>       forget a resource's counted failures and act on its state afresh
  cluster freeze|thaw      pause all automation, observation going on (the cluster's maintenance)
  cluster reload [--check] re-read the hub's cluster file: validated, changes shown, then applied
  resource stop|start <resource>
                           keep a resource stopped (what depends on it first) until started again
                           (disable and enable say the same, as pcs does)
  resource suspend|resume <vm>
                           pause a running vm in memory on its node, on purpose (never recovered
                           as a failure), and continue it
  evacuate <node>          empty a node (live-migrating vms that allow it), then put it in maintenance
  audit [--who <name>] [--json]
                           the API's audit log: who changed what, when, from where, with what result
  token issue <name> --role viewer|operator|admin --file <tokens.yaml>
                           add an API token (printed once; the file keeps its SHA-256)
  token revoke <name> --file <tokens.yaml>
  ca init --dir <dir> [--cluster <name>]
  ca issue <cn> --dir <dir> [--san <ip-or-name>]...
                           a cluster CA (openssl) and certificates for the broker (with --san) and
                           for agents' mutual TLS (CN = node name)
  credentials issue|revoke <node> --file <agents.yaml>
                           an agent's broker password for the embedded broker (printed once;
                           the hub's broker.credentialsFile keeps its SHA-256)
  config check <file> --kind hub | --kind agent [--cluster <cluster.yaml>]
                           validate a config file without starting anything; with the cluster
                           file, an agent's isolation response is checked against the hub's
                           detection and fencing timings
  simulate <scenario-dir> [--check] | simulate --what-if <node>
                           run a simulator scenario and print its log; --check compares it
                           with the folder's log.expect (exit 1 on a difference or a violation)

Common options: --hub <url> (default $VIGIL_HUB_URL or ${cliEnv.hubUrl})

Exit codes: 0 success; 1 the operation failed (command refused or timed out, hub error);
            2 usage or configuration error; 3 the hub could not be reached.`

/** Entry point of the `vigil` binary; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  // `vigil <command> --help`: that command's lines of the usage (hub and agent print their own).
  if (
    command &&
    command !== 'hub' &&
    command !== 'agent' &&
    (rest.includes('--help') || rest.includes('-h'))
  ) {
    console.log(usageOf(command))
    return EXIT.ok
  }
  switch (command) {
    case 'hub':
      return (await import('@vigil/hub')).runHubCli(rest)
    case 'agent':
      return (await import('@vigil/agent')).runAgentCli(rest)
    case 'status':
      return status(rest)
    case 'ping':
      return ping(rest)
    case 'ready':
      return ready(rest)
    case 'fence':
      return fence(rest)
    case 'ack-fence': // Pacemaker's `stonith_admin --confirm`, under the name operators look for
      return fence(['confirm', ...rest])
    case 'why':
      return why(rest)
    case 'token':
      return tokenCommand(rest)
    case 'credentials':
      return credentialsCommand(rest)
    case 'ca':
      return caCommand(rest)
    case 'audit':
      return auditCommand(rest)
    case 'plan':
      return plan(rest)
    case 'move':
    case 'migrate':
    case 'maintenance':
    case 'cleanup':
    case 'evacuate':
      return operate(command, rest)
    case 'resource':
      return resourceCommand(rest)
    case 'cluster':
      return clusterCommand(rest)
    case 'config':
      return configCheck(rest)
    case 'simulate':
      return simulate(rest)
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE)
      return command === undefined ? EXIT.usage : EXIT.ok
    default:
      console.error(`vigil: unknown command "${command}"\n\n${USAGE}`)
      return EXIT.usage
  }
}

/** The usage's entries for `command` (an entry: its line and the indented lines under it), or all of it. */
export function usageOf(command: string): string {
  const entries: string[][] = []
  for (const line of USAGE.split('\n')) {
    if (/^ {2}\S/.test(line)) entries.push([line])
    else if (/^ {3,}\S/.test(line)) entries.at(-1)?.push(line)
  }
  const mine = entries.filter(([first]) => first?.trimStart().split(/[ |]/)[0] === command)
  if (mine.length === 0) return USAGE
  const common = USAGE.slice(USAGE.indexOf('Common options:'))
  return `Usage:\n${mine.map((e) => e.join('\n')).join('\n')}\n\n${common}`
}

const commonOptions = {
  hub: { type: 'string' },
  json: { type: 'boolean' },
  'token-file': { type: 'string' },
} as const

/** The bearer token sent with every request: --token-file, else $VIGIL_TOKEN. */
let token: string | undefined = cliEnv.token

function parse<O extends Record<string, { type: 'string' | 'boolean' }>>(argv: string[], options: O) {
  const parsed = parseArgs({
    args: argv,
    options: { ...commonOptions, ...options },
    allowPositionals: true,
    strict: true,
  })
  const file = (parsed.values as Record<string, unknown>)['token-file']
  if (typeof file === 'string') {
    try {
      token = readFileSync(file, 'utf8').trim()
    } catch (err) {
      throw new HubRequestError(`cannot read --token-file ${file}: ${(err as Error).message}`, EXIT.usage)
    }
  }
  return parsed
}

class HubRequestError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message)
  }
}

async function hubRequest(
  hubUrl: string,
  path: string,
  init?: RequestInit,
): Promise<{ status: number; body: unknown }> {
  let res: Response
  try {
    const headers = new Headers(init?.headers)
    if (token) headers.set('authorization', `Bearer ${token}`)
    const send = (url: URL) =>
      fetch(url, { ...init, headers, redirect: 'manual', signal: AbortSignal.timeout(30_000) })
    res = await send(new URL(path, hubUrl))
    // A standby of a hub group sends changes to its leader (307): followed here, once, with the
    // token (fetch itself drops the Authorization header when a redirect leaves the origin).
    const location = res.headers.get('location')
    if ((res.status === 307 || res.status === 308) && location) res = await send(new URL(location, hubUrl))
  } catch (err) {
    throw new HubRequestError(
      `cannot reach the hub at ${hubUrl}: ${(err as Error).cause ?? (err as Error).message}`,
      EXIT.unreachable,
    )
  }
  const text = await res.text()
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {
    // keep text
  }
  return { status: res.status, body }
}

function errorMessage(body: unknown): string {
  const e = (body as { error?: { code?: string; message?: string } })?.error
  return e ? `${e.code}: ${e.message}` : String(body)
}

async function withUsage(fn: () => Promise<number>): Promise<number> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof HubRequestError) {
      console.error(`vigil: ${err.message}`)
      return err.exitCode
    }
    if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`vigil: ${(err as Error).message}\n\n${USAGE}`)
      return EXIT.usage
    }
    throw err
  }
}

interface PartState {
  part: string
  state: string
  problem?: string
}

/** `vigil ready`: the hub's /readyz, polled until ready or until --wait runs out. */
function ready(argv: string[]): Promise<number> {
  return withUsage(async () => {
    const { values } = parse(argv, { wait: { type: 'string' } } as const)
    const hubUrl = values.hub ?? cliEnv.hubUrl
    const waitS = values.wait === undefined ? 0 : Number(values.wait)
    if (!Number.isFinite(waitS) || waitS < 0) {
      console.error(`vigil: --wait: "${values.wait}" is not a number of seconds`)
      return EXIT.usage
    }
    const until = Date.now() + waitS * 1000
    for (;;) {
      let answer: { status: number; body: unknown } | null = null
      let unreachable: HubRequestError | null = null
      try {
        answer = await hubRequest(hubUrl, '/readyz')
      } catch (err) {
        if (!(err instanceof HubRequestError)) throw err
        unreachable = err
      }
      if (answer?.status === 200) {
        if (values.json) console.log(JSON.stringify(answer.body))
        else console.log(`ready: ${hubUrl}`)
        return EXIT.ok
      }
      if (Date.now() >= until) {
        if (unreachable) throw unreachable
        const parts = ((answer?.body as { parts?: PartState[] })?.parts ?? []).filter((p) => p.state !== 'up')
        if (values.json) console.log(JSON.stringify(answer?.body))
        console.error(`vigil: the hub at ${hubUrl} is not ready`)
        for (const p of parts) console.error(`  ${p.part}: ${p.state}${p.problem ? ` (${p.problem})` : ''}`)
        return EXIT.failed
      }
      await new Promise((r) => setTimeout(r, 250))
    }
  })
}

function status(argv: string[]): Promise<number> {
  return withUsage(async () => {
    const { values } = parse(argv, { brief: { type: 'boolean' }, watch: { type: 'boolean' } } as const)
    const hubUrl = values.hub ?? cliEnv.hubUrl
    const once = async (): Promise<number> => {
      const [info, nodes, resources, group] = await Promise.all([
        hubRequest(hubUrl, '/api'),
        hubRequest(hubUrl, '/api/nodes'),
        hubRequest(hubUrl, '/api/resources'),
        hubRequest(hubUrl, '/api/group'),
      ])
      const resourceList =
        resources.status === 200 ? (resources.body as { resources: StatusResource[] }).resources : []
      if (nodes.status !== 200) {
        console.error(`vigil: hub answered ${nodes.status}: ${errorMessage(nodes.body)}`)
        return EXIT.failed
      }
      const list = (nodes.body as { nodes: Parameters<typeof renderStatus>[1] }).nodes
      if (values.json)
        console.log(
          JSON.stringify(
            { hub: info.body, group: group.body, nodes: list, resources: resourceList },
            null,
            2,
          ),
        )
      else
        console.log(
          renderStatus(
            info.body as Record<string, unknown>,
            list,
            Date.now(),
            values.brief ?? false,
            resourceList,
            group.status === 200 ? (group.body as StatusGroup) : null,
          ),
        )
      return EXIT.ok
    }
    if (!values.watch) return once()
    for (;;) {
      process.stdout.write('\x1b[2J\x1b[H')
      await once()
      await new Promise((r) => setTimeout(r, 2000))
    }
  })
}

function ping(argv: string[]): Promise<number> {
  return withUsage(async () => {
    const { values, positionals } = parse(argv, {})
    const node = positionals[0]
    if (!node) {
      console.error('vigil ping: missing <node>')
      return EXIT.usage
    }
    const res = await hubRequest(values.hub ?? cliEnv.hubUrl, `/api/nodes/${encodeURIComponent(node)}/ping`, {
      method: 'POST',
    })
    if (values.json) console.log(JSON.stringify(res.body, null, 2))
    if (res.status !== 200) {
      if (!values.json) console.error(`vigil ping: ${errorMessage(res.body)}`)
      return EXIT.failed
    }
    const body = res.body as { roundTripMs: number; id: string }
    if (!values.json) console.log(`pong from ${node}: round trip ${body.roundTripMs} ms (command ${body.id})`)
    return EXIT.ok
  })
}

function fence(argv: string[]): Promise<number> {
  return withUsage(async () => {
    const { values, positionals } = parse(argv, { by: { type: 'string' }, yes: { type: 'boolean' } } as const)
    const hubUrl = values.hub ?? cliEnv.hubUrl
    const [sub, node] = positionals
    if (sub !== undefined && sub !== 'confirm' && node === undefined) return fenceNow(hubUrl, sub, values)
    if (sub === undefined) {
      const res = await hubRequest(hubUrl, '/api/fence')
      if (res.status !== 200) {
        console.error(`vigil fence: hub answered ${res.status}: ${errorMessage(res.body)}`)
        return EXIT.failed
      }
      console.log(
        values.json ? JSON.stringify(res.body, null, 2) : renderFence(res.body as FenceView, Date.now()),
      )
      return EXIT.ok
    }
    if (sub !== 'confirm' || !node) {
      console.error(
        'Usage: vigil fence [--json] | vigil fence <node> [--yes] | vigil fence confirm <node> [--by <name>]',
      )
      return EXIT.usage
    }
    const by = values.by ?? cliEnv.user
    const res = await hubRequest(hubUrl, '/api/fence/confirm', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ node, by }),
    })
    if (values.json) console.log(JSON.stringify(res.body, null, 2))
    if (res.status !== 200) {
      if (!values.json) console.error(`vigil fence confirm: ${errorMessage(res.body)}`)
      return EXIT.failed
    }
    if (!values.json) console.log(`${node}: confirmed powered off by ${by}`)
    return EXIT.ok
  })
}

/**
 * `vigil fence <node>`: power a node off through its fence levels. A weapon: it asks the operator to
 * type the node's name (or takes --yes), and the hub checks the same.
 */
async function fenceNow(
  hubUrl: string,
  node: string,
  values: { by?: string | undefined; yes?: boolean | undefined; json?: boolean | undefined },
): Promise<number> {
  if (!values.yes) {
    if (!process.stdin.isTTY) {
      console.error(`vigil fence ${node}: this powers ${node} off; add --yes to confirm without a terminal`)
      return EXIT.usage
    }
    const rl = createInterface({ input: process.stdin, output: process.stderr })
    const typed = await rl.question(
      `This powers ${node} off and moves its resources. Type its name to confirm: `,
    )
    rl.close()
    if (typed.trim() !== node) {
      console.error('vigil fence: not confirmed; nothing done')
      return EXIT.failed
    }
  }
  const by = values.by ?? cliEnv.user
  const res = await hubRequest(hubUrl, `/api/nodes/${encodeURIComponent(node)}/fence`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ confirm: node, by }),
  })
  if (values.json) console.log(JSON.stringify(res.body, null, 2))
  if (res.status !== 202) {
    if (!values.json) console.error(`vigil fence ${node}: ${errorMessage(res.body)}`)
    return res.status === 400 ? EXIT.usage : EXIT.failed
  }
  if (!values.json) console.log(`${node}: fence requested by ${by}; \`vigil fence\` shows its progress`)
  return EXIT.ok
}

function configCheck(argv: string[]): Promise<number> {
  return withUsage(async () => {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { kind: { type: 'string' }, cluster: { type: 'string' } },
      allowPositionals: true,
      strict: true,
    })
    const [sub, file] = positionals
    const kindOk = values.kind === 'agent' || (values.kind === 'hub' && values.cluster === undefined)
    if (sub !== 'check' || !file || !kindOk) {
      // --cluster checks an agent's timings against the hub's: it means nothing for a hub file.
      console.error('Usage: vigil config check <file> --kind hub | --kind agent [--cluster <cluster.yaml>]')
      return EXIT.usage
    }
    let checkedCluster: string | null = null
    try {
      // Loaded on demand: `vigil agent` must not carry the hub's modules (broker, SQLite, fence drivers).
      if (values.kind === 'hub') {
        const hub = await import('@vigil/hub')
        const config = loadConfigFile(hub.hubConfigSchema, file)
        // Its cluster file too, as the hub loads it: a fence level naming a device this hub lacks
        // (or without the node's plugs) is said here with the file's line, not at the hub's start.
        const clusterFile = config.engine.clusterFile
        if (clusterFile) {
          hub.loadClusterSpec(clusterFile, (s) =>
            hub.fenceLevelProblems(s, hub.fenceDeviceShapes(config.fencing)),
          )
          checkedCluster = clusterFile
        }
      } else {
        const agent = await import('@vigil/agent')
        // With the cluster file, the agent's isolation response is checked against the hub's
        // detection and fencing timings, as the hub does when the agent says hello.
        const spec = values.cluster ? (await import('@vigil/hub')).loadClusterSpec(values.cluster) : null
        const { actionTimeoutNotes, isolationTimingProblem } = await import('@vigil/engine')
        const config = loadConfigFile(agent.agentConfigSchema, file, [], (config) => {
          const isolation = spec ? agent.announcedIsolation(config) : undefined
          const problem = spec && isolation ? isolationTimingProblem(spec, config.node, isolation) : undefined
          return problem ? [{ path: problem.key.split('.'), message: problem.message }] : []
        })
        // Not errors: the engine already waits for the driver's own deadline. Said with both
        // numbers, so that a fallback set shorter is known not to apply.
        if (spec)
          for (const note of actionTimeoutNotes(
            spec,
            config.node,
            agent.declaredActionTimeouts(config) ?? {},
          ))
            console.log(`${values.cluster}: ${note.message}`)
      }
    } catch (err) {
      if (err instanceof ConfigError || err instanceof VigilError) {
        console.error(err.message)
        return EXIT.usage
      }
      throw err
    }
    console.log(
      `${file}: valid ${values.kind} configuration${values.cluster ? `, its timings consistent with ${values.cluster}` : ''}${checkedCluster ? `, its cluster file ${checkedCluster} too` : ''}`,
    )
    return EXIT.ok
  })
}

function tokenCommand(argv: string[]): Promise<number> {
  return withUsage(async () => {
    const { values, positionals } = parse(argv, {
      role: { type: 'string' },
      file: { type: 'string' },
    } as const)
    const [sub, name] = positionals
    if (!values.file || !name || (sub === 'issue' && !values.role) || (sub !== 'issue' && sub !== 'revoke')) {
      console.error(
        'Usage: vigil token issue <name> --role viewer|operator|admin --file <tokens.yaml> | vigil token revoke <name> --file <tokens.yaml>',
      )
      return EXIT.usage
    }
    try {
      if (sub === 'issue') {
        console.log(issueToken(values.file, name, values.role as string))
        console.error(
          `vigil token: ${name} (${values.role}) added to ${values.file}; the token above is shown only now`,
        )
      } else if (!revokeSecret(values.file, 'tokens', name)) {
        console.error(`vigil token: no token named "${name}" in ${values.file}`)
        return EXIT.failed
      } else console.error(`vigil token: ${name} revoked`)
    } catch (err) {
      console.error(`vigil token: ${(err as Error).message}`)
      return EXIT.usage
    }
    return EXIT.ok
  })
}

function credentialsCommand(argv: string[]): Promise<number> {
  return withUsage(async () => {
    const { values, positionals } = parse(argv, { file: { type: 'string' } } as const)
    const [sub, node] = positionals
    if (!values.file || !node || (sub !== 'issue' && sub !== 'revoke')) {
      console.error('Usage: vigil credentials issue|revoke <node> --file <agents.yaml>')
      return EXIT.usage
    }
    try {
      if (sub === 'issue') {
        console.log(issueAgentPassword(values.file, node))
        console.error(
          `vigil credentials: ${node} added to ${values.file}; give the password above to its agent (mqtt.passwordFile), it is shown only now`,
        )
      } else if (!revokeSecret(values.file, 'agents', node)) {
        console.error(`vigil credentials: no entry for "${node}" in ${values.file}`)
        return EXIT.failed
      } else console.error(`vigil credentials: ${node} revoked`)
    } catch (err) {
      console.error(`vigil credentials: ${(err as Error).message}`)
      return EXIT.usage
    }
    return EXIT.ok
  })
}

function caCommand(argv: string[]): Promise<number> {
  return withUsage(async () => {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        dir: { type: 'string' },
        cluster: { type: 'string' },
        san: { type: 'string', multiple: true },
      },
      allowPositionals: true,
      strict: true,
    })
    const [sub, cn] = positionals
    if (!values.dir || (sub === 'issue' ? !cn : sub !== 'init')) {
      console.error(
        'Usage: vigil ca init --dir <dir> [--cluster <name>] | vigil ca issue <cn> --dir <dir> [--san <ip-or-name>]...',
      )
      return EXIT.usage
    }
    try {
      if (sub === 'init') console.log(await caInit(values.dir, values.cluster ?? 'default'))
      else {
        const { cert, key } = await caIssue(values.dir, cn as string, values.san ?? [])
        console.log(`${cert}\n${key}`)
      }
    } catch (err) {
      console.error(`vigil ca: ${(err as Error).message}`)
      return EXIT.failed
    }
    return EXIT.ok
  })
}

function auditCommand(argv: string[]): Promise<number> {
  return withUsage(async () => {
    const { values } = parse(argv, { who: { type: 'string' } } as const)
    const q = values.who ? `?who=${encodeURIComponent(values.who)}` : ''
    const res = await hubRequest(values.hub ?? cliEnv.hubUrl, `/api/audit${q}`)
    if (res.status !== 200) {
      console.error(`vigil audit: ${errorMessage(res.body)}`)
      return EXIT.failed
    }
    const rows = (res.body as { audit: AuditEntry[] }).audit
    if (values.json) console.log(JSON.stringify(rows, null, 2))
    else process.stdout.write(renderAudit(rows))
    return EXIT.ok
  })
}

function plan(argv: string[]): Promise<number> {
  return withUsage(async () => {
    const { values } = parse(argv, {})
    const res = await hubRequest(values.hub ?? cliEnv.hubUrl, '/api/plan')
    if (res.status !== 200) {
      console.error(`vigil plan: ${errorMessage(res.body)}`)
      return EXIT.failed
    }
    const body = res.body as { plan: WhatIf[] }
    if (values.json) console.log(JSON.stringify(body, null, 2))
    else process.stdout.write(renderPlan(body.plan))
    return EXIT.ok
  })
}

/**
 * `vigil cluster freeze|thaw`: all automation paused, observation going on (VCS's freeze, Pacemaker's
 * maintenance-mode): the cluster's maintenance, audited and recorded like any operator action.
 */
function clusterCommand(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv
  if (verb === 'reload') return reloadCluster(rest)
  if (verb !== 'freeze' && verb !== 'thaw') {
    console.error('Usage: vigil cluster freeze|thaw [--for 30m] | vigil cluster reload [--check]')
    return Promise.resolve(EXIT.usage)
  }
  return operate('maintenance', [verb === 'freeze' ? 'on' : 'off', ...rest])
}

/**
 * `vigil cluster reload [--check]`: the hub re-reads its cluster file, validates it (errors name the
 * file, line and key) and shows what changes; without --check it applies it, moving nothing that did
 * not have to move.
 */
function reloadCluster(argv: string[]): Promise<number> {
  return withUsage(async () => {
    const { values } = parse(argv, { check: { type: 'boolean' } })
    const res = await hubRequest(values.hub ?? cliEnv.hubUrl, '/api/cluster/reload', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ check: values.check === true, by: cliEnv.user }),
    })
    if (values.json) console.log(JSON.stringify(res.body, null, 2))
    if (res.status !== 200 && res.status !== 202) {
      if (!values.json) console.error(`vigil cluster reload: ${errorMessage(res.body)}`)
      return res.status === 400 ? EXIT.usage : EXIT.failed
    }
    if (!values.json) {
      const { changes, applied } = res.body as { changes: string[]; applied: boolean }
      console.log(changes.length === 0 ? 'no change' : changes.join('\n'))
      console.log(
        applied
          ? 'applied; `vigil why` and the status page show what follows'
          : 'checked only (--check): nothing applied',
      )
    }
    return EXIT.ok
  })
}

/**
 * `vigil resource stop|start|disable|enable <id>`: an operator's wanted state for a resource;
 * `vigil resource suspend|resume <vm>`: an intended pause of a vm.
 */
function resourceCommand(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv
  const role =
    verb === 'stop' || verb === 'disable'
      ? 'stop'
      : verb === 'start' || verb === 'enable'
        ? 'start'
        : verb === 'suspend' || verb === 'resume'
          ? verb
          : null
  if (role === null) {
    console.error(
      'Usage: vigil resource stop|start <resource>   (disable and enable say the same)\n       vigil resource suspend|resume <vm>',
    )
    return Promise.resolve(EXIT.usage)
  }
  return operate(`resource-${role}`, rest)
}

/** The `resource-*` commands of `operate`, and the API verb each posts. */
const RESOURCE_VERBS: Record<string, string> = {
  'resource-stop': 'stop',
  'resource-start': 'start',
  'resource-suspend': 'suspend',
  'resource-resume': 'resume',
}

/** move, maintenance, cleanup, evacuate: one request each, accepted (202) or refused with the reason. */
function operate(command: string, argv: string[]): Promise<number> {
  return withUsage(async () => {
    const { values, positionals } = parse(argv, {
      for: { type: 'string' },
      node: { type: 'string' },
      resource: { type: 'string' },
      by: { type: 'string' },
    } as const)
    const by = values.by ?? cliEnv.user
    const usage: Record<string, string> = {
      move: 'vigil move <resource> <node> [--for 1h]',
      migrate: 'vigil migrate <vm> <node> [--for 1h]',
      maintenance: 'vigil maintenance on|off [--node <n> | --resource <r>] [--for 30m]',
      cleanup: 'vigil cleanup <resource>',
      evacuate: 'vigil evacuate <node>',
      'resource-stop': 'vigil resource stop <resource>',
      'resource-start': 'vigil resource start <resource>',
      'resource-suspend': 'vigil resource suspend <vm>',
      'resource-resume': 'vigil resource resume <vm>',
    }
    const [a, b] = positionals
    let path: string
    let body: Record<string, unknown>
    if ((command === 'move' || command === 'migrate') && a && b) {
      path = `/api/resources/${encodeURIComponent(a)}/${command}`
      body = { node: b, by, ...(values.for ? { for: values.for } : {}) }
    } else if (command === 'maintenance' && (a === 'on' || a === 'off') && !b) {
      path = '/api/maintenance'
      body = {
        on: a === 'on',
        by,
        ...(values.node ? { node: values.node } : {}),
        ...(values.resource ? { resource: values.resource } : {}),
        ...(values.for ? { for: values.for } : {}),
      }
    } else if (command in RESOURCE_VERBS && a && !b) {
      path = `/api/resources/${encodeURIComponent(a)}/${RESOURCE_VERBS[command]}`
      body = { by }
    } else if ((command === 'cleanup' || command === 'evacuate') && a && !b) {
      path = `/api/${command === 'cleanup' ? 'resources' : 'nodes'}/${encodeURIComponent(a)}/${command}`
      body = { by }
    } else {
      console.error(`Usage: ${usage[command]}`)
      return EXIT.usage
    }
    const res = await hubRequest(values.hub ?? cliEnv.hubUrl, path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    })
    if (values.json) console.log(JSON.stringify(res.body, null, 2))
    if (res.status !== 202) {
      if (!values.json) console.error(`vigil ${command.replace('-', ' ')}: ${errorMessage(res.body)}`)
      return res.status === 400 ? EXIT.usage : EXIT.failed
    }
    if (!values.json)
      console.log(
        `vigil ${command.replace('-', ' ')}: accepted; \`vigil why\` and the status page show what Vigil does with it`,
      )
    return EXIT.ok
  })
}

function why(argv: string[]): Promise<number> {
  return withUsage(async () => {
    const { values, positionals } = parse(argv, {} as const)
    const subject = positionals[0]
    if (!subject) {
      console.error('Usage: vigil why <decision-id|resource|node> [--json]')
      return EXIT.usage
    }
    const hubUrl = values.hub ?? cliEnv.hubUrl
    const get = async <T>(path: string): Promise<T> => {
      const res = await hubRequest(hubUrl, path)
      if (res.status !== 200) throw new HubRequestError(`hub: ${errorMessage(res.body)}`, EXIT.failed)
      return res.body as T
    }
    const q = encodeURIComponent(subject)
    const byId = await hubRequest(hubUrl, `/api/decisions/${q}`)
    const resources = (
      await get<{ resources: (ResourceNow & { correlationId: string | null })[] }>('/api/resources')
    ).resources
    const resource = resources.find((r) => r.id === subject) ?? null
    let anchor: Decision | undefined
    if (byId.status === 200) anchor = byId.body as Decision
    else {
      const filter = resource ? `resource=${q}` : `node=${q}`
      anchor = (await get<{ decisions: Decision[] }>(`/api/decisions?${filter}&limit=1`)).decisions[0]
    }
    if (!anchor && !resource) {
      console.error(`vigil why: no decision, resource or node named "${subject}"`)
      return EXIT.failed
    }
    // The chain a resource is in now (its correlation survives from the failure that moved it).
    const correlation = resource?.correlationId ?? anchor?.correlationId
    const chain = correlation
      ? (
          await get<{ decisions: Decision[] }>(
            `/api/decisions?correlation=${encodeURIComponent(correlation)}&limit=1000`,
          )
        ).decisions.reverse()
      : []
    if (values.json) console.log(JSON.stringify({ subject, resource, decisions: chain }, null, 2))
    else process.stdout.write(renderWhy(subject, chain, resource))
    return EXIT.ok
  })
}

/** `vigil simulate --what-if <node>`: the live cluster's plan if that node died now. */
async function whatIf(argv: string[]): Promise<number> {
  const { values } = parse(argv, { 'what-if': { type: 'string' } } as const)
  const node = values['what-if']
  if (!node) {
    console.error('Usage: vigil simulate --what-if <node>')
    return EXIT.usage
  }
  const res = await hubRequest(values.hub ?? cliEnv.hubUrl, '/api/plan')
  if (res.status !== 200) {
    console.error(`vigil simulate: ${errorMessage(res.body)}`)
    return EXIT.failed
  }
  const plan = (res.body as { plan: WhatIf[] }).plan.filter((p) => p.node === node)
  if (values.json) console.log(JSON.stringify({ plan }, null, 2))
  else
    process.stdout.write(
      plan.length > 0 ? renderPlan(plan) : `${node} runs no resource: losing it moves nothing.\n`,
    )
  return EXIT.ok
}

function simulate(argv: string[]): Promise<number> {
  return withUsage(async () => {
    if (argv.includes('--what-if')) return whatIf(argv)
    const { values, positionals } = parseArgs({
      args: argv,
      options: { check: { type: 'boolean' } },
      allowPositionals: true,
      strict: true,
    })
    const dir = positionals[0]
    if (!dir) {
      console.error('Usage: vigil simulate <scenario-dir> [--check] | vigil simulate --what-if <node>')
      return EXIT.usage
    }
    const { checkScenario } = await import('@vigil/sim')
    let outcome: Awaited<ReturnType<typeof checkScenario>>
    try {
      outcome = checkScenario(dir)
    } catch (err) {
      console.error(`vigil simulate: ${(err as Error).message}`)
      return EXIT.usage
    }
    process.stdout.write(outcome.actual)
    for (const v of outcome.violations) console.error(v)
    if (outcome.violations.length > 0) return EXIT.failed
    if (values.check) {
      if (outcome.expected === null) {
        console.error(`vigil simulate: ${dir}/log.expect does not exist`)
        return EXIT.failed
      }
      if (outcome.expected !== outcome.actual) {
        console.error(`vigil simulate: the log differs from ${dir}/log.expect`)
        return EXIT.failed
      }
      console.error('vigil simulate: matches log.expect')
    }
    return EXIT.ok
  })
}
