import WebSocket from 'ws'
import { eventually } from './eventually.js'

/** A live feed client that keeps every message it receives. */
export async function connectLive(
  url: string,
): Promise<{ messages: Record<string, unknown>[]; close(): void }> {
  const messages: Record<string, unknown>[] = []
  const ws = new WebSocket(url)
  ws.on('message', (data) => messages.push(JSON.parse(String(data)) as Record<string, unknown>))
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  await eventually('live feed hello', () => messages.find((m) => m.type === 'hello'))
  return { messages, close: () => ws.close() }
}
