// Load generator: simulates `count` agents (one MQTT connection each) starting at index `first`,
// each publishing heartbeats every `intervalMs` and an observation batch every `obsEveryMs`.
// Runs until SIGTERM; prints one JSON line with what it published.
import mqtt from 'mqtt'

const [url, first, count, intervalMs, obsEveryMs, cluster] = process.argv.slice(2)
const n = Number(count)
const interval = Number(intervalMs)
const clients = []
let published = 0
let obsPublished = 0
const incarnation = Date.now()

function agentLoop(client, node) {
  let seq = 0
  let obsSeq = 0
  const hbTopic = `vigil/v1/${cluster}/node/${node}/hb`
  const obsTopic = `vigil/v1/${cluster}/node/${node}/obs`
  // Spread agents evenly over the interval so the load is smooth, as real agents' phases are.
  setTimeout(() => {
    setInterval(() => {
      if (!client.connected) return
      const now = Date.now()
      client.publish(
        hbTopic,
        JSON.stringify({
          v: 1,
          node,
          incarnation,
          seq: seq++,
          sentMono: performance.now(),
          sentAt: now,
          intervalMs: interval,
        }),
        { qos: 0 },
      )
      published++
    }, interval)
    setInterval(() => {
      if (!client.connected) return
      const observations = ['nginx', 'postgres', 'root-fs', 'eth0', 'vm-1'].map((target, i) => ({
        driver: ['process', 'process', 'disk', 'nic', 'libvirt'][i],
        target,
        state: 'running',
        metrics: { value: Math.random() },
      }))
      client.publish(
        obsTopic,
        JSON.stringify({ v: 1, node, incarnation, seq: obsSeq++, at: Date.now(), observations }),
        { qos: 0 },
      )
      obsPublished++
    }, Number(obsEveryMs))
  }, Math.random() * interval)
}

// Connection setup is paced by the broker's answers: at most MAX_CONNECTING connections of this
// process wait for their CONNACK at a time. Opened blindly (they were 100 every 50 ms), thousands
// of connections overflowed the broker's listen queue while it was busy: the kernel dropped their
// SYNs, each retried after 1, 3, 7, 15 s..., and a connection not answered within mqtt.js's 30 s
// connect timeout started over, so 10,000 agents took minutes to come up (issue #21). A connection
// that fails counts as answered; mqtt.js retries it on its own, every reconnectPeriod.
const MAX_CONNECTING = 100
let connecting = 0
let slotFreed = () => {}
for (let i = 0; i < n; i++) {
  while (connecting >= MAX_CONNECTING) await new Promise((r) => (slotFreed = r))
  const node = `bench-${Number(first) + i}`
  const client = mqtt.connect(url, {
    clientId: `bench-${node}`,
    clean: true,
    keepalive: 30,
    reconnectPeriod: 1000,
  })
  clients.push(client)
  connecting++
  let answered = false
  const answer = () => {
    if (answered) return
    answered = true
    connecting--
    slotFreed()
  }
  client.once('connect', answer)
  client.once('close', answer)
  client.once('connect', () => agentLoop(client, node))
}

process.on('SIGTERM', () => {
  console.log(
    JSON.stringify({
      first: Number(first),
      count: n,
      heartbeats: published,
      observationBatches: obsPublished,
    }),
  )
  for (const c of clients) c.end(true)
  process.exit(0)
})
