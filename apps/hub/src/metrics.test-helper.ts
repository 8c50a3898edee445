import { HubMetrics } from './metrics.js'

/** Hub metrics with nothing behind them: a hub alone, no nodes, no parts, at `epoch`. */
export function emptyHubMetrics(epoch = 1): HubMetrics {
  return new HubMetrics({
    nodes: () => [],
    brokerClients: () => 0,
    group: () => null,
    parts: () => [],
    epoch: () => epoch,
  })
}
