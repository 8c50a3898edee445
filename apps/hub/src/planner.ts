import { Worker } from 'node:worker_threads'
import type { ClusterSpec, EngineState, WhatIf } from '@vigil/engine'
import type { Logger } from '@vigil/kit'
import type { PlanRequest } from './plan-worker.js'

/**
 * The what-if plan, computed on a worker thread (plan-worker.ts) so that the hub's event loop never
 * waits for it: `latest()` answers at once with the newest finished plan (null before the first),
 * and `refresh()` asks for a new one unless one is being computed. Copying the state to the worker
 * (structured clone) is the only cost left on the event loop.
 */
export class Planner {
  private worker: Worker | null = null
  private latestPlan: { at: number; plan: WhatIf[] } | null = null
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
    return this.latestPlan
  }

  /** Whether a plan is being computed now. */
  get busy(): boolean {
    return this.inFlight !== null
  }

  refresh(spec: ClusterSpec, state: EngineState, now: number): void {
    if (this.closed || this.inFlight !== null) return
    const worker = this.ensureWorker()
    const req: PlanRequest = { id: ++this.seq, state, now, ...(spec !== this.sentSpec ? { spec } : {}) }
    this.sentSpec = spec
    this.inFlight = { id: req.id, at: now }
    worker.postMessage(req)
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
    worker.on('message', (msg: { id: number; plan?: WhatIf[]; error?: string }) => {
      if (msg.id !== this.inFlight?.id) return
      const { at } = this.inFlight
      this.inFlight = null
      if (msg.plan) this.latestPlan = { at, plan: msg.plan }
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
