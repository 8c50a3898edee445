// The lab: several hosts on this machine, for a person to poke at, or for tests.
//   node scripts/lab.mjs up [--hosts 3] [--http 127.0.0.1:7570] [--dir .vigil-lab] [--no-vm] [--heartbeat-ms N] [--max-fences N] [--max-restarts N]
//                          [--hub-group 2|3]
//   node scripts/lab.mjs down [--dir .vigil-lab]
// up: every host is a network namespace on a bridge of its own; each runs a Vigil agent (peer mesh,
// shared-disk heartbeat and a check of the shared disk, reached through a FUSE view of its own,
// two witness applications, web and db) and has an IPMI BMC (OpenIPMI's ipmi_sim) whose
// power-off kills every process of its namespace and whose power-on starts its agent again. Unless
// --no-vm, each host also runs its own libvirtd (its own mount namespace), on which the guest vm1
// (QEMU under TCG, kernel and initramfs on the shared filesystem) is defined, so vm1 can run on any
// host and fail over; beside it, an application guest's inside (its app, guest-app, and Vigil's guest
// agent) runs for as long as vm1 lives on that host (scripts/lab-guest.mjs). guest-app is an HTTP
// service (scripts/demo-app.mjs web, on 127.0.0.1:7490 of the host vm1 runs on) with an HTTP check in
// the guest agent vouching for it, and ApplicationHA's ladder: restarted in the guest once, then vm1
// reset, then vm1 relocated (per step, --max-restarts if given). The hub runs here with
// its embedded broker on the lab bridge. Everything is left running, detached; the PIDs and names
// are written to <dir>/lab.json. down: stops them all by PID and removes the namespaces; nothing is
// left behind. Needs root (network namespaces).
// --hub-group N: instead of the one hub, a hub group (docs/ha.md) of N hubs, hub-a, hub-b, ..., each
// on a lab host of its own (a namespace on the bridge, not a workload host) with its embedded broker
// and its HTTP API on that host's address (the --http port), on an etcd cluster of 3 members
// (Debian's etcd-server, detached, on the lab bridge's address, data under <dir>/etcd). Every agent
// (and the guest agent) is connected to every broker and trusts every hub's key (hub-keys.pem); the
// BMCs listen on the bridge so that every hub reaches them. lab.json records each hub's argv, pid,
// address and URLs (`hubs`) and each etcd member's argv, data directory and pid (`etcd`), so that a
// chaos run can kill and restart them.
// Every power-off a host's BMC makes (a fence, or ipmitool's chassis power off) appends its time
// (ms since the epoch) to <host>-bmc-off.log: the chaos runner matches fences with their intents.
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
import {
  etcdAnswers,
  etcdClusterPlan,
  freePort,
  guestDomainXml,
  guestImage,
  NetnsLab,
  preparePeerLibvirt,
  startBmc,
} from '@vigil/testbed'

const { values, positionals } = parseArgs({
  options: {
    hosts: { type: 'string', default: '3' },
    http: { type: 'string', default: '127.0.0.1:7570' },
    dir: { type: 'string', default: '.vigil-lab' },
    /** No vm (and no guest application): no libvirtd, no QEMU. */
    'no-vm': { type: 'boolean', default: false },
    /** Agents' heartbeat interval (the agent's default is 250 ms). */
    'heartbeat-ms': { type: 'string' },
    /** The governor's fence budget per 10 minutes (default 3): raise it to crash hosts in a loop. */
    'max-fences': { type: 'string' },
    /**
     * Restarts in place tolerated per 10 minutes before the ladder relocates (default 3); for
     * guest-app, failures per step of its ladder (default 1).
     */
    'max-restarts': { type: 'string' },
    /** A hub group of this many hubs (2 or 3) on a 3-member etcd, instead of the one hub. */
    'hub-group': { type: 'string' },
  },
  allowPositionals: true,
})
const root = new URL('..', import.meta.url).pathname
const vigil = join(root, 'apps/cli/bin/vigil.js')
const dir = resolve(root, values.dir)
const stateFile = join(dir, 'lab.json')
/** The lab's applications: each copy appends "<host> <ns>" to witness-<app>.log every 0.2 s. */
const APPS = ['web', 'db']
/**
 * The lab's vm, its domain name on every host's libvirtd. Its witness is its console: each heartbeat
 * line (two a second) appends "<host> <ns>" to witness-vm1.log; its application guest-app's to
 * witness-guest-app.log every 0.2 s, like web and db.
 */
