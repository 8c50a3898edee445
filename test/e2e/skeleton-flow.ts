import { expect } from 'vitest'
import { eventually } from '../harness/eventually.js'
import type { HubProcess } from '../harness/hub.js'
import { connectLive } from '../harness/live.js'
import { runVigil, type VigilProcess } from '../harness/processes.js'

interface NodeView {
  id: string
  state: string
  incarnation: number | null
  facts: { filesystems: { mount: string }[]; interfaces: { name: string }[] } | null
}

/**
 * The walking skeleton's end-to-end flow, run against any broker: two agents as separate
 * processes; API and `vigil status` show both with facts; a ping round-trips; SIGKILL of one
 * agent makes the hub mark it lost; a restart brings it back with a new incarnation.
 */
export async function skeletonFlow(
  hub: HubProcess,
  startAgent: (node: string) => VigilProcess,
): Promise<void> {
  const live = await connectLive(hub.liveUrl)
  const a = startAgent('node-a')
  let b = startAgent('node-b')
  try {
    const nodes = async () => (await hub.api<{ nodes: NodeView[] }>('/api/nodes')).body.nodes
    const node = async (id: string) => (await nodes()).find((n) => n.id === id)

    // Both nodes online with their facts.
    await eventually('both agents online with facts', async () => {
      const list = await nodes()
      return list.length === 2 && list.every((n) => n.state === 'online' && n.facts !== null)
    })
    for (const n of await nodes()) {
      expect(n.facts?.filesystems.some((f) => f.mount === '/')).toBe(true)
      expect(n.facts?.interfaces.some((i) => i.name === 'lo')).toBe(true)
    }

    // `vigil status` shows both, with filesystems and interfaces.
    const status = await runVigil(['status', '--hub', hub.httpUrl])
    expect(status.code).toBe(0)
    expect(status.stdout).toMatch(/node-a\s+ONLINE/)
    expect(status.stdout).toMatch(/node-b\s+ONLINE/)
    expect(status.stdout).toContain('node-a: filesystems')
    expect(status.stdout).toContain('node-b: interfaces')
    expect(status.stdout).toMatch(/^\s+lo\s+/m)

    // A ping command round-trips through the broker and the agent, and is recorded.
    const ping = await runVigil(['ping', 'node-a', '--hub', hub.httpUrl, '--json'])
    expect(ping.code).toBe(0)
    const pong = JSON.parse(ping.stdout) as { id: string; status: string; result: { pong: boolean } }
    expect(pong).toMatchObject({ status: 'ok', result: { pong: true } })
    const recorded = await hub.api<{ status: string; node: string }>(`/api/commands/${pong.id}`)
    expect(recorded.body).toMatchObject({ status: 'ok', node: 'node-a' })
    await a.waitForLog(
      'agent accepted the ping',
      (l) => l.msg === 'command accepted' && l.command === pong.id,
    )

    // SIGKILL: the hub marks the node lost; the other node is untouched.
    const firstIncarnation = (await node('node-b'))?.incarnation
    b.kill('SIGKILL')
    await b.exited
    await eventually('node-b lost', async () => (await node('node-b'))?.state === 'lost')
    // The other node is untouched (a stalled machine may make it briefly suspect, never lost).
    await eventually('node-a online', async () => (await node('node-a'))?.state === 'online')
    await eventually('live feed reports node-b lost', () =>
      live.messages.find(
        (m) =>
          m.type === 'node.state' &&
          (m.change as { node: string; to: string }).node === 'node-b' &&
          (m.change as { to: string }).to === 'lost',
      ),
    )
    const lostPing = await runVigil(['ping', 'node-b', '--hub', hub.httpUrl])
    expect(lostPing.code).toBe(1)

    // Restart: back online with a new incarnation, and the restart is in the event log.
    b = startAgent('node-b')
    await eventually('node-b back online', async () => {
      const n = await node('node-b')
      return n?.state === 'online' && n.incarnation !== firstIncarnation
    })
    expect((await node('node-b'))?.incarnation).toBeGreaterThan(firstIncarnation ?? Number.POSITIVE_INFINITY)
    const events = (await hub.api<{ events: { kind: string; node: string }[] }>('/api/events?node=node-b'))
      .body.events
    expect(events.map((e) => e.kind)).toContain('node.restarted')
    expect((await runVigil(['ping', 'node-b', '--hub', hub.httpUrl])).code).toBe(0)

    // A clean stop is announced: offline, not lost.
    await a.stop()
    await eventually(
      'node-a offline after a clean stop',
      async () => (await node('node-a'))?.state === 'offline',
    )
  } finally {
    live.close()
    await Promise.all([a.stop(), b.stop()])
  }
}
