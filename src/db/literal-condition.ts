import { sql, type RawBuilder, type SqlBool } from 'kysely';

/**
 * A condition on a column written with literals, never bound values: SQLite uses a partial index
 * only when the query states the index's condition in the same terms, and a Postgres generic plan
 * cannot prove that a bound value implies it either. Each partial index has its condition here once
 * (messaging/queue.ts, ingest/inbound-log.ts, webhooks/delivery-status.ts).
 */
export const literalCondition = (alias: string, column: string, condition: string): RawBuilder<SqlBool> =>
  sql.raw<SqlBool>(`${alias ? `${alias}.` : ''}${column} ${condition}`);
