import type BetterSqlite3 from 'better-sqlite3';
import { Batches } from '../core/batches.js';
import type { Database } from '../db/database.js';
import { literalCondition } from '../db/literal-condition.js';

export interface InboundRow {
  provider: string;
  dedupeKey: string;
  eventType: string;
  businessId: string | null;
  body: string;
  receivedAt: number;
}

/* The conditions of the log's partial indexes (migration 005), as literals (db/literal-condition.ts). */

/** Waiting to be processed: inbound_events_due. */
export const inboundPending = () => literalCondition('', 'status', `= 'pending'`);
/** Not processed yet, pending or held while its account is disconnected: inbound_events_waiting. */
export const inboundWaiting = () => literalCondition('', 'status', `in ('pending', 'held')`);

interface Pending { row: InboundRow; resolve: () => void; reject: (err: unknown) => void }

/**
 * The durable inbound log. A webhook is acknowledged only after its row is committed; concurrent
 * webhooks share one transaction (group commit), so many acknowledgements cost one disk sync.
 * A duplicate (same provider + dedupe key) is a no-op: TikTok's retries collapse here.
 */
export class InboundLog {
  private readonly batches: Batches<Pending>;
  private insertSqlite?: (rows: InboundRow[]) => void;

  constructor(private readonly database: Database, private readonly onCommitted: (batchSize: number) => void) {
    if (database.sqlite) this.insertSqlite = prepareSqlite(database.sqlite);
    this.batches = new Batches((batch) => this.write(batch), { parallel: database.dialect === 'postgres' ? 4 : 1, maxBatch: 500 });
  }

  append(row: InboundRow): Promise<void> {
    return new Promise((resolve, reject) => this.batches.push({ row, resolve, reject }));
  }

  private async write(batch: Pending[]): Promise<void> {
    // Someone holds a transaction on the shared connection across an await. Writing now would
    // nest our rows in it (a savepoint): acknowledged before durable, lost if it rolls back.
    while (this.database.sqlite?.inTransaction) await new Promise((r) => setTimeout(r, 1));
    try {
      if (this.insertSqlite) {
        this.insertSqlite(batch.map((p) => p.row));
        await this.database.durable();
      } else {
        await this.insertPostgres(batch.map((p) => p.row));
      }
      for (const p of batch) p.resolve();
      this.onCommitted(batch.length);
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }

  private async insertPostgres(rows: InboundRow[]): Promise<void> {
    const params: unknown[] = [];
    const values = rows.map((r, i) => {
      params.push(r.provider, r.dedupeKey, r.eventType, r.businessId, r.body, r.receivedAt);
      const b = i * 6;
      return `($${b + 1},$${b + 2},$${b + 3},$${b + 4},$${b + 5},'pending',0,0,$${b + 6})`;
    });
    await this.database.pool!.query(
      `insert into inbound_events (provider, dedupe_key, event_type, business_id, body, status, attempts, next_attempt_at, received_at)
       values ${values.join(',')} on conflict (provider, dedupe_key) do nothing`, params);
  }
}

function prepareSqlite(sqlite: BetterSqlite3.Database): (rows: InboundRow[]) => void {
  const stmt = sqlite.prepare(`insert into inbound_events (provider, dedupe_key, event_type, business_id, body, status, attempts, next_attempt_at, received_at)
    values (?, ?, ?, ?, ?, 'pending', 0, 0, ?) on conflict (provider, dedupe_key) do nothing`);
  const insert = sqlite.transaction((rows: InboundRow[]) => {
    for (const r of rows) stmt.run(r.provider, r.dedupeKey, r.eventType, r.businessId, r.body, r.receivedAt);
  });
  // The write lock at begin, as every transaction here takes it (see DurableSqliteDriver).
  return (rows) => insert.immediate(rows);
}
