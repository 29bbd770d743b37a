import { sql, type RawBuilder, type SqlBool } from 'kysely';
import { isPostgres, type Executor } from './database.js';

/*
 * Set-based statements with one text whatever the number of rows: the rows travel as one JSON
 * parameter (SQLite, json_each) or as one array per column (Postgres, unnest). Each statement is
 * then prepared and planned once, no query tree grows with the batch, and rows are joined by key.
 */

/** `column` is one of the values of a `listValue` (a parameter: prepared queries bind it at run time, db/prepared.ts). */
export function inListOf(db: Executor, column: string, list: unknown): RawBuilder<SqlBool> {
  return isPostgres(db)
    ? sql<SqlBool>`${sql.ref(column)} = any(${list}::text[])`
    : sql<SqlBool>`${sql.ref(column)} in (select value from json_each(${list}))`;
}

/** The one parameter that carries a list of values. */
export function listValue(db: Executor, values: string[]): unknown {
  return isPostgres(db) ? values : JSON.stringify(values);
}

/** A row source named `x` (or `alias`) with these typed columns: `… from ${rowsAs(…)}`. */
export function rowsAs(db: Executor, columns: [name: string, type: 'text' | 'bigint'][], rows: unknown[][], alias = 'x'): RawBuilder<unknown> {
  if (isPostgres(db)) {
    const arrays = columns.map(([, type], i) => sql`${rows.map((r) => r[i])}::${sql.raw(type)}[]`);
    return sql`unnest(${sql.join(arrays)}) as ${sql.id(alias)}(${sql.raw(columns.map(([name]) => name).join(', '))})`;
  }
  const picks = columns.map(([name], i) => `value ->> ${i} as ${name}`).join(', ');
  return sql`(select ${sql.raw(picks)} from json_each(${JSON.stringify(rows)})) as ${sql.id(alias)}`;
}

/**
 * Postgres: a statement that updates several conversations locks each row as its plan reaches it,
 * in an order no one chose, and two such statements in concurrent transactions (a batch of results
 * and a batch of accepts) could each hold a row the other waits for: a deadlock, which Postgres
 * breaks only after deadlock_timeout (a second by default), failing one batch. Joined to `x.id`,
 * this CTE (`l`) locks the rows first, in id order, the order every other multi-row lock of
 * conversations takes (ingest/apply.ts postgresLookups). `columns` come back as the lock leaves them:
 * a row that another transaction changed while this one waited, as that one committed it.
 */
export function conversationsLockedInOrder(ids: unknown, columns: string[] = []): { cte: RawBuilder<unknown>; join: RawBuilder<unknown> } {
  return {
    cte: sql`l as materialized (select ${sql.join(['id', ...columns].map((c) => sql.ref(c)))} from conversations where id = any(${ids}::text[]) order by id for update)`,
    join: sql` join l on l.id = x.id`,
  };
}
