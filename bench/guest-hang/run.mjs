#!/usr/bin/env node
// bench/guest-hang: time from a guest hanging to its vm reset, on the real chain. Not a test: prints
// JSON and a table.
//
//   node bench/guest-hang/run.mjs [--runs 20] [--acceptable-pause-ms N]
//
// --acceptable-pause-ms sets the cluster's detection.guest.acceptablePauseMs (the rest of the
// guest detector keeps its defaults) to compare detection profiles.
//
// One QEMU (TCG) guest booted from scripts/guest-image.sh (its init writes a heartbeat line to
// its serial console twice a second) under the machine's libvirtd, managed by a real agent (libvirt
// driver with guestHeartbeat) and a real hub. Each run: `virsh inject-nmi` panics the guest's
// kernel, which then hangs (panic=0): libvirt still says running. Measured from the NMI: the
// engine's "guest heartbeat stalled" decision, the reset done (the agent's answer recorded), and
// the guest's first heartbeat line after the reset (its boot under TCG). The NMI lands at a random
// moment between two heartbeat lines. Then the next run waits
// until the engine follows the new heartbeats again.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startLibvirt } from '@vigil/testbed'
import { freePort, markdownTable, median, quantile, sleep, until } from '../lib.mjs'

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '20' }, 'acceptable-pause-ms': { type: 'string' } },
})
const runs = Number(values.runs)
const root = join(import.meta.dirname, '..', '..')
const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-guest-hang-'))
const vigil = join(root, 'apps/cli/bin/vigil.js')

const libvirt = await startLibvirt()
process.once('SIGINT', () => void stopAll().then(() => process.exit(130)))
process.once('SIGTERM', () => void stopAll().then(() => process.exit(143)))
const children = []
const stopAll = async () => {
  for (const c of children.reverse()) c.kill('SIGTERM')
  await sleep(500)
  await libvirt.stop()
  rmSync(dir, { recursive: true, force: true })
}
try {
  const guest = await libvirt.defineGuest({ os: true })
  const consoleFile = libvirt.consoleLog(guest)
  const beats = () =>
    existsSync(consoleFile)
      ? (readFileSync(consoleFile, 'utf8').match(/vigil guest heartbeat/g)?.length ?? 0)
      : 0
  const http = `127.0.0.1:${await freePort()}`
  const mqtt = `127.0.0.1:${await freePort()}`
  const pause = values['acceptable-pause-ms']
  writeFileSync(
    join(dir, 'cluster.yaml'),
    `${pause ? `detection: { guest: { acceptablePauseMs: ${Number(pause)} } }\n` : ''}nodes:\n  - id: node-a\nresources:\n  - id: vm1\n    kind: vm\n`,
  )
  writeFileSync(
    join(dir, 'node-a.yaml'),
    [
      'node: node-a',
      'resources:',
      '  - id: vm1',
      '    driver: libvirt',
      '    config:',
      `      domain: ${guest}`,
      '      shutdownTimeoutMs: 0',
      '      guestHeartbeat:',
      `        file: ${consoleFile}`,
      '        pattern: vigil guest heartbeat',
      '',
    ].join('\n'),
  )
  const start = (args) => {
    const c = spawn(process.execPath, [vigil, ...args], { cwd: dir, stdio: 'ignore' })
    children.push(c)
  }
  start([
    'hub',
    '--listen',
    http,
    '--broker-listen',
    mqtt,
    '--db',
    join(dir, 'hub.sqlite'),
    '--cluster-file',
    'cluster.yaml',
  ])
  await until('hub', () =>
    fetch(`http://${http}/api/nodes`).then(
      (r) => r.ok,
      () => false,
    ),
  )
  start([
    'agent',
    '--config',
    'node-a.yaml',
    '--mqtt-url',
    `mqtt://${mqtt}`,
    '--hub-key',
    join(dir, 'hub.sqlite.pub.pem'),
  ])
  const decisions = async () =>
    (await (await fetch(`http://${http}/api/decisions?resource=vm1&limit=1000`)).json()).decisions
  const followed = async () =>
    /vigil_guest_heartbeat_phi\{[^}]*resource="vm1"/.test(
      await (await fetch(`http://${http}/metrics`)).text(),
    )

  const results = []
  const seen = new Set()
  for (let run = 1; run <= runs; run++) {
    // Beating, and the engine's guest detector armed (it re-arms with the first beat after a reset).
    const before = beats()
    await until(
      'the guest beating and followed',
      async () => beats() >= before + 3 && (await followed()),
      120_000,
    )
    for (const d of await decisions()) seen.add(d.id)
    // A guest hangs at any moment between two beats; without this the NMI would follow the beat
    // the loop above just saw, every time (the worst phase).
    await sleep(Math.random() * 500)
    const hungBeats = beats()
    const t0 = Date.now()
    await libvirt.virsh(['inject-nmi', guest])
    const stalled = await until('guest hung decision', async () =>
      (await decisions()).find((d) => !seen.has(d.id) && /^guest heartbeat stalled/.test(d.summary)),
    )
    const reset = await until('reset done', async () =>
      (await decisions()).find((d) => !seen.has(d.id) && /reset-vm on node-a succeeded/.test(d.summary)),
    )
    await until('beating again', () => beats() > hungBeats, 120_000)
    const beatingMs = Date.now() - t0
    // Each hang counts against the vm's restart budget (3 in 10 min, then the ladder's next step):
    // an operator's cleanup between runs, so that every run measures the first step, a reset.
    await fetch(`http://${http}/api/resources/vm1/cleanup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ by: 'bench' }),
    })
    const r = { run, detectedMs: stalled.at - t0, resetDoneMs: reset.at - t0, beatingAgainMs: beatingMs }
    results.push(r)
    console.error(JSON.stringify(r))
  }
  const keys = ['detectedMs', 'resetDoneMs', 'beatingAgainMs']
  const summary = Object.fromEntries(
    keys.map((k) => {
      const xs = results.map((r) => r[k])
      return [k, { min: Math.min(...xs), median: median(xs), p99: quantile(xs, 0.99), max: Math.max(...xs) }]
    }),
  )
  console.log(
    JSON.stringify(
      { benchmark: 'guest-hang', when: new Date().toISOString(), runs: results, summary },
      null,
      2,
    ),
  )
  console.log()
  console.log(
    markdownTable(
      keys.map((k) => ({ phase: k, runs: results.length, ...summary[k] })),
      ['phase', 'runs', 'min', 'median', 'p99', 'max'],
    ),
  )
} finally {
  await stopAll()
}
