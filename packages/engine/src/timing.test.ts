import { describe, expect, test } from 'vitest'
import { silenceToReach } from './phi.js'
import { clusterSpecSchema } from './spec.js'
import { earliestFence, type IsolationTiming, isolationTimingProblem } from './timing.js'

const spec = clusterSpecSchema.parse({
  detection: { isolationGraceMs: 4000 },
  nodes: [
    { id: 'a', fencing: [{ devices: ['bmc-a'] }] },
    { id: 'b', fencing: [{ devices: ['bmc-b'] }], fenceDelayMs: 5000 },
    { id: 'unfenced' },
  ],
})

const timing = (t: Partial<IsolationTiming>): IsolationTiming => ({
  afterMs: 3000,
  action: 'stop',
  doneWithinMs: 3000,
  diskHeartbeat: true,
  ...t,
})

describe('earliestFence', () => {
  test('with a disk heartbeat: the isolation grace, plus the node fence delay', () => {
    expect(earliestFence(spec, 'a', true).ms).toBe(4000)
    expect(earliestFence(spec, 'b', true)).toEqual({
      ms: 9000,
      because: 'detection.isolationGraceMs 4000 + fenceDelayMs 5000',
    })
  })

  test("without one: the hub detector's silence plus confirmMs (a silent node is dead)", () => {
    const d = spec.detection
    const silent = silenceToReach(
      d.hub.threshold,
      d.hub.firstIntervalMs + d.hub.acceptablePauseMs,
      d.hub.minStdDevMs,
    )
    expect(earliestFence(spec, 'a', false).ms).toBe(Math.round(silent) + d.confirmMs)
    expect(earliestFence(spec, 'a', false).ms).toBeLessThan(1500)
  })
})

describe('isolationTimingProblem', () => {
  test.each([
    ['a stop done before the grace ends fits', 'a', timing({ doneWithinMs: 3999 }), undefined],
    ['a stop done when the fence may come is late', 'a', timing({ doneWithinMs: 4000 }), 'isolation.afterMs'],
    ['the fence delay buys the time', 'b', timing({ doneWithinMs: 8000 }), undefined],
    ['without a disk heartbeat any stop is late', 'a', timing({ diskHeartbeat: false }), 'isolation.afterMs'],
    ['a freeze has nothing to finish', 'a', timing({ action: 'freeze', doneWithinMs: 60_000 }), undefined],
    ['a node without fence levels is never fenced', 'unfenced', timing({ doneWithinMs: 60_000 }), undefined],
    ['an unknown node is never fenced either', 'nobody', timing({ doneWithinMs: 60_000 }), undefined],
  ])('%s', (_, node, isolation, key) => {
    expect(isolationTimingProblem(spec, node, isolation)?.key).toBe(key)
  })

  test('the message says what takes how long, and which keys to change', () => {
    const problem = isolationTimingProblem(spec, 'a', timing({ afterMs: 3000, doneWithinMs: 23_000 }))
    expect(problem?.message).toBe(
      "a's isolation response (stop) can take until 23000 ms after it last heard the hub (isolation.afterMs 3000 + its longest stop timeout 20000), " +
        'but the hub may fence it 4000 ms after (detection.isolationGraceMs 4000): ' +
        'lower isolation.afterMs or the stop timeouts, or raise detection.isolationGraceMs',
    )
    expect(isolationTimingProblem(spec, 'a', timing({ diskHeartbeat: false }))?.message).toMatch(
      /no disk heartbeat, so a silent node is dead: .* give the node a disk heartbeat/,
    )
  })
})
