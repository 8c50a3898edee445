import { dirname } from 'node:path'
import type { DecisionRecord } from '@vigil/engine'
import { VigilError } from '@vigil/kit'
import type { Facts } from '@vigil/protocol'
import Database from 'better-sqlite3'

/** What the hub remembers about a node across restarts. */
export interface NodeRow {
  id: string
  /**
   * When its agent announced a clean shutdown (its `offline` status); null while it runs (heard
   * since) or never said so. A fact the agent states, not a judgement: the engine judges the node.
   */
  shutdownAt: number | null
  incarnation: number | null
  lastHeartbeatAt: number | null
  role: string | null
  agentVersion: string | null
  capabilities: string[]
  facts: Facts | null
  firstSeen: number
}

export interface EventRow {
  id: number
  at: number
  node: string | null
  /** `hub` for what the hub concluded, `agent` for what an agent reported. */
  source: 'hub' | 'agent' | 'operator'
  kind: string
  severity: 'info' | 'warning' | 'critical'
  message: string
  attrs: Record<string, unknown> | null
}

export type NewEvent = Omit<EventRow, 'id'>

export interface CommandRow {
  id: string
  node: string
  action: string
  args: Record<string, unknown>
  epoch: number
  seq: number
  issuedAt: number
  expiresAt: number
  /**
   * sent -> accepted (the agent took it) -> ok | failed | refused; timeout when the hub stopped
   * waiting, which a late result still replaces (the outcome the agent reported is the truth).
   */
  status: 'sent' | 'accepted' | 'ok' | 'failed' | 'refused' | 'timeout'
  result: Record<string, unknown> | null
  finishedAt: number | null
}

const MIGRATIONS: string[] = [
  `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   CREATE TABLE nodes (
     id TEXT PRIMARY KEY, state TEXT NOT NULL, state_since INTEGER NOT NULL, incarnation INTEGER,
     last_heartbeat_at INTEGER, role TEXT, agent_version TEXT, capabilities TEXT NOT NULL DEFAULT '[]',
     facts TEXT, first_seen INTEGER NOT NULL);
   CREATE TABLE events (
     id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, node TEXT, source TEXT NOT NULL,
     kind TEXT NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL, attrs TEXT);
   CREATE INDEX events_by_node ON events (node, id);
   CREATE TABLE commands (
     id TEXT PRIMARY KEY, node TEXT NOT NULL, action TEXT NOT NULL, args TEXT NOT NULL,
     epoch INTEGER NOT NULL, seq INTEGER NOT NULL, issued_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
     status TEXT NOT NULL, result TEXT, finished_at INTEGER);`,
  `CREATE TABLE decisions (
     id TEXT PRIMARY KEY, at INTEGER NOT NULL, kind TEXT NOT NULL, node TEXT, resource TEXT,
     summary TEXT NOT NULL, rule TEXT NOT NULL, correlation_id TEXT NOT NULL, record TEXT NOT NULL);
   CREATE INDEX decisions_by_node ON decisions (node, at);
   CREATE INDEX decisions_by_resource ON decisions (resource, at);
   CREATE INDEX decisions_by_correlation ON decisions (correlation_id);`,
  `CREATE TABLE fence_ops (
     id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, node TEXT NOT NULL, device TEXT NOT NULL,
     action_id TEXT NOT NULL, decision TEXT NOT NULL, level INTEGER NOT NULL, outcome TEXT NOT NULL,
     detail TEXT NOT NULL, duration_ms INTEGER NOT NULL, steps TEXT NOT NULL);
   CREATE INDEX fence_ops_by_node ON fence_ops (node, id);`,
  // Append-only: the database itself refuses to change or delete an audit row.
  `CREATE TABLE audit (
     id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, who TEXT NOT NULL, role TEXT,
     source TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, body TEXT, status INTEGER NOT NULL);
   CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
   CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;`,
  // A node's state is the engine's: the table keeps only what its agent said, a clean shutdown.
  `ALTER TABLE nodes ADD COLUMN shutdown_at INTEGER;
   UPDATE nodes SET shutdown_at = state_since WHERE state = 'offline';
   ALTER TABLE nodes DROP COLUMN state;
   ALTER TABLE nodes DROP COLUMN state_since;`,
]

/**
 * SQLite (WAL) behind the hub: inventory, latest state, the event log and commands.
 * Heartbeat times are written in batches (flushHeartbeats), never once per heartbeat: the ingest
 * hot path only touches memory.
 */
