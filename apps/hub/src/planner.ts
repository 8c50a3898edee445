import { Worker } from 'node:worker_threads'
import { type ClusterSpec, type EngineState, planView, planViewTransfer, type WhatIf } from '@vigil/engine'
import type { Logger } from '@vigil/kit'
import type { PlanAnswer, PlanRequest } from './plan-worker.js'

/**
 * The what-if plan, computed on a worker thread (plan-worker.ts) so that the hub's event loop never
 * waits for it: `latest()` answers at once with the newest finished plan (null before the first),
 * and `refresh()` asks for a new one unless one is being computed. What the event loop still pays:
 * taking the plan's view of the state (`planView`), and parsing a finished plan the first time it
 * is asked for.
 */
export class Planner {
  private worker: Worker | null = null
  private latestPlan: { at: number; text: string; parsed: WhatIf[] | null } | null = null
  /** The plan being computed: its request id and the engine time it is for. */
  private inFlight: { id: number; at: number } | null = null
  private seq = 0
  /** The spec the worker holds (it is sent again only when it changes). */
  private sentSpec: ClusterSpec | null = null
  private closed = false
  /** Those waiting for the plan being computed (`settled`). */
  private waiters: (() => void)[] = []

  constructor(
    private readonly log: Logger,
    /** The worker's module (its built file: a test from sources points at dist). */
    private readonly workerUrl: URL = new URL('./plan-worker.js', import.meta.url),
  ) {}

  latest(): { at: number; plan: WhatIf[] } | null {
    const latest = this.latestPlan
    if (!latest) return null
    latest.parsed ??= JSON.parse(latest.text) as WhatIf[]
    return { at: latest.at, plan: latest.parsed }
  }

  /** Whether a plan is being computed now. */
  get busy(): boolean {
    return this.inFlight !== null
  }

  refresh(spec: ClusterSpec, state: EngineState, now: number): void {
    if (this.closed || this.inFlight !== null) return
    const worker = this.ensureWorker()
    const view = planView(spec, state)
    const req: PlanRequest = { id: ++this.seq, view, now, ...(spec !== this.sentSpec ? { spec } : {}) }
    this.sentSpec = spec
    this.inFlight = { id: req.id, at: now }
    worker.postMessage(req, planViewTransfer(view))
  }

  /** Resolves once no plan is being computed (at once if none is). */
  settled(): Promise<void> {
    if (this.inFlight === null) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push(resolve))
  }

  /** Forgets the plan (the cluster changed shape: a reload); the next refresh computes anew. */
  reset(): void {
    this.latestPlan = null
  }

  async close(): Promise<void> {
    this.closed = true
    this.inFlight = null
    this.wake()
    const w = this.worker
    this.worker = null
    if (w) await w.terminate()
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker
    const worker = new Worker(this.workerUrl)
    this.sentSpec = null // a new thread holds no spec yet
    worker.unref() // a plan in progress never keeps a stopping hub alive
    worker.on('message', (msg: PlanAnswer) => {
      if (msg.id !== this.inFlight?.id) return
      const { at } = this.inFlight
      this.inFlight = null
      if (msg.plan !== undefined) this.latestPlan = { at, text: msg.plan, parsed: null }
      else this.log.error({ err: msg.error }, 'the what-if plan failed')
      this.wake()
    })
    worker.on('error', (err) => {
      // A worker that died is started again at the next refresh; the last plan stands meanwhile.
      this.log.error({ err: err.message }, 'the what-if plan thread failed')
      this.worker = null
      this.sentSpec = null
      this.inFlight = null
      this.wake()
    })
    this.worker = worker
    return worker
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w()
  }
}
