import type { ChannelPayload } from './codec.js'
import type { NodeChannel } from './topics.js'

/** One valid payload per channel: the codec's tests and its fuzzing start from these. */
const base = { v: 1 as const, node: 'node-1', incarnation: 1_700_000_000_000 }
const uuid = '0b7a3c1e-8d5f-4a5e-9a1b-2c3d4e5f6a7b'

export const valid: { [C in NodeChannel]: ChannelPayload<C> } = {
  hb: { ...base, seq: 42, sentMono: 1234.5, sentAt: 1_700_000_000_250, intervalMs: 250 },
  status: {
    ...base,
    state: 'online',
    at: 1_700_000_000_000,
    agentVersion: '0.1.0',
    role: 'host',
    capabilities: ['ping'],
  },
  facts: {
    ...base,
    collectedAt: 1_700_000_000_000,
    hostname: 'node-1.example',
    os: { platform: 'linux', release: '6.1.0', arch: 'x64' },
    cpus: 2,
    memory: { totalBytes: 1024, availableBytes: 512 },
    load: [0.1, 0.2, 0.3],
    uptimeSeconds: 100,
    processCount: 77,
    filesystems: [
      {
        mount: '/',
        device: '/dev/vda',
        fstype: 'ext4',
        sizeBytes: 100,
        freeBytes: 50,
        availBytes: 40,
        inodes: 10,
        inodesFree: 5,
      },
    ],
    interfaces: [
      {
        name: 'eth0',
        mac: '52:54:00:12:34:56',
        mtu: 1500,
        operstate: 'up',
        carrier: true,
        speedMbps: 1000,
        addresses: ['10.0.0.1/24'],
      },
    ],
  },
  obs: {
    ...base,
    seq: 1,
    at: 1_700_000_000_000,
    observations: [
      { driver: 'process', target: 'nginx', state: 'running', metrics: { rssBytes: 1e6 } },
      { driver: 'libvirt', target: 'vm1', state: 'running', hypervisor: 'kvm' },
    ],
  },
  event: {
    ...base,
    seq: 3,
    at: 1_700_000_000_000,
    kind: 'nic.link_down',
    severity: 'warning',
    message: 'eth1 down',
  },
  cmd: {
    v: 1,
    id: uuid,
    issuer: { hub: 'hub', epoch: 3 },
    seq: 9,
    issuedAt: 1_700_000_000_000,
    expiresAt: 1_700_000_005_000,
    target: 'node-1',
    action: 'ping',
    args: {},
  },
  ack: {
    ...base,
    id: uuid,
    status: 'ok',
    receivedAt: 1_700_000_000_001,
    finishedAt: 1_700_000_000_002,
    result: { pong: true },
  },
}
