import type { Input, OperatorOp } from '@vigil/engine'
import type { Logger } from '@vigil/kit'
import type { EngineLoop } from './engine-loop.js'
import type { NewEvent } from './store.js'

/** What an operator's request needs of the engine: what it knows, and what it would refuse. */
export type OperatorEngine = Pick<EngineLoop, 'knows' | 'liveMigratable' | 'suspendRefusal' | 'condition'> & {
  input(input: Input): void
}

export type OperatorAnswer =
  | { unknown: 'node' | 'resource' }
  | { refused: string; field: string }
  | { accepted: true }

/** The node and resource a request names, each checked against what the engine knows. */
function subjectsOf(op: OperatorOp): ['node' | 'resource', string | undefined][] {
  switch (op.op) {
    case 'move':
      return [
        ['resource', op.resource],
        ['node', op.node],
      ]
    case 'cleanup':
    case 'target':
    case 'suspend':
      return [['resource', op.resource]]
    case 'evacuate':
    case 'fence':
      return [['node', op.node]]
    case 'maintenance':
      return op.scope === 'cluster' ? [] : [[op.scope, op.id]]
    default:
      return []
  }
}

/**
 * The operator's verbs on their way to the engine: a request naming what the engine does not know,
 * or asking what cannot be done (a live migration of what cannot migrate, a suspend the engine
 * would refuse), is answered at once and never queued; an accepted one is audited (who, from where,
 * what) before the engine acts on it. A node said to be off goes to the fence service first (a
 * meatware request it is waiting for), else to the engine as an acknowledged fence.
 */
export class OperatorRequests {
  constructor(
    private readonly deps: {
      engine: OperatorEngine
      /** Confirms a meatware request waiting for this node; false when none waits. */
      confirmMeatware: (node: string, by: string) => boolean
      /** Writes the audit event (and shows it live); throws when it cannot be written. */
      audit: (event: NewEvent) => void
      now: () => number
      log: Logger
    },
  ) {}

  request(op: OperatorOp, by: string, from: string): OperatorAnswer {
    const { engine } = this.deps
    for (const [kind, id] of subjectsOf(op)) if (!id || !engine.knows(kind, id)) return { unknown: kind }
    if (op.op === 'move' && op.live && !engine.liveMigratable(op.resource))
      return {
        refused: `${op.resource} cannot be live-migrated: only a vm with liveMigrate: true can (vigil move stops and starts it)`,
        field: 'resource',
      }
    if (op.op === 'suspend') {
      const refused = engine.suspendRefusal(op.resource, op.on)
      if (refused) return { refused, field: 'resource' }
    }
    // The audit trail: who asked for what, from where, before the engine acts on it.
    this.deps.audit({
      at: this.deps.now(),
      node: 'node' in op ? op.node : op.op === 'maintenance' && op.scope === 'node' ? (op.id ?? null) : null,
      source: 'operator',
      kind: `operator.${op.op}`,
      severity: 'info',
      message: `${by} asked: ${JSON.stringify(op)}`,
      attrs: { by, from, op },
    })
    this.deps.log.info({ by, from, op }, 'operator request')
    engine.input({ type: 'operator', op })
    return { accepted: true }
  }

  /** An operator says `node` is off. */
  confirmOff(node: string, by: string): 'meatware-confirmed' | 'acknowledged' | 'refused' {
    if (this.deps.confirmMeatware(node, by)) return 'meatware-confirmed'
    const view = this.deps.engine.condition(node)
    if (!view || view.condition === 'healthy') return 'refused'
    this.deps.engine.input({ type: 'operator', op: { op: 'ack-fence', node, by } })
    return 'acknowledged'
  }
}
