// The lab: several hosts on this machine, for a person to poke at, or for tests.
//   node scripts/lab.mjs up [--hosts 3] [--http 127.0.0.1:7570] [--dir .vigil-lab] [--heartbeat-ms N] [--max-fences N] [--max-restarts N]
//   node scripts/lab.mjs down [--dir .vigil-lab]
// up: every host is a network namespace on a bridge of its own; each runs a Vigil agent (peer mesh,
// shared-disk heartbeat, two witness applications, web and db) and has an IPMI BMC (OpenIPMI's ipmi_sim) whose
// power-off kills every process of its namespace and whose power-on starts its agent again. The hub
// runs here with its embedded broker on the lab bridge. Everything is left running, detached; the
// PIDs and names are written to <dir>/lab.json. down: stops them all by PID and removes the
// namespaces; nothing is left behind. Needs root (network namespaces).
import { execFileSync, spawn } from 'node:child_process'
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { freePort, NetnsLab, startBmc } from '@vigil/testbed'

const { values, positionals } = parseArgs({
  options: {
    hosts: { type: 'string', default: '3' },
    http: { type: 'string', default: '127.0.0.1:7570' },
    dir: { type: 'string', default: '.vigil-lab' },
    /** Agents' heartbeat interval (the agent's default is 250 ms). */
    'heartbeat-ms': { type: 'string' },
    /** The governor's fence budget per 10 minutes (default 3): raise it to crash hosts in a loop. */
    'max-fences': { type: 'string' },
    /** Restarts in place tolerated per 10 minutes before the ladder relocates (default 3). */
    'max-restarts': { type: 'string' },
  },
  allowPositionals: true,
})
const root = new URL('..', import.meta.url).pathname
const vigil = join(root, 'apps/cli/bin/vigil.js')
const dir = resolve(root, values.dir)
const stateFile = join(dir, 'lab.json')
/** The lab's applications: each copy appends "<host> <ns>" to witness-<app>.log every 0.2 s. */
const APPS = ['web', 'db']

/** Starts a detached process with its output in `log`; returns its PID. */
function detached(argv, log) {
  const fd = openSync(log, 'a')
  const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  child.unref()
  return child.pid
}

