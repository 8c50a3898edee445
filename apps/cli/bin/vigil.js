#!/usr/bin/env node
import { main } from '../dist/main.js'

// Once a command has its exit code nothing is left to do: a handle some library left open must
// not keep a failed `vigil hub` alive (a process check would call it up, and nothing restarts it).
const exitSoon = (code) => {
  process.exitCode = code
  setTimeout(() => process.exit(code), 200).unref()
}
main(process.argv.slice(2)).then(exitSoon, (err) => {
  console.error(`vigil: ${err?.message ?? err}`)
  exitSoon(1)
})
