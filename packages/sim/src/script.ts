/**
 * A fault script: one event per line, `<seconds> <verb> <args...>`, `#` starts a comment.
 *
 *   power-off N | power-on N | crash N | agent-kill N | agent-start N
 *   agent-stop N [host] (a clean stop that says so: of the agent alone, or with its host's shutdown)
 *   partition N hub | partition N all | partition N M | heal N [hub|all|M] | loss N <percent>
 *   delay N <ms> [<jitter-ms>] (each heartbeat from N reaches the hub that late; `delay N 0` ends it)
 *   disk-hang N | disk-ok N
 *   app-crash R [N] | app-stop R [N] | guest-hang VM | guest-resume VM | vm-pause VM | vm-resume VM
 *   vm-suspend VM (an operator's suspend outside Vigil) | resource-suspend VM | resource-resume VM
 *   vm-migrate-outside VM FROM TO (an administrator's live migration with the hypervisor's tools)
 *   guest-boot-hang VM | guest-boot-ok VM (its next boots hang before the guest agent starts, or not)
 *   monitor-stall VM | monitor-ok VM (its host's monitor of it stops answering: no beat read, its
 *     answer ages; the guest itself may still run)
 *   device D ok|unreachable|lying|auth-fail
 *   move R N <seconds> | migrate R N <seconds> | maintenance node|resource|cluster [ID] on|off [<seconds>] | cleanup R | ack-fence N | fence N
 *   evacuate N | ping N <reachable targets> | nic-degrade N [slave] | nic-ok N
 *   hub-restart <seconds-down> [<state-age-seconds>] | stop-fail R
 *   start-fail R N [transient] (its start and restart there fail: with a local error, this node
 *     cannot run it; or a transient one)
 *   hub-takeover <lease-seconds> [<state-age-seconds>] | hub-pause <seconds>
 *   migrate-fail R (its next live migration fails halfway: it stays on the source)
 *     (state age: the hub resumes from the state it persisted that long before it went down; the
 *     hub saves every 2 s and before any action, so a step that only reclassified can be lost)
 *   end
 */
export interface ScriptEvent {
  at: number
  verb: string
  args: string[]
  line: number
}

const VERBS: Record<string, [min: number, max: number]> = {
  'power-off': [1, 1],
  'power-on': [1, 1],
  crash: [1, 1],
  'agent-kill': [1, 1],
  'agent-start': [1, 1],
  'agent-stop': [1, 2],
  partition: [2, 2],
  heal: [1, 2],
  loss: [2, 2],
  delay: [2, 3],
  'disk-hang': [1, 1],
  'disk-ok': [1, 1],
  'app-crash': [1, 2],
  'app-stop': [1, 2],
  'guest-hang': [1, 1],
  'guest-resume': [1, 1],
  'guest-boot-hang': [1, 1],
  'guest-boot-ok': [1, 1],
  'monitor-stall': [1, 1],
  'monitor-ok': [1, 1],
  'vm-pause': [1, 1],
  'vm-resume': [1, 1],
  'vm-suspend': [1, 1],
  'vm-migrate-outside': [3, 3],
  'resource-suspend': [1, 1],
  'resource-resume': [1, 1],
  device: [2, 2],
  move: [3, 3],
  migrate: [3, 3],
  maintenance: [2, 4],
  cleanup: [1, 1],
  'resource-stop': [1, 1],
  'resource-start': [1, 1],
  'ack-fence': [1, 1],
  fence: [1, 1],
  evacuate: [1, 1],
  ping: [2, 2],
  'nic-degrade': [1, 2],
  'nic-ok': [1, 1],
  'hub-restart': [1, 2],
  'hub-takeover': [1, 2],
  'hub-pause': [1, 1],
  'stop-fail': [1, 1],
  'start-fail': [2, 3],
  'migrate-fail': [1, 1],
  end: [0, 0],
}

export function parseScript(text: string, file = 'script'): ScriptEvent[] {
  const events: ScriptEvent[] = []
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim()
    if (!line) return
    const [time, verb, ...args] = line.split(/\s+/)
    const at = Number(time)
    if (!Number.isFinite(at) || at < 0)
      throw new Error(`${file}:${i + 1}: "${time}" is not a time in seconds`)
    const arity = verb ? VERBS[verb] : undefined
    if (!verb || !arity) throw new Error(`${file}:${i + 1}: unknown verb "${verb ?? ''}"`)
    if (args.length < arity[0] || args.length > arity[1]) {
      throw new Error(
        `${file}:${i + 1}: "${verb}" takes ${arity[0] === arity[1] ? arity[0] : `${arity[0]}-${arity[1]}`} arguments`,
      )
    }
    if (verb === 'hub-restart' || verb === 'hub-takeover' || verb === 'hub-pause')
      for (const a of args)
        if (!(Number(a) >= 0)) throw new Error(`${file}:${i + 1}: ${verb}: "${a}" is not a number of seconds`)
    if (verb === 'start-fail' && args[2] !== undefined && args[2] !== 'transient')
      throw new Error(
        `${file}:${i + 1}: start-fail: "${args[2]}" is not "transient" or nothing (a local error)`,
      )
    if (verb === 'agent-stop' && args[1] !== undefined && args[1] !== 'host')
      throw new Error(
        `${file}:${i + 1}: agent-stop: "${args[1]}" is not "host" (the host's shutdown) or nothing`,
      )
    events.push({ at: Math.round(at * 1000), verb, args, line: i + 1 })
  })
  return events.sort((a, b) => a.at - b.at || a.line - b.line)
}