const VM = 'vm1'
const GUEST_APP = 'guest-app'
/** Where guest-app serves HTTP, on the loopback of the host vm1 runs on (each host has its own). */
const GUEST_APP_PORT = 7490
const LIBVIRT_PORT = 16509

/** Starts a detached process with its output in `log`; returns its PID. */
function detached(argv, log) {
  const fd = openSync(log, 'a')
  const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  child.unref()
  return child.pid
}

/** The hub group's etcd: 3 members, enough for a quorum with one of them down. */
const ETCD_MEMBERS = 3
/** Each hub's embedded broker, on its own lab host's address. */
const GROUP_BROKER_PORT = 1883

/** guest-app's argv as run on `host` (by guest-init.sh, and by the guest agent's process driver). */
const guestAppArgv = (host) => [
  process.execPath,
  join(root, 'scripts/demo-app.mjs'),
  'web',
  '--port',
  String(GUEST_APP_PORT),
  '--node',
  host,
  '--witness',
  join(dir, `witness-${GUEST_APP}.log`),
]

/** A host's log: the agent's is <host>.log, anything else's <host>-<what>.log. */
const logOf = (name, what) => join(dir, what === 'agent' ? `${name}.log` : `${name}-${what}.log`)

/** Waits for a host's libvirtd (its first answer can take a while under load), then defines vm1 there. */
async function defineVm(name, uri) {
  const virsh = (...args) => execFileSync('virsh', ['-c', uri, ...args], { stdio: 'pipe', timeout: 30_000 })
  for (let i = 0; ; i++) {
    try {
      virsh('version')
      break
    } catch (err) {
      if (i >= 300) throw new Error(`${name}'s libvirtd never answered (${logOf(name, 'libvirtd')}): ${err}`)
      await new Promise((r) => setTimeout(r, 200))
    }
  }
  virsh('define', join(dir, `${name}-${VM}.xml`))
}

