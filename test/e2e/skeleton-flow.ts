import { expect } from 'vitest'
import { eventually } from '../harness/eventually.js'
import type { HubProcess } from '../harness/hub.js'
import { connectLive } from '../harness/live.js'
import { runVigil, type VigilProcess } from '../harness/processes.js'

interface NodeView {
  id: string
  /** The engine's classification (observe mode here: no cluster file). */
  state: string
  shutdownAt: number | null
  incarnation: number | null
  facts: { filesystems: { mount: string }[]; interfaces: { name: string }[] } | null
}

/**
 * The walking skeleton's end-to-end flow, run against any broker: two agents as separate
 * processes; API and `vigil status` show both healthy with facts; a ping round-trips; SIGKILL of
 * one agent makes the engine judge it dead (an event, on the live feed too); a restart brings it
 * back with a new incarnation; a clean stop is shown as the agent's word beside the engine's state.
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

    // Both nodes healthy with their facts.
    await eventually('both agents healthy with facts', async () => {
      const list = await nodes()
      return list.length === 2 && list.every((n) => n.state === 'healthy' && n.facts !== null)
    })
    for (const n of await nodes()) {
      expect(n.facts?.filesystems.some((f) => f.mount === '/')).toBe(true)
      expect(n.facts?.interfaces.some((i) => i.name === 'lo')).toBe(true)
    }

    // `vigil status` shows both, with filesystems and interfaces.
    const status = await runVigil(['status', '--hub', hub.httpUrl])
    expect(status.code).toBe(0)
    expect(status.stdout).toMatch(/node-a\s+HEALTHY/)
    expect(status.stdout).toMatch(/node-b\s+HEALTHY/)
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

    // SIGKILL: the engine judges the node dead; the other node is untouched.
    const firstIncarnation = (await node('node-b'))?.incarnation
    b.kill('SIGKILL')
    await b.exited
    await eventually('node-b dead', async () => (await node('node-b'))?.state === 'dead')
    expect((await node('node-b'))?.shutdownAt).toBeNull() // killed: no word from its agent
    // The other node is untouched (a stalled machine may make it briefly suspect, never dead).
    await eventually('node-a healthy', async () => (await node('node-a'))?.state === 'healthy')
    // The change is an event, on the live feed as it happens, and the node's new state with it.
    await eventually('live feed reports node-b dead', () =>
      live.messages.find((m) => {
        const e = m.event as { kind: string; node: string; attrs: { to: string } } | undefined
        return (
          m.type === 'event' && e?.kind === 'node.condition' && e.node === 'node-b' && e.attrs.to === 'dead'
        )
      }),
    )
    await eventually('live feed shows node-b dead', () =>
      live.messages.find(
        (m) =>
          m.type === 'node' && (m.node as NodeView).id === 'node-b' && (m.node as NodeView).state === 'dead',
      ),
    )
    const lostPing = await runVigil(['ping', 'node-b', '--hub', hub.httpUrl])
    expect(lostPing.code).toBe(1)

    // Restart: healthy again with a new incarnation, and the restart is in the event log.
    b = startAgent('node-b')
    await eventually('node-b healthy again', async () => {
      const n = await node('node-b')
      return n?.state === 'healthy' && n.incarnation !== firstIncarnation
    })
    expect((await node('node-b'))?.incarnation).toBeGreaterThan(firstIncarnation ?? Number.POSITIVE_INFINITY)
    const events = (await hub.api<{ events: { kind: string; node: string }[] }>('/api/events?node=node-b'))
      .body.events
    expect(events.map((e) => e.kind)).toEqual(expect.arrayContaining(['node.restarted', 'node.condition']))
    expect((await runVigil(['ping', 'node-b', '--hub', hub.httpUrl])).code).toBe(0)

    // A clean stop is announced: the agent's word, shown as such. With no cluster file the engine
    // observes only the nodes that run, so it no longer judges node-a (not dead: unknown).
    await a.stop()
    const stopped = await eventually('node-a shut down after a clean stop', async () => {
      const n = await node('node-a')
      return n?.shutdownAt !== null && n?.state === 'unknown' ? n : undefined
    })
    expect(stopped.shutdownAt).toBeGreaterThan(0)
    const stoppedEvents = (await hub.api<{ events: { kind: string }[] }>('/api/events?node=node-a')).body
      .events
    expect(stoppedEvents.map((e) => e.kind)).toContain('node.shutdown')
    const after = await runVigil(['status', '--brief', '--hub', hub.httpUrl])
    expect(after.stdout).toMatch(/node-a\s+UNKNOWN \(agent shut down\)/)
    expect(after.stdout).toMatch(/node-b\s+HEALTHY/)
  } finally {
    live.close()
    await Promise.all([a.stop(), b.stop()])
  }
}
