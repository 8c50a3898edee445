#!/usr/bin/env node
// bench/vsphere-failover: time from an ESX host's death to its VM powered on on the other host,
// through vCenter (vcsim, VMware's vSphere API simulator: its task latency is near zero, so this
// measures Vigil's own path). Not a test: prints JSON and a table.
//
//   node bench/vsphere-failover/run.mjs [--runs 20] [--heartbeat-ms 100]
//
// Two ESX hosts, each a node whose agent lives on it and whose BMC (ipmi_sim) powers it off; the
// hub with its embedded broker; one VM (`vsphere` driver). Each run: find the host running the VM,
// kill it (t0: vcsim's host goes not responding, its VM disconnected with a stale "powered on",
// and its agent is SIGKILLed), then read the hub's decision records (classified dead, fence
// confirmed by the BMC's read-back) and poll vCenter every 20 ms until the VM is powered on and
// connected on the other host. Then the dead host is powered on, its agent restarted, and the next
// run waits until it is healthy again.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startBmc, startVcsim, vcsimHostPowerControl, vsphereResourceLines } from '@vigil/testbed'
import { readVm, textOf, Vim25Client } from '@vigil/vsphere'
import { markdownTable, median, quantile, sleep, startBenchHub, until } from '../lib.mjs'

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '20' }, 'heartbeat-ms': { type: 'string', default: '100' } },
})
const runs = Number(values.runs)
const root = join(import.meta.dirname, '..', '..')
const vigil = join(root, 'apps/cli/bin/vigil.js')
const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-vsphere-'))
const NODES = ['esx1', 'esx2']
const VM = 'DC0_C0_RP0_VM0'

const cleanups = []
const stopAll = async () => {
  for (const c of cleanups.reverse()) await c()
  rmSync(dir, { recursive: true, force: true })
}
process.once('SIGINT', () => void stopAll().then(() => process.exit(130)))

const vcsim = await startVcsim({ hosts: 2, vms: 1 })
cleanups.push(() => vcsim.stop())
const hostOf = (node) => vcsim.hosts[NODES.indexOf(node)]
const admin = new Vim25Client(vcsim.clientOptions())
cleanups.push(() => admin.logout())

/** The node whose host runs the VM, powered on and connected; null otherwise. */
async function runningOn() {
  const signal = AbortSignal.timeout(5000)
  const ref = await admin.find('VirtualMachine', VM, signal)
  if (!ref) return null
  const vm = await readVm(admin, ref, signal)
  if (vm.powerState !== 'poweredOn' || vm.connectionState !== 'connected') return null
  const hosts = await admin.all('HostSystem', ['name'], signal)
  const name = textOf(hosts.find((h) => h.ref.value === vm.host?.value)?.props.name)
  return NODES.find((n) => hostOf(n) === name) ?? null
}

