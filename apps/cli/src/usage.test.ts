import { expect, test, vi } from 'vitest'
import { main, usageOf } from './main.js'

test.each([
  ['status', 'status [--brief]', 'simulate'],
  ['resource', 'resource stop|start', 'token issue'],
  ['config', 'config check <file>', 'resource stop'],
])('vigil %s --help shows that command only', (command, shown, notShown) => {
  const text = usageOf(command)
  expect(text).toContain(shown)
  expect(text).not.toContain(notShown)
  expect(text).toContain('Common options:')
})

test('an unknown command gets the whole usage', () => {
  expect(usageOf('nope')).toMatch(/^Usage: vigil <command>/)
})

test('vigil status --help exits 0 and prints its usage', async () => {
  const out = vi.spyOn(console, 'log').mockImplementation(() => {})
  expect(await main(['status', '--help'])).toBe(0)
  expect(out.mock.calls[0]?.[0]).toContain('status [--brief]')
  out.mockRestore()
})
