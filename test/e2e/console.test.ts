import { copyFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { launchChromium } from '../harness/browser.js'
import { eventually } from '../harness/eventually.js'
import { type HubProcess, hubKeyArgs, startHub } from '../harness/hub.js'
import { runVigil, tempDir, VigilProcess, writeLines } from '../harness/processes.js'

// The status page as an operator's console, in real Chromium: a hub whose API needs a token even
// to read (api.anonymous: none), two agents keeping `web` running. An operator signs in with a
// token, puts a node in maintenance from the page, sees the page and the audit log agree, opens a
// decision's why, and signs out.
const repo = join(import.meta.dirname, '../..')
const dir = tempDir('console')
const cleanups: (() => Promise<void> | void)[] = []
let hub: HubProcess
let browser: Browser
let page: Page
const tokens: Record<string, string> = {}

beforeAll(async () => {
  const tokensFile = join(dir.path, 'tokens.yaml')
  for (const [name, role] of [
    ['otto', 'operator'],
    ['vera', 'viewer'],
  ] as const) {
    const issued = await runVigil(['token', 'issue', name, '--role', role, '--file', tokensFile])
    expect(issued.code, issued.stderr).toBe(0)
    tokens[name] = issued.stdout.trim()
  }
  const hubFile = writeLines(dir.path, 'hub.yaml', [
    `api: { tokensFile: ${tokensFile}, anonymous: none }`,
    '',
  ])
  const clusterFile = writeLines(dir.path, 'cluster.yaml', [
    'nodes:',
    '  - id: node-a',
    '  - id: node-b',
    'resources:',
    '  - id: web',
    '    preferred: { node-a: 10 }',
    '',
  ])
  hub = await startHub(dir.path, ['--config', hubFile, '--cluster-file', clusterFile])
  cleanups.push(() => hub.process.stop())
  for (const node of ['node-a', 'node-b']) {
    const config = writeLines(dir.path, `${node}.yaml`, [
      `node: ${node}`,
      'resources:',
      '  - id: web',
      '    driver: process',
      `    config: { command: [sleep, '600'], pidfile: ${join(dir.path, `${node}-web.pid`)} }`,
      '',
    ])
    const agent = new VigilProcess(
      ['agent', '--config', config, '--mqtt-url', hub.mqttUrl, ...hubKeyArgs(hub)],
      {
        cwd: dir.path,
      },
    )
    cleanups.push(() => agent.stop())
  }
  browser = await launchChromium()
  cleanups.push(() => browser.close())
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } })
}, 60_000)

afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  dir.remove()
})

/** The API as otto, the operator (reads need a token on this hub). */
async function asOtto<T>(path: string): Promise<T> {
  const res = await fetch(`${hub.httpUrl}${path}`, { headers: { authorization: `Bearer ${tokens.otto}` } })
  expect(res.status, path).toBe(200)
  return (await res.json()) as T
}

test('sign in with a token, put a node in maintenance from the page, the audit log agrees, sign out', async () => {
  const errors: string[] = []
  page.on('pageerror', (e) => errors.push(e.message))
  await page.goto(hub.httpUrl)
  // Without a token this hub shows nothing but the way in.
  await expect.poll(() => page.locator('#updated').textContent()).toContain('sign in')
  expect(await page.locator('#signin').isVisible()).toBe(true)

  // A wrong token is refused in the dialog; the operator's is taken.
  await page.locator('#signin').click()
  await page.locator('#login-token').fill('not-a-token')
  await page.locator('#login button[type=submit]').click()
  await expect.poll(() => page.locator('#login-error').textContent()).toContain('not valid')
  await page.locator('#login-token').fill(tokens.otto as string)
  await page.locator('#login button[type=submit]').click()
  await expect.poll(() => page.locator('#who').textContent()).toBe('otto (operator)')
  await expect
    .poll(() => page.locator('#resources tr[data-resource="web"] .phase').textContent(), { timeout: 30_000 })
    .toBe('running')
  await expect.poll(() => page.locator('#nodes tbody tr[data-node]').count()).toBe(2)
  // An operator sees the verbs; fencing is an admin's, so it is not offered.
  const maintenanceA = page.locator('#nodes tr[data-node="node-a"] button[data-act="node-maintenance"]')
  expect(await maintenanceA.textContent()).toBe('maintenance on')
  expect(await page.locator('button[data-act="fence"]').count()).toBe(0)

  await maintenanceA.click()
  await expect.poll(() => page.locator('#notice').textContent()).toContain('maintenance on node-a: accepted')
  await expect.poll(() => maintenanceA.textContent(), { timeout: 10_000 }).toBe('maintenance off')
  // The page, the API and the audit log agree: node-a in maintenance, by otto, through the API.
  const node = await asOtto<{ engine: { maintenance: unknown } | null }>('/api/nodes/node-a')
  expect(node.engine?.maintenance).not.toBeNull()
  const { audit } = await asOtto<{
    audit: { who: string; method: string; path: string; body: string | null; status: number }[]
  }>('/api/audit?limit=20')
  expect(audit.find((a) => a.path === '/api/maintenance')).toMatchObject({
    who: 'otto',
    method: 'POST',
    status: 202,
    body: expect.stringContaining('"node":"node-a"'),
  })

  // A decision opens its why: the records of its incident, from the API.
  const decision = page.locator('#decisions li[data-kind="place"]').first()
  await decision.click()
  await expect.poll(() => decision.locator('pre').textContent()).toContain('why: the story of')
  // The last 15 minutes are drawn from the hub's own ring.
  expect(await page.locator('#plot-running svg').count()).toBe(1)
  if (process.env.VIGIL_UPDATE === '1') {
    // The README's screenshot, with some history drawn (a sample every 10 s).
    await eventually(
      'three history samples',
      async () => (await asOtto<{ samples: unknown[] }>('/api/history')).samples.length >= 3,
      {
        timeoutMs: 45_000,
      },
    )
    await page.reload()
    await expect.poll(() => page.locator('#who').textContent()).toBe('otto (operator)')
    mkdirSync(join(repo, 'test/test-results'), { recursive: true })
    const shot = join(repo, 'test/test-results/console.png')
    await page.screenshot({ path: shot, fullPage: true })
    copyFileSync(shot, join(repo, 'docs/status-page.png'))
  }

  // Signing out forgets the token: this hub shows nothing again.
  await page.locator('#signout').click()
  await expect.poll(() => page.locator('#signin').isVisible()).toBe(true)
  await expect.poll(() => page.evaluate("sessionStorage.getItem('vigil-token')")).toBeNull()
  await expect.poll(() => page.locator('#updated').textContent()).toContain('sign in')
  expect(errors).toEqual([])
}, 120_000)

test('a viewer sees the cluster but no verbs', async () => {
  const viewer = await browser.newPage()
  await viewer.goto(`${hub.httpUrl}/#token=${encodeURIComponent(tokens.vera as string)}`)
  await expect.poll(() => viewer.locator('#who').textContent()).toBe('vera (viewer)')
  await expect.poll(() => viewer.locator('#nodes tbody tr[data-node]').count()).toBe(2)
  expect(await viewer.locator('button[data-act]').count()).toBe(0)
  await viewer.close()
})
