import { expect, test } from 'vitest'
import { type LivenessInput, nextLivenessState } from './liveness.js'

const policy = { suspectAfterMs: 1000, lostAfterMs: 3000 }

test.each<[string, LivenessInput, number, string]>([
  [
    'fresh heartbeat keeps a node online',
    { current: 'online', lastHeardMono: 0, willReceived: false },
    500,
    'online',
  ],
  [
    'silence past suspectAfter makes it suspect',
    { current: 'online', lastHeardMono: 0, willReceived: false },
    1000,
    'suspect',
  ],
  [
    'a last will makes it suspect at once, not lost',
    { current: 'online', lastHeardMono: 0, willReceived: true },
    10,
    'suspect',
  ],
  [
    'silence past lostAfter makes it lost',
    { current: 'suspect', lastHeardMono: 0, willReceived: false },
    3000,
    'lost',
  ],
  [
    'a lost node stays lost without a heartbeat',
    { current: 'lost', lastHeardMono: 0, willReceived: false },
    3100,
    'lost',
  ],
  [
    'a clean shutdown stays offline',
    { current: 'offline', lastHeardMono: 0, willReceived: false },
    99_999,
    'offline',
  ],
  [
    'a node from the store stays unknown during the grace',
    { current: 'unknown', lastHeardMono: 0, willReceived: false },
    2000,
    'unknown',
  ],
  [
    'a node from the store never heard becomes lost',
    { current: 'unknown', lastHeardMono: 0, willReceived: false },
    3000,
    'lost',
  ],
])('%s', (_name, input, now, expected) => {
  expect(nextLivenessState(input, now, policy)).toBe(expected)
})
