import type { EngineState } from '@vigil/engine'
import type { Logger } from '@vigil/kit'
import type { CommittedClusterFile, GroupEvents } from './group.js'
import type { NewEvent } from './store.js'

/** What a takeover needs of the group: its committed state, and a way to give the leadership up. */
export interface LeadershipGroup {
  isLeader(): boolean
  loadState(): Promise<unknown>
  loadClusterFile(): Promise<CommittedClusterFile | null>
  stepDown(reason: string): void
}

/** The hub's parts a change of leadership drives. */
export interface LeadershipParts {
  /** The epoch every command is signed under from now on. */
  setEpoch(epoch: number): void
  /**
   * The cluster file the group runs, before the state is resumed: the one committed (this hub's
   * own copy may differ), or, none committed yet, this hub's own, committed now.
   */
  runClusterFile(committed: CommittedClusterFile | null): void
  takeOver(committed: EngineState | null, why: string): void
  standDown(): void
  /** One engine step now (what this hub heard as a standby ends what it can). */
  step(): void
  /** Fences the committed state has in flight, resumed (the power read first). */
  resumeFences(why: string): void
  /** Every agent heard is sent a signed ping under the new epoch; returns how many. */
  announceEpoch(): number
  countTakeover(): void
  event(e: NewEvent): void
  closing(): boolean
  now(): number
}

/**
 * What this hub does when it gains or loses the group's leadership. A takeover: the new epoch at
 * once, then the previous leader's committed state (and the cluster file the group runs) read from
 * etcd and resumed, the takeover's own
 * step, the fences in flight resumed, the new epoch announced to every agent heard; a deposition
 * during that read wins (the read's result is dropped), and a leader that cannot read the state
 * gives the leadership up rather than hold it idle. A deposition: stop acting at once, keep
 * observing.
 */
export function leadershipEvents(
  hubName: string,
  group: () => LeadershipGroup,
  parts: LeadershipParts,
  log: Logger,
): Pick<GroupEvents, 'onLead' | 'onDepose'> {
  let leading = 0 // each takeover's number: a deposition during a takeover's etcd read wins
  return {
    onLead: (epoch) => {
      const mine = ++leading
      parts.setEpoch(epoch)
      Promise.all([group().loadState(), group().loadClusterFile()])
        .then(([committed, clusterFile]) => {
          if (mine !== leading || parts.closing() || !group().isLeader()) return
          parts.runClusterFile(clusterFile)
          parts.takeOver(committed as EngineState | null, `leader of the hub group under epoch ${epoch}`)
          parts.countTakeover()
          parts.event({
            at: parts.now(),
            node: null,
            source: 'hub',
            kind: 'hub.takeover',
            severity: 'warning',
            message: `${hubName} leads the hub group under epoch ${epoch}: ${committed ? "resumed the previous leader's state" : 'no state committed before: started from its own'}`,
            attrs: { epoch, resumed: committed !== null },
          })
          // The takeover's own step first: what this hub heard as a standby may end a fence
          // the committed state still has in flight (its node came back after it), and a
          // fence resumed from the state before that step would power a healthy node off.
          parts.step()
          parts.resumeFences('resuming a fence the previous leader had in flight (power read first)')
          // Every agent heard learns the new epoch at once (a signed ping under it raises its
          // floor), so it refuses whatever the old leader may still deliver, not only after
          // this leader's first real command to it.
          const agents = parts.announceEpoch()
          log.info({ epoch, agents }, 'announced the new epoch to the agents')
        })
        .catch((err: unknown) => {
          // A leader that cannot resume must not hold the leadership idle: it gives it up, and
          // whichever hub can read the state (this one, next time) takes over.
          log.error({ err }, 'could not read the group state: giving the leadership up')
          if (mine === leading) group().stepDown(`could not read the group state: ${(err as Error).message}`)
        })
    },
    onDepose: (reason) => {
      leading++
      parts.standDown()
      parts.event({
        at: parts.now(),
        node: null,
        source: 'hub',
        kind: 'hub.deposed',
        severity: 'warning',
        message: `${hubName} stopped leading the hub group: ${reason}`,
        attrs: { reason },
      })
    },
  }
}