async function up() {
  if (existsSync(stateFile))
    throw new Error(`a lab is already up (${stateFile}); run: node scripts/lab.mjs down`)
  mkdirSync(dir, { recursive: true })
  const names = Array.from({ length: Number(values.hosts) }, (_, i) => `host${i + 1}`)
  const withVm = !values['no-vm']
  const vmHome = names[1] ?? names[0]
  const hubCount = values['hub-group'] === undefined ? 0 : Number(values['hub-group'])
  if (values['hub-group'] !== undefined && !(hubCount >= 2 && hubCount <= 3))
    throw new Error(`--hub-group ${values['hub-group']}: a hub group has 2 or 3 hubs`)
  /** The hub group's hubs, each a lab host of its own (after the workload hosts on the bridge). */
  const hubNames = Array.from({ length: hubCount }, (_, i) => `hub-${String.fromCharCode(97 + i)}`)
  const grouped = hubCount > 0
  // The guest's kernel and initramfs, on the shared filesystem every host sees (built once).
  if (withVm) guestImage()
  const lab = NetnsLab.create([...names, ...hubNames])
  const state = { lab: { bridgeNs: lab.bridgeNs, hubLink: lab.hubLink, hosts: {} }, pids: {}, bmcDirs: [] }
  writeFileSync(stateFile, JSON.stringify(state, null, 2))
  const save = () => writeFileSync(stateFile, JSON.stringify(state, null, 2))
  try {
    const httpPort = Number(values.http.split(':').at(-1))
    if (grouped) {
      state.hubs = {}
      hubNames.forEach((hub, i) => {
        const h = lab.host(hub)
        state.hubs[hub] = {
          netns: h.netns,
          ip: h.ip,
          port: `p${names.length + i}`,
          http: `http://${h.ip}:${httpPort}`,
          mqtt: `mqtt://${h.ip}:${GROUP_BROKER_PORT}`,
          db: join(dir, `${hub}.sqlite`),
          log: join(dir, `${hub}.log`),
        }
      })
      // etcd first: it is up and has a leader by the time the hubs start.
      const etcdDir = join(dir, 'etcd')
      const members = (await etcdClusterPlan({ host: lab.hubIp, dir: etcdDir, size: ETCD_MEMBERS })).map(
        (m) => {
          mkdirSync(m.dataDir, { recursive: true })
          return { ...m, log: join(etcdDir, `${m.name}.log`) }
        },
      )
      state.etcd = { endpoints: members.map((m) => m.clientUrl), members }
      for (const m of members) state.pids[m.name] = detached(m.argv, m.log)
      save()
      for (let t = 0; !(await etcdAnswers(members[0].clientUrl)); t++) {
        if (t >= 150) throw new Error(`etcd never answered (${members.map((m) => m.log).join(', ')})`)
        await new Promise((r) => setTimeout(r, 200))
      }
    }
    const brokerPort = grouped ? GROUP_BROKER_PORT : await freePort('tcp')
    // Alone: the hub's broker, on the lab bridge. A group: every hub's (the agents use them all).
    const mqttUrl = grouped
      ? Object.values(state.hubs)
          .map((h) => h.mqtt)
          .join(',')
      : `mqtt://${lab.hubIp}:${brokerPort}`
    // The hub's public key, or every hub's in one file: agents run commands signed by any of them.
    const hubKey = join(dir, grouped ? 'hub-keys.pem' : 'hub.sqlite.pub.pem')
    // The shared disk: the disk heartbeat's device (sbd) and a file the disk check's probe reads.
    // Each host reaches it through a FUSE view of its own (bindfs, run outside the host, as a SAN
    // path or an NFS mount is): a SIGSTOP of that bindfs hangs, in the kernel, every I/O this host
    // makes on the shared disk, as a dead path does, and no other host's.
    const diskDir = join(dir, 'disk')
    mkdirSync(diskDir)
    writeFileSync(join(diskDir, 'sbd'), Buffer.alloc(512 * 32))
    writeFileSync(join(diskDir, 'probe.img'), Buffer.alloc(8192))
    state.disk = {}
    const devices = []
    /** Per host, what its power-on starts, in order: [what, argv] (each logs to logOf(host, what)). */
    const bootCommands = {}
    if (withVm) {
      // The guest's inside, as the lab runs it beside vm1 (see scripts/lab-guest.mjs): its init
      // starts the application, then the guest agent (node vm1: a guest application's node is its vm).
      // The application is scripts/demo-app.mjs web, one Node process (the pid its pidfile names
      // holds its port: killing it frees the port for a restart in place), writing its witness
      // lines (bench/chaos crashes it by its witness file, which names it alone).
      writeFileSync(
        join(dir, 'guest-init.sh'),
        [
          "# The guest's init (PID 1 of its namespace): $1 the host it runs on, $2 its run directory.",
          `setsid ${guestAppArgv('"$1"').join(' ')} </dev/null >/dev/null 2>&1 &`,
          `echo $! > "$2/${GUEST_APP}.pid"`,
          `${process.execPath} ${vigil} agent --config ${join(dir, 'guest-$1.yaml')} --mqtt-url ${mqttUrl} --hub-key ${hubKey} &`,
          'wait',
          '',
        ].join('\n'),
      )
    }
    for (const [i, name] of names.entries()) {
      const host = lab.host(name)
      // port: this host's end on the lab bridge (in bridgeNs): down is a partition of the host.
      state.lab.hosts[name] = { netns: host.netns, ip: host.ip, port: `p${i}` }
      const config = join(dir, `${name}.yaml`)
      const view = join(dir, `${name}-disk`)
      mkdirSync(view)
      state.disk[name] = { view, pid: detached(['bindfs', '-f', diskDir, view], logOf(name, 'bindfs')) }
      save()
      for (let t = 0; !existsSync(join(view, 'sbd')); t++) {
        if (t >= 100)
          throw new Error(`${name}'s view of the shared disk never mounted (${logOf(name, 'bindfs')})`)
        await new Promise((r) => setTimeout(r, 100))
      }
      const libvirt = withVm
        ? preparePeerLibvirt(join(dir, `${name}-libvirt`), {
            address: host.ip,
            port: LIBVIRT_PORT,
            qemuRunAsRoot: true,
          })
        : null
      writeFileSync(
        config,
        [
          `node: ${name}`,
          ...(values['heartbeat-ms'] ? [`heartbeat: { intervalMs: ${Number(values['heartbeat-ms'])} }`] : []),
          `diskHeartbeat: { path: '${join(view, 'sbd')}', slot: ${i}, slots: 32 }`,
          'peers:',
          `  listen: '${host.ip}:7480'`,
          '  mesh:',
          ...names.map((n) => `    - { node: ${n}, address: '${lab.host(n).ip}:7480' }`),
          'resources:',
          // Watched only (the cluster declares no shared-disk): a hung disk shows, and must cost nothing.
          '  - id: shared-disk',
          '    driver: disk',
          '    monitorIntervalMs: 1000',
          `    config: { path: '${view}', probe: { device: '${join(view, 'probe.img')}', timeoutMs: 1000 }, statfsTimeoutMs: 1000 }`,
          ...APPS.flatMap((app) => [
            `  - id: ${app}`,
            '    driver: process',
            '    config:',
            `      command: [sh, -c, 'while :; do echo "${name} $(date +%s%N)" >> ${join(dir, `witness-${app}.log`)}; sleep 0.2; done']`,
            `      pidfile: ${join(dir, `${name}-${app}.pid`)}`,
          ]),
          ...(withVm
            ? [
                `  - id: ${VM}`,
                '    driver: libvirt',
                '    config:',
                `      domain: ${VM}`,
                `      uri: '${libvirt?.uri}'`,
                // The lab's busybox guest ignores ACPI: a stop is a destroy.
                '      shutdownTimeoutMs: 0',
                `      guestHeartbeat: { file: '${join(dir, `${name}-${VM}-console.log`)}', pattern: 'vigil guest heartbeat' }`,
              ]
            : []),
          '',
        ].join('\n'),
      )
      const inHost = ['ip', 'netns', 'exec', host.netns]
      bootCommands[name] = []
      if (libvirt) {
        state.lab.hosts[name].libvirt = { uri: libvirt.uri, qemuPidFile: libvirt.qemuPidFile(VM) }
        writeFileSync(
          join(dir, `${name}-${VM}.xml`),
          guestDomainXml(VM, { console: join(dir, `${name}-${VM}-console.log`) }),
        )
        writeFileSync(
          join(dir, `guest-${name}.yaml`),
          [
            `node: ${VM}`,
            'role: guest',
            'resources:',
            `  - id: ${GUEST_APP}`,
            '    driver: process',
            `    config: { command: [${guestAppArgv(name)
              .map((arg) => JSON.stringify(arg))
              .join(', ')}], pidfile: ${join(dir, `${name}-guest`, `${GUEST_APP}.pid`)} }`,
            // ApplicationHA's app monitor: its process alive is not enough, it must answer. A restarted
            // copy has three probes (1-1.5 s) to listen before it can be failed again.
            `  - id: ${GUEST_APP}-http`,
            '    driver: check',
            `    vouchesFor: ${GUEST_APP}`,
            '    monitorIntervalMs: 500',
            `    config: { kind: http, url: 'http://127.0.0.1:${GUEST_APP_PORT}/', failuresBeforeCritical: 3, timeoutMs: 1000 }`,
            '',
          ].join('\n'),
        )
        bootCommands[name].push(['libvirtd', [...inHost, ...libvirt.command]])
        bootCommands[name].push([
          'guest',
          [
            ...inHost,
            process.execPath,
            join(root, 'scripts/lab-guest.mjs'),
            '--host',
            name,
            '--console',
            join(dir, `${name}-${VM}-console.log`),
            '--qemu-pidfile',
            libvirt.qemuPidFile(VM),
            '--witness',
            join(dir, `witness-${VM}.log`),
            '--run-dir',
            join(dir, `${name}-guest`),
            '--init',
            join(dir, 'guest-init.sh'),
            '--libvirt-uri',
            libvirt.uri,
            '--domain',
            VM,
          ],
        ])
      }
      bootCommands[name].push([
        'agent',
        [
          ...inHost,
          process.execPath,
          vigil,
          'agent',
          '--config',
          config,
          '--mqtt-url',
          mqttUrl,
          '--hub-key',
          hubKey,
        ],
      ])
      // The host's power, as its BMC sees it: on while any process lives in its namespace. Off (and
      // crash, which is the same to the network) must leave the host silent like dead hardware: the
      // namespace's kernel outlives its processes, and so do their sockets, which would go on
      // sending what the dead agent had written once its link is back. So its output is
      // dropped first, every process killed (until none is left), and its sockets destroyed. Last,
      // its NIC goes down, as a powered-off machine's does: that also empties the neighbour table's
      // queues, where packets that passed the output filter before it existed wait for an ARP
      // answer (a host cut off has none); they would be sent once its link is back, after its fence
      // (seen in the chaos run: a dead agent's last heartbeat and "db running" arriving after the
      // fence). Power-on brings the NIC up, lets output out again and starts what the host boots:
      // its libvirtd (which finds vm1 shut off: its QEMU died with the host), the guest stand-in and
      // the agent. The moment the host lost its power (its output dropped) goes to
      // <host>-power-lost.ms (ms since the epoch): a BMC takes a while to act on a power-off.
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
    [ "$1" = off ] && date +%s%3N >> ${join(dir, `${name}-bmc-off.log`)}
    date +%s%3N > ${join(dir, `${name}-power-lost.ms`)}
    for i in 1 2 3 4 5; do ip netns pids ${host.netns} | xargs -r kill -9; [ -z "$(ip netns pids ${host.netns})" ] && break; done
    ${inNs} ss -K -t >/dev/null 2>&1
    ip -n ${host.netns} link set eth0 down ;;
  on)
    [ -n "$(ip netns pids ${host.netns})" ] && exit 0
    ip -n ${host.netns} link set eth0 up
    while ${inNs} iptables -D OUTPUT -j DROP 2>/dev/null; do :; done
${bootCommands[name].map(([what, argv]) => `    setsid ${argv.join(' ')} 9>&- </dev/null >>${logOf(name, what)} 2>&1 &`).join('\n')} ;;
esac
`,
      )
      chmodSync(power, 0o755)
      // A group's hubs reach the BMCs from their own lab hosts: on the bridge, not on loopback.
      const bmc = await startBmc({ hostCtl: power, ...(grouped ? { listen: lab.hubIp } : {}) })
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
    // A lab host's crash kills every process of its namespace, which its BMC then reads as power
    // off: with the hub's power poll, a crash would be proven off by a reading now and then, and
    // fenced through the BMC otherwise. The lab (and the chaos runner's invariants) fence by the
    // BMC, every time; test/e2e/fence-live.test.ts shows the poll.
    const fencing = ['fencing:', '  powerPollMs: 0', '  devices:', ...devices]
    if (!grouped) writeFileSync(join(dir, 'hub.yaml'), [...fencing, ''].join('\n'))
    // A group's hubs: the same fence devices, a name each, the group's etcd (lease 2 s, as
    // test/e2e/hub-group.test.ts and bench/hub-group).
    for (const hub of hubNames)
      writeFileSync(
        join(dir, `${hub}.yaml`),
        [
          `name: ${hub}`,
          `group: { endpoints: [${state.etcd.endpoints.join(', ')}], leaseTtlSeconds: 2, pollMs: 100 }`,
          ...fencing,
          '',
        ].join('\n'),
      )
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
        ...(withVm
          ? [
              `  - id: ${VM}`,
              '    kind: vm',
              `    preferred: { ${vmHome}: 10 }`,
              `  - id: ${GUEST_APP}`,
              '    kind: guest-app',
              `    vm: ${VM}`,
              // ApplicationHA: restart it in the guest, then reset its vm, then relocate the vm.
              // (The lab's busybox guest ignores ACPI, so no reboot-vm step.)
              `    policy: { maxRestarts: ${Number(values['max-restarts'] ?? 1)}, ladder: [restart, reset-vm, relocate] }`,
            ]
          : []),
        '',
      ].join('\n'),
    )
    // Kept so that a chaos run can restart the hub exactly as it was started.
    if (!grouped)
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
    // Each hub of a group on its own lab host, its API and broker on that host's address.
    for (const hub of hubNames) {
      const h = state.hubs[hub]
      h.argv = [
        ...lab.host(hub).exec([]),
        process.execPath,
        vigil,
        'hub',
        '--config',
        join(dir, `${hub}.yaml`),
        '--cluster-file',
        join(dir, 'cluster.yaml'),
        '--db',
        h.db,
        '--listen',
        `${h.ip}:${httpPort}`,
        '--broker-listen',
        `${h.ip}:${GROUP_BROKER_PORT}`,
      ]
    }
    // Each host's libvirtd first, with vm1 defined on it, so that agents find the domain.
    for (const name of names)
      for (const [what, argv] of bootCommands[name].filter(([what]) => what === 'libvirtd'))
        state.pids[`${what}-${name}`] = detached(argv, logOf(name, what))
    save()
    if (withVm) await Promise.all(names.map((name) => defineVm(name, state.lab.hosts[name].libvirt.uri)))
    if (!grouped) {
      state.pids.hub = detached(state.hubArgv, join(dir, 'hub.log'))
      save()
      for (let i = 0; i < 100 && !existsSync(join(dir, 'hub.sqlite.pub.pem')); i++)
        await new Promise((r) => setTimeout(r, 100))
    } else {
      for (const hub of hubNames) state.pids[hub] = detached(state.hubs[hub].argv, state.hubs[hub].log)
      save()
      // Each hub makes its signing key at its first start; the agents trust them all.
      const pems = hubNames.map((hub) => `${state.hubs[hub].db}.pub.pem`)
      for (let i = 0; !pems.every((f) => existsSync(f)); i++) {
        if (i >= 600)
          throw new Error(
            `a hub never made its key:\n${hubNames.map((h) => `${h}: ${readFileSync(state.hubs[h].log, 'utf8').slice(-1500)}`).join('\n')}`,
          )
        await new Promise((r) => setTimeout(r, 100))
      }
      writeFileSync(hubKey, pems.map((f) => readFileSync(f, 'utf8')).join(''))
    }
    for (const name of names)
      for (const [what, argv] of bootCommands[name].filter(([what]) => what !== 'libvirtd'))
        state.pids[`${what}-${name}`] = detached(argv, logOf(name, what))
    save()
  } catch (err) {
    down()
    throw err
  }
  const hubLines = grouped
    ? `  Hubs        ${hubNames.map((h) => `${h} ${state.hubs[h].http}`).join(', ')}   (vigil status --hub ${state.hubs[hubNames[0]].http}: names the leader)
  etcd        ${state.etcd.endpoints.join(', ')}
`
    : `  Hub         http://${values.http}   (vigil status --hub http://${values.http}; vigil fence --hub ...)
  Metrics     http://${values.http}/metrics
`
  console.log(`Vigil lab up: ${names.length} hosts (${names.map((n) => `${n} ${lab.host(n).ip}`).join(', ')})
${hubLines}  Files       ${dir}  (logs, configs, witness-<app>.log: one line per 0.2 s from wherever each app runs${withVm ? `; witness-${VM}.log: one per guest heartbeat, half a second apart` : ''})${
    withVm
      ? `
  vm          ${VM} (QEMU, TCG) prefers ${vmHome}; ${GUEST_APP} runs inside it; virsh -c ${state.lab.hosts[vmHome].libvirt.uri} list`
      : ''
  }
Try:
  ${dir}/${names[0]}-power.sh crash      # crash ${names[0]}: fenced by its BMC, web moves
  ip -n ${state.lab.bridgeNs} link set p0 down                   # cut ${names[0]} off the network
  kill -STOP ${state.disk[names[0]].pid}                                    # hang ${names[0]}'s shared disk (kill -CONT to end it)
Stop:  node scripts/lab.mjs down --dir ${values.dir}`)
}

function down() {
  if (!existsSync(stateFile)) {
    console.log('no lab is up')
    return
  }
  const state = JSON.parse(readFileSync(stateFile, 'utf8'))
  // The shared disk's views first: a stopped bindfs would hang whatever touches its view.
  for (const { view, pid } of Object.values(state.disk ?? {})) {
    try {
      process.kill(pid, 'SIGCONT')
    } catch {
      // gone already
    }
    try {
      execFileSync('umount', ['-l', view], { stdio: 'ignore' })
    } catch {
      // never mounted
    }
    try {
      process.kill(-pid, 'SIGKILL')
    } catch {
      // gone already
    }
  }
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
  for (const { netns } of [...Object.values(state.lab.hosts), ...Object.values(state.hubs ?? {})]) {
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
    'Usage: node scripts/lab.mjs up [--hosts 3] [--http 127.0.0.1:7570] [--dir .vigil-lab] [--hub-group 2|3] | down [--dir .vigil-lab]',
  )
  process.exitCode = 2
}
