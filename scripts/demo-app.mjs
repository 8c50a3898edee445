// The demo's workload, two small programs the demo's agents supervise (the `process` driver):
//   node scripts/demo-app.mjs web --port 7481 --node demo-a [--witness FILE]
//     an HTTP service that answers who serves it and since when (SIGUSR1: it stops answering, its
//     process alive); with --witness, it appends "<node> <ns since the epoch>" to FILE every 0.2 s
//     for as long as its process lives (the lab's witness format: scripts/lab.mjs);
//   node scripts/demo-app.mjs report --url http://127.0.0.1:7481 --out .vigil-demo/report.log
//     a consumer that depends on it: it asks web once a second and appends the answer.
import { appendFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { parseArgs } from 'node:util'

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    port: { type: 'string', default: '7481' },
    node: { type: 'string', default: 'demo' },
    url: { type: 'string', default: 'http://127.0.0.1:7481' },
    out: { type: 'string' },
    witness: { type: 'string' },
  },
})
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0))

const since = new Date().toISOString()
if (positionals[0] === 'web') {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(`web on ${values.node}, pid ${process.pid}, up since ${since}\n`)
  }).listen(Number(values.port), '127.0.0.1')
  // Where it runs, from the moment it serves and for as long as its process lives (hung or not):
  // what a witness of it sees. A copy that cannot listen (its port taken) dies before its first line.
  const { witness } = values
  if (witness)
    server.once('listening', () => {
      const beat = () => appendFileSync(witness, `${values.node} ${BigInt(Date.now()) * 1_000_000n}\n`)
      beat()
      setInterval(beat, 200)
    })
  // SIGUSR1: the service stops answering while its process lives on (a hung application, which
  // only a check of what it serves can tell).
  process.on('SIGUSR1', () => {
    server.close()
    server.closeAllConnections()
    setInterval(() => {}, 60_000) // alive, serving nothing
  })
} else if (positionals[0] === 'report') {
  setInterval(async () => {
    const line = await fetch(values.url)
      .then((r) => r.text())
      .catch((err) => `no answer: ${err.cause?.code ?? err.message}\n`)
    if (values.out) appendFileSync(values.out, `${new Date().toISOString()} ${line}`)
  }, 1000)
} else {
  console.error('usage: demo-app.mjs web|report [options]')
  process.exit(2)
}
