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
