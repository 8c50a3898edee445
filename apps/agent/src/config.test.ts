import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, test } from 'vitest'
import { loadAgentConfig } from './config.js'

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
