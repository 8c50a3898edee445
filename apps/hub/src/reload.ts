import type { ClusterSpec } from '@vigil/engine'

/**
 * What a new cluster file changes, in lines an operator reads before and after `vigil cluster
 * reload`: nodes and resources added, removed, or changed (and which keys). Empty: nothing changes.
 */
export function specChanges(before: ClusterSpec, after: ClusterSpec): string[] {
  const lines: string[] = []
  const compare = <T extends { id: string }>(what: string, a: T[], b: T[]) => {
    const was = new Map(a.map((x) => [x.id, x]))
    const now = new Map(b.map((x) => [x.id, x]))
    for (const [id, x] of now) {
      const old = was.get(id)
      if (!old) lines.push(`+ ${what} ${id}`)
      else {
        const keys = [...new Set([...Object.keys(old), ...Object.keys(x)])]
          .filter(
            (k) =>
              JSON.stringify((old as Record<string, unknown>)[k]) !==
              JSON.stringify((x as Record<string, unknown>)[k]),
          )
          .sort()
        if (keys.length > 0) lines.push(`~ ${what} ${id}: ${keys.join(', ')}`)
      }
    }
    for (const id of was.keys()) if (!now.has(id)) lines.push(`- ${what} ${id}`)
  }
  compare('node', before.nodes, after.nodes)
  compare('resource', before.resources, after.resources)
  const { nodes: _n, resources: _r, ...restBefore } = before
  const { nodes: _n2, resources: _r2, ...restAfter } = after
  for (const key of [...new Set([...Object.keys(restBefore), ...Object.keys(restAfter)])].sort())
    if (
      JSON.stringify((restBefore as Record<string, unknown>)[key]) !==
      JSON.stringify((restAfter as Record<string, unknown>)[key])
    )
      lines.push(`~ ${key}`)
  return lines
}

/** What a reload needs to know of the engine: fences under way, where each resource is. */
export interface ReloadView {
  fencePhase(node: string): string
  resources(): { id: string; node: string | null; phase: string }[]
}

/**
 * Why `next` may not replace `current` now, or null. Nothing in flight or in use may leave the
 * file: a fence under way, a node that is home to a resource (nothing would judge that node any
 * more), a resource not stopped (nothing would stop or watch it). The operator empties or stops it
 * first.
 */
export function reloadRefusal(current: ClusterSpec, next: ClusterSpec, engine: ReloadView): string | null {
  const kept = new Set(next.nodes.map((n) => n.id))
  const keptResources = new Set(next.resources.map((r) => r.id))
  const views = engine.resources()
  for (const n of current.nodes) {
    const phase = engine.fencePhase(n.id)
    if (phase === 'running' || phase === 'verifying' || phase === 'delayed')
      return `a fence of ${n.id} is under way: reload once it has ended`
    if (!kept.has(n.id)) {
      const home = views.filter((r) => r.node === n.id).map((r) => r.id)
      if (home.length > 0)
        return `node ${n.id} leaves the file but runs ${home.join(', ')}: vigil evacuate ${n.id} first`
    }
  }
  for (const r of views)
    if (!keptResources.has(r.id) && r.phase !== 'stopped')
      return `resource ${r.id} leaves the file but is ${r.phase}: vigil resource stop ${r.id} first`
  return null
}