export interface AuditRow {
  id: number
  at: number
  /** The token's name, or `anonymous`. */
  who: string
  role: string | null
  /** The client's address. */
  source: string
  method: string
  path: string
  /** The request body, truncated to 2 KiB. */
  body: string | null
  status: number
}

export interface FenceOpRow {
  id: number
  at: number
  node: string
  device: string
  actionId: string
  decision: string
  level: number
  outcome: string
  detail: string
  durationMs: number
  steps: unknown[]
}

export class HubStore {
  private readonly db: Database.Database
  private readonly stmts
  private failure: string | null = null
  private onFailure: (problem: string) => void = () => {}

  constructor(private readonly path: string) {
    try {
      this.db = new Database(path)
      this.db.pragma('journal_mode = WAL')
      this.db.pragma('synchronous = NORMAL')
      this.db.pragma('busy_timeout = 5000')
      this.migrate()
    } catch (err) {
      throw openFailure(path, err)
    }
    this.stmts = {
      upsertNode: this.db.prepare(
        `INSERT INTO nodes (id, shutdown_at, incarnation, last_heartbeat_at, role, agent_version, capabilities, facts, first_seen)
         VALUES (@id, @shutdownAt, @incarnation, @lastHeartbeatAt, @role, @agentVersion, @capabilities, @facts, @firstSeen)
         ON CONFLICT (id) DO UPDATE SET shutdown_at = excluded.shutdown_at,
           incarnation = excluded.incarnation, last_heartbeat_at = excluded.last_heartbeat_at, role = excluded.role,
           agent_version = excluded.agent_version, capabilities = excluded.capabilities, facts = excluded.facts`,
      ),
      heartbeat: this.db.prepare('UPDATE nodes SET last_heartbeat_at = ? WHERE id = ?'),
      allNodes: this.db.prepare('SELECT * FROM nodes ORDER BY id'),
      insertEvent: this.db.prepare(
        'INSERT INTO events (at, node, source, kind, severity, message, attrs) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      insertCommand: this.db.prepare(
        `INSERT INTO commands (id, node, action, args, epoch, seq, issued_at, expires_at, status)
         VALUES (@id, @node, @action, @args, @epoch, @seq, @issuedAt, @expiresAt, 'sent')`,
      ),
      acceptCommand: this.db.prepare(
        "UPDATE commands SET status = 'accepted' WHERE id = ? AND status = 'sent'",
      ),
      finishCommand: this.db.prepare(
        "UPDATE commands SET status = ?, result = ?, finished_at = ? WHERE id = ? AND status IN ('sent', 'accepted')",
      ),
      finishLateCommand: this.db.prepare(
        "UPDATE commands SET status = ?, result = ?, finished_at = ? WHERE id = ? AND status IN ('sent', 'accepted', 'timeout')",
      ),
      getCommand: this.db.prepare('SELECT * FROM commands WHERE id = ?'),
      maxSeq: this.db.prepare('SELECT COALESCE(MAX(seq), 0) AS seq FROM commands WHERE epoch = ?'),
      getMeta: this.db.prepare('SELECT value FROM meta WHERE key = ?'),
      insertDecision: this.db.prepare(
        'INSERT OR IGNORE INTO decisions (id, at, kind, node, resource, summary, rule, correlation_id, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      getDecision: this.db.prepare('SELECT record FROM decisions WHERE id = ?'),
      setMeta: this.db.prepare(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      ),
    }
  }

  /**
   * Runs a write. A failure of the database itself (disk full, read-only, I/O error, locked) marks
   * the store failing and throws `unavailable`; the hub stops acting until `probe` writes again.
   * Other errors (a constraint, a bug) pass through unchanged.
   */
  private write<T>(fn: () => T): T {
    try {
      return fn()
    } catch (err) {
      const code = (err as { code?: string }).code ?? ''
      if (!STORE_FAILURES.test(code)) throw err
      const problem = `cannot write the database ${this.path}: ${(err as Error).message} (${code})`
      if (this.failure === null) {
        this.failure = problem
        try {
          this.onFailure(problem)
        } catch {
          // the listener's own failure must not hide the store's
        }
      }
      throw new VigilError('unavailable', problem, { cause: err })
    }
  }

  /** Why the database cannot be written now, or null. */
  get failing(): string | null {
    return this.failure
  }

  /** Called once each time the database goes from writable to failing. */
  onWriteFailure(listener: (problem: string) => void): void {
    this.onFailure = listener
  }

  /** Tries a small write; true (and the failure cleared) if the database takes writes again. */
  probe(now: number): boolean {
    try {
      this.stmts.setMeta.run('probe', String(now))
      this.db.pragma('wal_checkpoint(PASSIVE)')
      this.failure = null
      return true
    } catch (err) {
      this.failure = `cannot write the database ${this.path}: ${(err as Error).message} (${(err as { code?: string }).code ?? 'error'})`
      return false
    }
  }

  private migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number
    if (current > MIGRATIONS.length)
      throw new VigilError(
        'unavailable',
        `the database ${this.path} has schema version ${current}, newer than this hub's ${MIGRATIONS.length}: it was written by a newer Vigil (run that version, or restore a backup) (store.path)`,
      )
    for (let v = current; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v] as string)
        this.db.pragma(`user_version = ${v + 1}`)
      })()
    }
  }

  /** Increments and returns the hub epoch: every hub start issues commands under a newer epoch. */
  nextEpoch(): number {
    return this.write(() => {
      return this.db.transaction(() => {
        const row = this.stmts.getMeta.get('epoch') as { value: string } | undefined
        const epoch = (row ? Number(row.value) : 0) + 1
        this.stmts.setMeta.run('epoch', String(epoch))
        return epoch
      })()
    })
  }

  saveNode(node: NodeRow): void {
    this.write(() => {
      this.stmts.upsertNode.run({
        ...node,
        capabilities: JSON.stringify(node.capabilities),
        facts: node.facts ? JSON.stringify(node.facts) : null,
      })
    })
  }

  flushHeartbeats(latest: Iterable<[string, number]>): void {
    this.write(() => {
      this.db.transaction(() => {
        for (const [id, at] of latest) this.stmts.heartbeat.run(at, id)
      })()
    })
  }

  loadNodes(): NodeRow[] {
    return (this.stmts.allNodes.all() as Record<string, unknown>[]).map((r) => ({
      id: r.id as string,
      shutdownAt: r.shutdown_at as number | null,
      incarnation: r.incarnation as number | null,
      lastHeartbeatAt: r.last_heartbeat_at as number | null,
      role: r.role as string | null,
      agentVersion: r.agent_version as string | null,
      capabilities: JSON.parse(r.capabilities as string) as string[],
      facts: r.facts ? (JSON.parse(r.facts as string) as Facts) : null,
      firstSeen: r.first_seen as number,
    }))
  }

  appendEvent(e: NewEvent): EventRow {
    return this.write(() => this.insertEvent(e))
  }

  /**
   * Several events in one transaction, numbered in order: all or none are written. One commit
   * instead of one each (a step that changed 10,000 nodes' conditions: 40 ms instead of 230 ms).
   */
  appendEvents(events: readonly NewEvent[]): EventRow[] {
    if (events.length === 0) return []
    return this.write(() => this.db.transaction(() => events.map((e) => this.insertEvent(e)))())
  }

  private insertEvent(e: NewEvent): EventRow {
    const info = this.stmts.insertEvent.run(
      e.at,
      e.node,
      e.source,
      e.kind,
      e.severity,
      e.message,
      e.attrs ? JSON.stringify(e.attrs) : null,
    )
    return { id: Number(info.lastInsertRowid), ...e }
  }

  events(filter: { node?: string; afterId?: number; limit: number }): EventRow[] {
    const where: string[] = []
    const params: unknown[] = []
    if (filter.node !== undefined) {
      where.push('node = ?')
      params.push(filter.node)
    }
    if (filter.afterId !== undefined) {
      where.push('id > ?')
      params.push(filter.afterId)
    }
    const sql = `SELECT * FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`
    return (this.db.prepare(sql).all(...params, filter.limit) as Record<string, unknown>[]).map((r) => ({
      id: r.id as number,
      at: r.at as number,
      node: r.node as string | null,
      source: r.source as EventRow['source'],
      kind: r.kind as string,
      severity: r.severity as EventRow['severity'],
      message: r.message as string,
      attrs: r.attrs ? (JSON.parse(r.attrs as string) as Record<string, unknown>) : null,
    }))
  }

  /** Decision records are append-only: the engine's account of what it did and why. */
  appendDecisions(records: DecisionRecord[]): void {
    this.write(() => {
      if (records.length === 0) return
      this.db.transaction(() => {
        for (const r of records) {
          this.stmts.insertDecision.run(
            r.id,
            Math.round(r.at),
            r.kind,
            r.node ?? null,
            r.resource ?? null,
            r.summary,
            r.rule,
            r.correlationId,
            JSON.stringify(r),
          )
        }
      })()
    })
  }

  decisions(filter: {
    node?: string
    resource?: string
    correlationId?: string
    limit: number
  }): DecisionRecord[] {
    const where: string[] = []
    const params: unknown[] = []
    for (const [col, value] of [
      ['node', filter.node],
      ['resource', filter.resource],
      ['correlation_id', filter.correlationId],
    ] as const) {
      if (value === undefined) continue
      where.push(`${col} = ?`)
      params.push(value)
    }
    const sql = `SELECT record FROM decisions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY rowid DESC LIMIT ?`
    return (this.db.prepare(sql).all(...params, filter.limit) as { record: string }[]).map(
      (r) => JSON.parse(r.record) as DecisionRecord,
    )
  }

  /** Fence history: every device run of every fence, with its read-back steps. */
  appendFenceOp(op: Omit<FenceOpRow, 'id'>): FenceOpRow {
    return this.write(() => {
      const r = this.db
        .prepare(
          'INSERT INTO fence_ops (at, node, device, action_id, decision, level, outcome, detail, duration_ms, steps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        )
        .run(
          op.at,
          op.node,
          op.device,
          op.actionId,
          op.decision,
          op.level,
          op.outcome,
          op.detail,
          op.durationMs,
          JSON.stringify(op.steps),
        )
      return { ...op, id: Number(r.lastInsertRowid) }
    })
  }

  /** One API request that changed something, or was refused: who, what, when, from where, result. */
  appendAudit(row: Omit<AuditRow, 'id'>): void {
    this.write(() => {
      this.db
        .prepare(
          'INSERT INTO audit (at, who, role, source, method, path, body, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        )
        .run(row.at, row.who, row.role, row.source, row.method, row.path, row.body, row.status)
    })
  }

  /** The audit log, newest first. */
  audit(filter: { who?: string; limit: number }): AuditRow[] {
    const rows = (
      filter.who
        ? this.db
            .prepare('SELECT * FROM audit WHERE who = ? ORDER BY id DESC LIMIT ?')
            .all(filter.who, filter.limit)
        : this.db.prepare('SELECT * FROM audit ORDER BY id DESC LIMIT ?').all(filter.limit)
    ) as AuditRow[]
    return rows
  }

  fenceOps(filter: { node?: string; limit: number }): FenceOpRow[] {
    const rows = (
      filter.node
        ? this.db
            .prepare('SELECT * FROM fence_ops WHERE node = ? ORDER BY id DESC LIMIT ?')
            .all(filter.node, filter.limit)
        : this.db.prepare('SELECT * FROM fence_ops ORDER BY id DESC LIMIT ?').all(filter.limit)
    ) as Record<string, unknown>[]
    return rows.map((r) => ({
      id: r.id as number,
      at: r.at as number,
      node: r.node as string,
      device: r.device as string,
      actionId: r.action_id as string,
      decision: r.decision as string,
      level: r.level as number,
      outcome: r.outcome as string,
      detail: r.detail as string,
      durationMs: r.duration_ms as number,
      steps: JSON.parse(r.steps as string) as unknown[],
    }))
  }

  getDecision(id: string): DecisionRecord | undefined {
    const row = this.stmts.getDecision.get(id) as { record: string } | undefined
    return row ? (JSON.parse(row.record) as DecisionRecord) : undefined
  }

  loadEngineState(): unknown {
    const row = this.stmts.getMeta.get('engine_state') as { value: string } | undefined
    return row ? JSON.parse(row.value) : null
  }

  /** The engine state as JSON text (made by the engine loop, in slices when it is large). */
  saveEngineStateText(json: string): void {
    this.write(() => {
      this.stmts.setMeta.run('engine_state', json)
    })
  }

  maxCommandSeq(epoch: number): number {
    return (this.stmts.maxSeq.get(epoch) as { seq: number }).seq
  }

  insertCommand(c: Omit<CommandRow, 'status' | 'result' | 'finishedAt'>): void {
    this.write(() => {
      this.stmts.insertCommand.run({ ...c, args: JSON.stringify(c.args) })
    })
  }

  /** The agent accepted the command (its result is now awaited for the action's deadline). */
  acceptCommand(id: string): void {
    this.write(() => {
      this.stmts.acceptCommand.run(id)
    })
  }

  /**
   * Records a command's outcome once; a later outcome for the same id is ignored (returns false).
   * `late`: the agent's result for a command the hub had stopped waiting for (timed out, or sent by
   * an earlier run of the hub): it replaces a `timeout`, never a reported outcome.
   */
  finishCommand(
    id: string,
    status: CommandRow['status'],
    result: Record<string, unknown> | null,
    at: number,
    late = false,
  ): boolean {
    return this.write(() => {
      const stmt = late ? this.stmts.finishLateCommand : this.stmts.finishCommand
      return stmt.run(status, result ? JSON.stringify(result) : null, at, id).changes === 1
    })
  }

  getCommand(id: string): CommandRow | undefined {
    const r = this.stmts.getCommand.get(id) as Record<string, unknown> | undefined
    if (!r) return undefined
    return {
      id: r.id as string,
      node: r.node as string,
      action: r.action as string,
      args: JSON.parse(r.args as string) as Record<string, unknown>,
      epoch: r.epoch as number,
      seq: r.seq as number,
      issuedAt: r.issued_at as number,
      expiresAt: r.expires_at as number,
      status: r.status as CommandRow['status'],
      result: r.result ? (JSON.parse(r.result as string) as Record<string, unknown>) : null,
      finishedAt: r.finished_at as number | null,
    }
  }

  /**
   * Deletes what is older than `before` from the history tables (events, decisions, fence runs,
   * finished or expired commands), at most `batch` rows per table in one transaction, so that a
   * first prune of a long history does not hold the hub's event loop: call again while it returns
   * `more`. The audit log is never pruned (it is append-only, by the database's own triggers).
   */
  prune(before: number, batch = 5000): { deleted: Record<PrunedTable, number>; more: boolean } {
    const deleted = { events: 0, decisions: 0, fence_ops: 0, commands: 0 } as Record<PrunedTable, number>
    this.write(() =>
      this.db.transaction(() => {
        for (const table of PRUNED_TABLES) {
          const key = table === 'decisions' || table === 'commands' ? 'rowid' : 'id'
          const at = table === 'commands' ? 'issued_at' : 'at'
          const info = this.db
            .prepare(
              `DELETE FROM ${table} WHERE ${key} IN (SELECT ${key} FROM ${table} WHERE ${at} < ? LIMIT ?)`,
            )
            .run(before, batch)
          deleted[table] = info.changes
        }
      })(),
    )
    return { deleted, more: Object.values(deleted).some((n) => n >= batch) }
  }

  /** The database's size on disk, in bytes (its pages in use and free). */
  sizeBytes(): number {
    const pages = this.db.pragma('page_count', { simple: true }) as number
    const size = this.db.pragma('page_size', { simple: true }) as number
    return pages * size
  }

  close(): void {
    this.db.close()
  }
}

export const PRUNED_TABLES = ['events', 'decisions', 'fence_ops', 'commands'] as const
export type PrunedTable = (typeof PRUNED_TABLES)[number]

/** SQLite result codes that mean the database, not the statement, failed. */
const STORE_FAILURES = /^SQLITE_(FULL|IOERR|READONLY|CANTOPEN|CORRUPT|NOTADB|BUSY|LOCKED|PROTOCOL)/

/** Why the database cannot be opened, in one line naming the file and the setting. */
function openFailure(path: string, err: unknown): VigilError {
  if (err instanceof VigilError) return err
  const code = (err as { code?: string }).code ?? ''
  const message = (err as Error).message ?? String(err)
  const why = /directory does not exist/.test(message)
    ? `its directory ${dirname(path)} does not exist`
    : code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT'
      ? 'it is not a SQLite database or it is corrupt (move it away, or restore a backup)'
      : code === 'SQLITE_READONLY' || code.startsWith('SQLITE_READONLY')
        ? 'it cannot be written (a read-only file or file system)'
        : code === 'SQLITE_CANTOPEN' || code.startsWith('SQLITE_CANTOPEN')
          ? 'it cannot be opened for writing (permissions, or a read-only file system)'
          : code === 'SQLITE_FULL'
            ? 'the file system is full'
            : `${message}${code ? ` (${code})` : ''}`
  return new VigilError('unavailable', `cannot open the database ${path}: ${why} (store.path)`, {
    cause: err,
  })
}
