import { createHash } from 'node:crypto';
import { CompiledQuery, sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { Prepared } from './prepared.js';
import type { DB } from './schema.js';

/**
 * Postgres: several statements, one after another, in one round trip and with plans kept, as a
 * PL/pgSQL function that the process defines from its own statements.
 *
 * Some writes need a statement to run after a lock is taken, with a snapshot that sees what the
 * lock's previous holder committed: two statements. Sent one by one, the lock stays held across a
 * round trip and this process's turn in between; sent as one simple-protocol script, they are parsed
 * and planned on every run (a large statement cost the server more to plan than to run: 0.8 ms a
 * run in bench:outbound). A PL/pgSQL function runs its statements with a fresh snapshot each (in a
 * volatile function, at read committed) and keeps their plans for the connection's life.
 *
 * The body is a prepared statement (db/prepared.ts): its named values become the function's
 * arguments, its builder's constants literals. The function's name carries a hash of its
 * definition, so a process never calls another version's function (in a rolling upgrade each
 * version defines and calls its own), and it is defined, once, in the connection's current schema
 * on first use. Functions of earlier versions stay: they are small and nothing calls them.
 */
export class PgRoutine<P extends object> {
  private readonly defined = new WeakMap<Kysely<DB>, Promise<void>>();
  private built?: Built<P>;

  /**
   * `args`: the SQL type of each named value, in the function's argument order. `returns`: the
   * function's result type, `setof <type>` (a function with named results could not use those
   * names as column names inside).
   */
  constructor(
    private readonly baseName: string,
    private readonly args: { [K in keyof P & string]: string },
    private readonly returns: string,
    private readonly body: Prepared<P, unknown>,
  ) {}

  /** Runs the function (defining it first if needed) with these values: its rows, each as `{ value }`. */
  async call<V>(db: Kysely<DB>, params: P): Promise<V[]> {
    const { call, names } = this.build(db);
    await this.define(db);
    const values = names.map((n) => {
      const v = params[n];
      if (v === undefined) throw new Error(`${this.baseName}: no value for "${n}"`);
      return v;
    });
    const result = await db.executeQuery<{ value: V }>(CompiledQuery.raw(call, values));
    return result.rows.map((r) => r.value);
  }

  /** The function's name and its `create function` statement. */
  definition(db: Kysely<DB>): { name: string; create: string } {
    const { name, create } = this.build(db);
    return { name, create };
  }

  private build(db: Kysely<DB>): Built<P> {
    if (this.built) return this.built;
    const names = Object.keys(this.args) as (keyof P & string)[];
    const { query, names: slots } = this.body.compiled(db);
    const text = rewriteParameters(query.sql, (i) => {
      const name = slots[i];
      if (name === null) return literal(query.parameters[i]);
      const position = names.indexOf(name as keyof P & string);
      if (position < 0) throw new Error(`${this.baseName}: "${name}" has no argument type`);
      return `$${position + 1}`;
    });
    const signature = names.map((n) => this.args[n]).join(', ');
    if (text.includes('$routine$')) throw new Error(`${this.baseName}: the body contains the function's quote`);
    const rest = `(${signature}) returns ${this.returns} language plpgsql volatile as $routine$\nbegin\n${text};\nend\n$routine$`;
    const name = `${this.baseName}_${createHash('sha256').update(rest).digest('hex').slice(0, 12)}`;
    const call = `select r as value from ${name}(${names.map((_, i) => `$${i + 1}`).join(', ')}) as r`;
    return (this.built = { name, create: `create or replace function ${name}${rest}`, call, names });
  }

  /**
   * Defines the function in the current schema unless it is there; processes starting together take
   * turns. A failure (say, a role that may not create functions) is kept for DEFINE_RETRY_MS, so
   * that calls meanwhile fail at once with the same RoutineUndefined, then the next call tries again.
   */
  private define(db: Kysely<DB>): Promise<void> {
    let done = this.defined.get(db);
    if (!done) {
      const { name, create } = this.build(db);
      done = db.transaction().execute(async (tx) => {
        await sql`select pg_advisory_xact_lock(${ROUTINE_LOCK}, hashtext(current_schema()))`.execute(tx);
        const { rows } = await sql`select 1 from pg_proc where proname = ${name} and pronamespace = current_schema()::regnamespace`.execute(tx);
        if (!rows.length) await sql.raw(create).execute(tx);
      }).catch((err: unknown) => {
        setTimeout(() => this.defined.delete(db), DEFINE_RETRY_MS).unref();
        throw new RoutineUndefined(name, err);
      });
      this.defined.set(db, done);
    }
    return done;
  }
}

interface Built<P> {
  name: string;
  create: string;
  /** The statement that calls the function with its arguments as $1…$n. */
  call: string;
  /** The named values, in the function's argument order. */
  names: (keyof P & string)[];
}

/** The function could not be defined; `reported` is for the caller, to say so once. */
export class RoutineUndefined extends Error {
  reported = false;

  constructor(name: string, cause: unknown) {
    super(`could not define the PostgreSQL function ${name}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

const DEFINE_RETRY_MS = 30_000;

/** Arbitrary constant naming the advisory lock (with the schema) under which routines are defined. */
const ROUTINE_LOCK = 0x646d7274;

/** A literal, a quoted identifier, a comment, or a parameter `$n` (group 1). */
const TOKEN = /'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|\$([0-9]+)/g;

/** The statement's text with each `$n` outside literals, quoted identifiers and comments replaced by `replace(n - 1)`. */
function rewriteParameters(text: string, replace: (index: number) => string): string {
  return text.replace(TOKEN, (token: string, n: string | undefined) => (n === undefined ? token : replace(Number(n) - 1)));
}

/** A builder's constant as an untyped literal (the statement's casts and context type it). */
function literal(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return pg.escapeLiteral(value);
  if (typeof value === 'number' && Number.isFinite(value)) return `'${value}'`;
  if (typeof value === 'bigint' || typeof value === 'boolean') return `'${value}'`;
  throw new Error(`a routine's constant must be a string, number or boolean, not ${typeof value}`);
}