async function up() {
  if (existsSync(stateFile))
    throw new Error(`a lab is already up (${stateFile}); run: node scripts/lab.mjs down`)
  mkdirSync(dir, { recursive: true })
  const names = Array.from({ length: Number(values.hosts) }, (_, i) => `host${i + 1}`)
  const lab = NetnsLab.create(names)
  const state = { lab: { bridgeNs: lab.bridgeNs, hubLink: lab.hubLink, hosts: {} }, pids: {}, bmcDirs: [] }
  writeFileSync(stateFile, JSON.stringify(state, null, 2))
  const save = () => writeFileSync(stateFile, JSON.stringify(state, null, 2))
  try {
    const brokerPort = await freePort('tcp')
    const mqttUrl = `mqtt://${lab.hubIp}:${brokerPort}`
    const sbd = join(dir, 'sbd')
    writeFileSync(sbd, Buffer.alloc(512 * 32))
    const devices = []
    const agentCommands = {}
    for (const [i, name] of names.entries()) {
      const host = lab.host(name)
      // port: this host's end on the lab bridge (in bridgeNs): down is a partition of the host.
      state.lab.hosts[name] = { netns: host.netns, ip: host.ip, port: `p${i}` }
      const config = join(dir, `${name}.yaml`)
      writeFileSync(
        config,
        [
          `node: ${name}`,
          ...(values['heartbeat-ms'] ? [`heartbeat: { intervalMs: ${Number(values['heartbeat-ms'])} }`] : []),
          `diskHeartbeat: { path: '${sbd}', slot: ${i}, slots: 32 }`,
          'peers:',
          `  listen: '${host.ip}:7480'`,
          '  mesh:',
          ...names.map((n) => `    - { node: ${n}, address: '${lab.host(n).ip}:7480' }`),
          'resources:',
          ...APPS.flatMap((app) => [
            `  - id: ${app}`,
            '    driver: process',
            '    config:',
            `      command: [sh, -c, 'while :; do echo "${name} $(date +%s%N)" >> ${join(dir, `witness-${app}.log`)}; sleep 0.2; done']`,
            `      pidfile: ${join(dir, `${name}-${app}.pid`)}`,
          ]),
          '',
        ].join('\n'),
      )
      agentCommands[name] = [
        'ip',
        'netns',
        'exec',
        host.netns,
        process.execPath,
        vigil,
        'agent',
        '--config',
        config,
        '--mqtt-url',
        mqttUrl,
        '--hub-key',
        join(dir, 'hub.sqlite.pub.pem'),
      ]
      // The host's power, as its BMC sees it: on while any process lives in its namespace. Off (and
      // crash, which is the same to the network) must leave the host silent like dead hardware: the
      // namespace's kernel outlives its processes, and so do their sockets, which would go on
      // sending what the dead agent had written once its link is back. So its output is
      // dropped first, every process killed (until none is left), and its sockets destroyed. Last,
      // its NIC goes down, as a powered-off machine's does: that also empties the neighbour table's
      // queues, where packets that passed the output filter before it existed wait for an ARP
      // answer (a host cut off has none); they would be sent once its link is back, after its fence
      // (seen in the chaos run: a dead agent's last heartbeat and "db running" arriving after the
      // fence). Power-on brings the NIC up, lets output out again and starts the agent.
      // Operations are serialised (flock).
      const power = join(dir, `${name}-power.sh`)
      const inNs = `ip netns exec ${host.netns}`
      writeFileSync(
        power,
        `#!/bin/sh
# One power operation at a time, as a BMC does: a status read or a power-on must not overlap the
# end of a power-off (its sockets not yet destroyed when output is let out again).
exec 9>>${join(dir, `${name}-power.lock`)}
flock 9
case "$1" in
  status) [ -n "$(ip netns pids ${host.netns})" ] && echo on || echo off ;;
  off|crash)
    ${inNs} iptables -C OUTPUT -j DROP 2>/dev/null || ${inNs} iptables -I OUTPUT 1 -j DROP
    for i in 1 2 3 4 5; do ip netns pids ${host.netns} | xargs -r kill -9; [ -z "$(ip netns pids ${host.netns})" ] && break; done
    ${inNs} ss -K -t >/dev/null 2>&1
    ip -n ${host.netns} link set eth0 down ;;
  on)
    [ -n "$(ip netns pids ${host.netns})" ] && exit 0
    ip -n ${host.netns} link set eth0 up
    while ${inNs} iptables -D OUTPUT -j DROP 2>/dev/null; do :; done
    setsid ${agentCommands[name].join(' ')} 9>&- </dev/null >>${join(dir, `${name}.log`)} 2>&1 & ;;
esac
`,
      )
      chmodSync(power, 0o755)
      const bmc = await startBmc({ hostCtl: power })
      state.pids[`bmc-${name}`] = bmc.daemon.pid
      state.lab.hosts[name].bmc = {
        host: bmc.host,
        port: bmc.port,
        username: bmc.username,
        passwordFile: bmc.passwordFile,
      }
      state.bmcDirs.push(bmc.dir)
      devices.push(
        `    - { id: bmc-${name}, driver: ipmi, hosts: { ${name}: [] }, config: { host: ${bmc.host}, port: ${bmc.port}, username: ${bmc.username}, passwordFile: ${bmc.passwordFile} } }`,
      )
      save()
    }
    writeFileSync(join(dir, 'hub.yaml'), ['fencing:', '  devices:', ...devices, ''].join('\n'))
    writeFileSync(
      join(dir, 'cluster.yaml'),
      [
        ...(values['max-fences']
          ? [`governor: { maxFences: ${Number(values['max-fences'])}, maxRestarts: 1000 }`]
          : []),
        ...(values['max-restarts'] ? [`defaults: { maxRestarts: ${Number(values['max-restarts'])} }`] : []),
        'nodes:',
        ...names.flatMap((n) => [`  - id: ${n}`, `    fencing: [{ devices: [bmc-${n}], timeoutMs: 10000 }]`]),
        'resources:',
        '  - id: web',
        `    preferred: { ${names[0]}: 10 }`,
        '  - id: db',
        `    preferred: { ${names.at(-1)}: 10 }`,
        '',
      ].join('\n'),
    )
    // Kept so that a chaos run can restart the hub exactly as it was started.
    state.hubArgv = [
      process.execPath,
      vigil,
      'hub',
      '--config',
      join(dir, 'hub.yaml'),
      '--cluster-file',
      join(dir, 'cluster.yaml'),
      '--db',
      join(dir, 'hub.sqlite'),
      '--listen',
      values.http,
      '--broker-listen',
      `${lab.hubIp}:${brokerPort}`,
    ]
    state.pids.hub = detached(state.hubArgv, join(dir, 'hub.log'))
    save()
    for (let i = 0; i < 100 && !existsSync(join(dir, 'hub.sqlite.pub.pem')); i++)
      await new Promise((r) => setTimeout(r, 100))
    for (const name of names)
      state.pids[`agent-${name}`] = detached(agentCommands[name], join(dir, `${name}.log`))
    save()
  } catch (err) {
    down()
    throw err
  }
  console.log(`Vigil lab up: ${names.length} hosts (${names.map((n) => `${n} ${lab.host(n).ip}`).join(', ')})
  Hub         http://${values.http}   (vigil status --hub http://${values.http}; vigil fence --hub ...)
  Metrics     http://${values.http}/metrics
  Files       ${dir}  (logs, configs, witness-web.log, witness-db.log: one line per 0.2 s from wherever each app runs)
Try:
  ${dir}/${names[0]}-power.sh crash      # crash ${names[0]}: fenced by its BMC, web moves
  ip -n ${state.lab.bridgeNs} link set p0 down                   # cut ${names[0]} off the network
Stop:  node scripts/lab.mjs down --dir ${values.dir}`)
}

function down() {
  if (!existsSync(stateFile)) {
    console.log('no lab is up')
    return
  }
  const state = JSON.parse(readFileSync(stateFile, 'utf8'))
  for (const pid of Object.values(state.pids)) {
    try {
      process.kill(-pid, 'SIGKILL') // detached: its own process group
    } catch {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone already
      }
    }
  }
  const quiet = (args) => {
    try {
      execFileSync('ip', args, { stdio: 'ignore' })
    } catch {
      // already gone
    }
  }
  for (const { netns } of Object.values(state.lab.hosts)) {
    try {
      for (const pid of execFileSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean))
        process.kill(Number(pid), 'SIGKILL')
    } catch {
      // no such namespace
    }
    quiet(['netns', 'del', netns])
  }
  quiet(['link', 'del', state.lab.hubLink])
  quiet(['netns', 'del', state.lab.bridgeNs])
  for (const d of state.bmcDirs) rmSync(d, { recursive: true, force: true })
  rmSync(dir, { recursive: true, force: true })
  console.log('Vigil lab down: processes stopped, namespaces removed')
}

if (positionals[0] === 'up') await up()
else if (positionals[0] === 'down') down()
else {
  console.error(
    'Usage: node scripts/lab.mjs up [--hosts 3] [--http 127.0.0.1:7570] [--dir .vigil-lab] | down [--dir .vigil-lab]',
  )
  process.exitCode = 2
}
