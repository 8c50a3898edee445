import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, test } from 'vitest'
import { agentConfigSchema, loadAgentConfig } from './config.js'

const dir = mkdtempSync(join(tmpdir(), 'vigil-agent-config-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const load = (yaml: string, overrides: { path: string[]; value: unknown }[] = []) => {
  const file = join(dir, 'agent.yaml')
  writeFileSync(file, `commands: { allowUnsigned: true }\n${yaml}`)
  return loadAgentConfig(file, overrides)
}

test.each<[string, string, { path: string[]; value: unknown }[], string[]]>([
  ['no broker: the local one', 'node: n1\n', [], ['mqtt://127.0.0.1:1883']],
  ['one broker', "mqtt: { url: 'mqtt://hub:1883' }\n", [], ['mqtt://hub:1883']],
  [
    'every broker of a hub group, as a list',
    "mqtt: { url: ['mqtt://a:1883', 'mqtts://b:8883'] }\n",
    [],
    ['mqtt://a:1883', 'mqtts://b:8883'],
  ],
  [
    'every broker from the flag, comma-separated',
    'node: n1\n',
    [{ path: ['mqtt', 'url'], value: 'mqtt://a:1883,mqtt://b:1883' }],
    ['mqtt://a:1883', 'mqtt://b:1883'],
  ],
])('mqtt.url: %s', (_, yaml, overrides, urls) => {
  expect(load(yaml, overrides as never).mqtt.url).toEqual(urls)
})

test.each([
  ["mqtt: { url: ['mqtt://a:1883', 'http://b'] }\n", /mqtt\.url/],
  ['mqtt: { url: [] }\n', /mqtt\.url.*at least one broker/],
  ["mqtt: { url: ['mqtt://a:1883', 'mqtt://a:1883'] }\n", /mqtt\.url.*twice/],
])('a bad broker list is refused, naming mqtt.url: %s', (yaml, message) => {
  expect(() => load(yaml)).toThrow(message)
})

const check = (extra: object) => ({ driver: 'check', config: { kind: 'tcp', port: 80 }, ...extra })
const proc = { id: 'web', driver: 'process', config: { command: ['sleep', '9'], pidfile: '/tmp/w.pid' } }

test.each([
  [
    'a resource of another agent',
    [proc, check({ id: 'c', vouchesFor: 'db' })],
    'names no resource of this agent',
  ],
  ['itself', [check({ id: 'c', vouchesFor: 'c' })], 'cannot vouch for itself'],
  [
    'another watch',
    [proc, check({ id: 'a', vouchesFor: 'web' }), check({ id: 'b', vouchesFor: 'a' })],
    'is a watch too',
  ],
  ['from a driver with its own monitor', [proc, { ...proc, id: 'web2', vouchesFor: 'web' }], 'only a watch'],
])('vouchesFor naming %s is refused, naming the key', (_, resources, message) => {
  const r = agentConfigSchema.safeParse({ node: 'n1', commands: { allowUnsigned: true }, resources })
  expect(r.success).toBe(false)
  const issue = r.error?.issues.find((i) => i.path.at(-1) === 'vouchesFor')
  expect(issue?.message).toContain(message)
})
