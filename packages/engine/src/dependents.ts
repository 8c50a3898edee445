/**
 * What depends on a resource and still runs: found (`runningDependents`) and asked to stop first
 * (`stopDependentsFirst`), before the resource itself stops or moves.
 */

import type { StepContext } from './context.js'
import { setPhase } from './resource-actions.js'
import type { ResourceSpec } from './spec.js'
import type { ResourceState } from './types.js'

/**
 * What depends on `id` and is placed and managed: what must stop before it does. A vm stops what it
 * runs with it, so what depends on an application inside it (from elsewhere) stops first too.
 */
export function runningDependents(ctx: StepContext, id: string): ResourceSpec[] {
  const stopping = new Set([id])
  for (const app of ctx.resourceSpecs) if (app.kind === 'guest-app' && app.vm === id) stopping.add(app.id)
  return ctx.resourceSpecs.filter((dep) => {
    if (dep.kind === 'guest-app' && dep.vm === id) return false
    if (!dep.dependsOn.some((d) => stopping.has(d))) return false
    // An application in a vm that does not run does not run either: nothing to wait for.
    if (dep.kind === 'guest-app' && dep.vm) {
      const vm = ctx.state.resources[dep.vm]
      if (!vm?.node || vm.observed[vm.node]?.state !== 'running') return false
    }
    const ds = ctx.state.resources[dep.id] as ResourceState
    return ds.node !== null && ds.phase !== 'stopped' && ds.phase !== 'unmanaged'
  })
}

/** True while something that depends on `id` still runs (and asks it to stop). */
export function stopDependentsFirst(
  ctx: StepContext,
  id: string,
  decision: string,
  what = 'which is moving',
  /** They stop only for `id`'s restart in place: each is placed back where it ran. */
  inPlace = false,
): boolean {
  const dependents = runningDependents(ctx, id)
  for (const dep of dependents) {
    const ds = ctx.state.resources[dep.id] as ResourceState
    const direct = dep.dependsOn.includes(id)
    const inside = dep.dependsOn.find((d) => ctx.resourceSpecs.some((a) => a.id === d && a.vm === id))
    const on = direct ? `${id},` : `${inside}, inside ${id},`
    if (!ds.pending && !ds.relocating) {
      ctx.mark(dep.id)
      ds.relocating = {
        why: `stopping first: it depends on ${on} ${what}`,
        rule: 'order.stop-dependents-first',
        decision,
        ...(inPlace ? { inPlace } : {}),
      }
    }
  }
  return dependents.length > 0
}

/**
 * Before `spec` stops for `decision`: what depends on it is asked to stop first, and while any of
 * it still runs the resource says it waits for that (true: do not stop it yet).
 */
export function waitForDependents(
  ctx: StepContext,
  spec: ResourceSpec,
  r: ResourceState,
  decision: string,
  inPlace = false,
): boolean {
  const what = inPlace ? 'which stops for a restart in place' : undefined
  if (!stopDependentsFirst(ctx, spec.id, decision, what, inPlace)) return false
  setPhase(
    ctx,
    spec.id,
    r,
    'stopping',
    'waiting for what depends on it to stop first',
    'order.stop-dependents-first',
  )
  return true
}