const results = []
try {
  const bmcs = {}
  for (const node of NODES) {
    const hostCtl = vcsimHostPowerControl(
      join(dir, `${node}-power.sh`),
      vcsim,
      hostOf(node),
      join(dir, `${node}.pid`),
    )
    bmcs[node] = await startBmc({ hostCtl })
    cleanups.push(() => bmcs[node].stop())
  }
  writeFileSync(
    join(dir, 'hub.yaml'),
    [
      'fencing:',
      "  powerPollMs: 0 # the host's death powers it off: measure the fence through its BMC, as recorded",
      '  devices:',
      ...NODES.flatMap((n) => [
        `    - id: bmc-${n}`,
        '      driver: ipmi',
        `      hosts: { ${n}: [] }`,
        `      config: { host: ${bmcs[n].host}, port: ${bmcs[n].port}, username: ${bmcs[n].username}, passwordFile: ${bmcs[n].passwordFile} }`,
      ]),
      '',
    ].join('\n'),
  )
  writeFileSync(
    join(dir, 'cluster.yaml'),
    [
      // Twenty host deaths in a few minutes: far past the default fence budget (3 per 10 min),
      // which would rightly hold the fourth fence.
      `governor: { maxFences: ${runs + 5}, maxRestarts: 1000 }`,
      'nodes:',
      ...NODES.flatMap((n) => [`  - id: ${n}`, `    fencing: [{ devices: [bmc-${n}], timeoutMs: 10000 }]`]),
      'resources:',
      '  - id: vm1',
      '    kind: vm',
      '',
    ].join('\n'),
  )
  const { hub, base, mqttUrl, hubKey } = await startBenchHub(dir, {
    args: ['--config', join(dir, 'hub.yaml'), '--cluster-file', join(dir, 'cluster.yaml')],
  })
  cleanups.push(() => hub.kill('SIGTERM'))
  const agents = {}
  const startAgent = (node) => {
    const file = join(dir, `${node}.yaml`)
    const other = NODES.find((n) => n !== node)
    writeFileSync(
      file,
      [
        `node: ${node}`,
        `heartbeat: { intervalMs: ${values['heartbeat-ms']} }`,
        'resources:',
        ...vsphereResourceLines(vcsim, {
          id: 'vm1',
          vm: VM,
          host: hostOf(node),
          nodeHosts: { [other]: hostOf(other) },
          shutdownTimeoutMs: 0,
        }),
        '',
      ].join('\n'),
    )
    const child = spawn(
      process.execPath,
      [vigil, 'agent', '--config', file, '--mqtt-url', mqttUrl, '--hub-key', hubKey, '--log-level', 'warn'],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    )
    writeFileSync(join(dir, `${node}.pid`), String(child.pid))
    agents[node] = child
  }
  cleanups.push(() => {
    for (const a of Object.values(agents)) a.kill('SIGKILL')
  })
  for (const node of NODES) startAgent(node)
  const api = async (path) => (await fetch(`${base}${path}`)).json()
  const condition = async (node) => (await api(`/api/nodes/${node}`)).engine?.condition
  const decisions = async () => (await api('/api/decisions?limit=1000')).decisions

  for (let run = 1; run <= runs; run++) {
    const from = await until('the VM running', runningOn, 60_000)
    for (const n of NODES) await until(`${n} healthy`, async () => (await condition(n)) === 'healthy', 60_000)
    await sleep(1000 + Math.random() * 500) // a death lands at any moment between heartbeats
    const seen = new Set((await decisions()).map((d) => d.id))
    const t0 = Date.now()
    await vcsim.hostPower(hostOf(from), 'off')
    agents[from].kill('SIGKILL')
    const to = await until('the VM powered on on the other host', async () => {
      const at = await runningOn()
      return at && at !== from ? at : undefined
    })
    const runningMs = Date.now() - t0
    const fresh = (await decisions()).filter((d) => !seen.has(d.id))
    const at = (rule) => {
      const d = fresh.find((x) => x.rule === rule && x.node === from)
      return d ? d.at - t0 : null
    }
    results.push({ run, from, to, deadMs: at('classify.dead'), fencedMs: at('fence.confirmed'), runningMs })
    process.stderr.write(`run ${run}: ${from} -> ${to} in ${runningMs} ms\n`)
    await vcsim.hostPower(hostOf(from), 'on')
    startAgent(from)
  }

  const column = (k) => results.map((r) => r[k]).filter((v) => typeof v === 'number')
  const row = (label, k) => {
    const v = column(k)
    return {
      step: label,
      runs: v.length,
      'min ms': Math.min(...v),
      'median ms': median(v),
      'p90 ms': quantile(v, 0.9),
      'max ms': Math.max(...v),
    }
  }
  const rows = [
    row('classified dead', 'deadMs'),
    row('fence confirmed (BMC read back off)', 'fencedMs'),
    row('VM powered on on the other host', 'runningMs'),
  ]
  console.log(
    JSON.stringify(
      {
        bench: 'vsphere-failover',
        heartbeatMs: Number(values['heartbeat-ms']),
        runs: results,
        summary: rows,
      },
      null,
      2,
    ),
  )
  console.log(`\nESX host death to its VM powered on elsewhere, ${results.length} runs (vcsim, ipmi_sim):\n`)
  console.log(markdownTable(rows, ['step', 'runs', 'min ms', 'median ms', 'p90 ms', 'max ms']))
} finally {
  await stopAll()
}
