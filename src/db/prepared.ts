import type { CompiledQuery, QueryExecutorProvider, QueryResult } from 'kysely';
import { isPostgres, runDirect, type Executor } from './database.js';

/**
 * A query that Kysely builds and compiles once per dialect; each run only binds its values.
 *
 * Kysely rebuilds, freezes and compiles the whole query tree on every call. On the hot paths
 * (accepting a reply, the sender's reads) that cost the event loop more than SQLite took to run the
 * statement: 13 % of the sending process's main thread in a CPU profile of `bench:outbound`. The
 * same SQL string on every run also keeps the statement caches' lookups cheap (a new string is
 * hashed again).
 *
 * The builder receives `$(name)`, a stand-in for the value bound at run time under that name. It
 * may only place it where a value goes (a comparison, a `set`, an insert's values), never look at
 * it, and every run has the same shape: queries with optional clauses or lists of varying length
 * stay ordinary Kysely queries.
 */
export function prepared<P extends object>() {
  return <R>(build: (db: Executor, $: Binder<P>) => Buildable<R>): Prepared<P, R> => new Prepared(build);
}

/** A query builder, or a raw `sql` template (which compiles against an executor). */
interface Buildable<R> { compile(executorProvider: QueryExecutorProvider): CompiledQuery<R> }

export type Binder<P> = <K extends keyof P & string>(name: K) => P[K];

/** Every key of `names` bound by name: an insert's row. */
export function boundRow<P, K extends keyof P & string>($: Binder<P>, names: readonly K[]): { [N in K]: P[N] } {
  return Object.fromEntries(names.map((n) => [n, $(n)])) as { [N in K]: P[N] };
}

/** Values that cannot come from a caller (a NUL, then our tag): what a parameter slot is named by. */
const SLOT = '\u0000dmgate-slot:';

export interface Compiled<R> {
  query: CompiledQuery<R>;
  /** Per parameter: the name of the value bound there, or null for a constant of the builder. */
  names: (string | null)[];
}

export class Prepared<P extends object, R> {
  private readonly byDialect = new Map<boolean, Compiled<R>>();

  constructor(private readonly build: (db: Executor, $: Binder<P>) => Buildable<R>) {}

  async execute(db: Executor, params: P): Promise<QueryResult<R>> {
    const query = this.bound(db, params);
    return runDirect(db, query) ?? db.executeQuery<R>(query);
  }

  /** The query this dialect runs with these values. */
  bound(db: Executor, params: P): CompiledQuery<R> {
    const { query, names } = this.compiled(db);
    const values = params as Record<string, unknown>;
    const parameters = names.map((name, i) => {
      if (name === null) return query.parameters[i];
      const v = values[name];
      if (v === undefined) throw new Error(`prepared query: no value for "${name}"`);
      return v;
    });
    return { ...query, parameters };
  }

  async all(db: Executor, params: P): Promise<R[]> {
    return (await this.execute(db, params)).rows;
  }

  async first(db: Executor, params: P): Promise<R | undefined> {
    return (await this.execute(db, params)).rows[0];
  }

  /** The SQL text this dialect runs (for EXPLAIN). */
  sql(db: Executor): string {
    return this.compiled(db).query.sql;
  }

  /** The statement as this dialect compiles it, with the name bound at each parameter. */
  compiled(db: Executor): Compiled<R> {
    const pg = isPostgres(db);
    let c = this.byDialect.get(pg);
    if (!c) {
      const query = this.build(db, ((name: string) => SLOT + name) as Binder<P>).compile(db);
      const names = query.parameters.map((p) => (typeof p === 'string' && p.startsWith(SLOT) ? p.slice(SLOT.length) : null));
      c = { query, names };
      this.byDialect.set(pg, c);
    }
    return c;
  }
}
