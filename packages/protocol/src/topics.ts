/**
 * Topic layout, version 1:
 *
 *   vigil/v1/<cluster>/node/<node>/<channel>
 *
 * Agents publish hb, status, facts, obs, event and ack under their own node; only the hub publishes
 * cmd. A broker ACL can therefore grant an agent `vigil/v1/<cluster>/node/<self>/#` minus `cmd`.
 * The version segment changes only for incompatible payload changes; see docs/protocol.md.
 */
import { isValidName } from './vocabulary.js'

export const PROTOCOL_VERSION = 1 as const
export const TOPIC_ROOT = `vigil/v${PROTOCOL_VERSION}` as const

export const NODE_CHANNELS = ['hb', 'status', 'facts', 'obs', 'event', 'cmd', 'ack'] as const
export type NodeChannel = (typeof NODE_CHANNELS)[number]

/** Channels an agent publishes on (the hub subscribes to these). */
export const AGENT_CHANNELS = [
  'hb',
  'status',
  'facts',
  'obs',
  'event',
  'ack',
] as const satisfies readonly NodeChannel[]

export function nodeTopic(cluster: string, node: string, channel: NodeChannel): string {
  return `${TOPIC_ROOT}/${cluster}/node/${node}/${channel}`
}

/** Subscription filter for one channel of every node of a cluster. */
export function clusterChannelFilter(cluster: string, channel: NodeChannel | '+'): string {
  return `${TOPIC_ROOT}/${cluster}/node/+/${channel}`
}

export interface ParsedTopic {
  cluster: string
  node: string
  channel: NodeChannel
}

/** Parses a topic of this version; null for anything else (foreign, malformed or unknown channel). */
export function parseTopic(topic: string): ParsedTopic | null {
  const parts = topic.split('/')
  if (parts.length !== 6) return null
  const [root, version, cluster, kind, node, channel] = parts as [
    string,
    string,
    string,
    string,
    string,
    string,
  ]
  if (`${root}/${version}` !== TOPIC_ROOT || kind !== 'node') return null
  if (!isValidName(cluster) || !isValidName(node)) return null
  if (!(NODE_CHANNELS as readonly string[]).includes(channel)) return null
  return { cluster, node, channel: channel as NodeChannel }
}
