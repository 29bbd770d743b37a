import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import type { DB } from './schema.js';
import { migrate } from './migrate.js';

export type Dialect = 'sqlite' | 'postgres';
export type Tx = Transaction<DB>;
export type Executor = Kysely<DB> | Tx;

export interface Database {
  db: Kysely<DB>;
  dialect: Dialect;
  /** The better-sqlite3 handle (SQLite only): the ingest hot path writes through it directly. */
  sqlite?: BetterSqlite3.Database;
  /** The pg pool (Postgres only): LISTEN/NOTIFY needs a dedicated client from it. */
  pool?: pg.Pool;
  close(): Promise<void>;
}

// BIGINT (epoch ms, serial ids) fits a JS number for the next 280,000 years; parse it as one.
pg.types.setTypeParser(20, (v) => Number(v));

export interface OpenOptions {
  databaseUrl?: string;
  dataDir: string;
  /** Run migrations (under a lock on Postgres). Default true. */
  migrate?: boolean;
  poolSize?: number;
}

export async function openDatabase(opts: OpenOptions): Promise<Database> {
  let database: Database;
  if (opts.databaseUrl) {
    // Acknowledged means on disk: insist on synchronous commit whatever the server default is.
    const url = new URL(opts.databaseUrl);
    url.searchParams.set('options', [url.searchParams.get('options'), '-c synchronous_commit=on'].filter(Boolean).join(' '));
    const pool = new pg.Pool({ connectionString: url.toString(), max: opts.poolSize ?? 10, Client: PreparingClient });
    const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
    database = { db, dialect: 'postgres', pool, close: () => db.destroy() };
  } else {
    mkdirSync(opts.dataDir, { recursive: true });
    const sqlite = new BetterSqlite3(join(opts.dataDir, 'dmgate.db'));
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = FULL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('foreign_keys = OFF');
    const db = new Kysely<DB>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
    database = { db, dialect: 'sqlite', sqlite, close: () => db.destroy() };
  }
  if (opts.migrate !== false) await migrate(database);
  return database;
}

/**
 * Postgres: parsing and planning cost the server more than running the hot statements (a
 * conversation read with its account: 150 µs of server CPU unnamed, 60 µs prepared, measured on
 * this project's machine). Statements run as named prepared statements, each connection preparing
 * a text once; the server keeps (generic) plans for them.
 *
 * Bounded: only statements with few parameters (long `in (…)` lists and multi-row inserts vary in
 * shape and run rarely enough), and at most PREPARED_TEXTS distinct texts per process: the rest
 * runs unnamed, as before.
 */
const PREPARED_MAX_PARAMS = 64;
const PREPARED_TEXTS = 500;
const preparedNames = new Map<string, string>();

function preparedName(text: string, params: number): string | undefined {
  if (params > PREPARED_MAX_PARAMS) return undefined;
  let name = preparedNames.get(text);
  if (name === undefined && preparedNames.size < PREPARED_TEXTS) preparedNames.set(text, name = `dmgate_${preparedNames.size + 1}`);
  return name;
}

type AnyQuery = (...args: unknown[]) => never;

class PreparingClient extends pg.Client {
  // Kysely calls query(text, values) and awaits the promise; everything else passes through.
  override query(...args: unknown[]): never {
    const [text, values, callback] = args;
    const query = super.query.bind(this) as unknown as AnyQuery;
    if (typeof text === 'string' && Array.isArray(values) && callback === undefined) {
      const name = preparedName(text, values.length);
      if (name) return query({ name, text, values });
    }
    return query(...args);
  }
}

/** Distinct statements kept prepared (queries with `in (…)` lists of varying length are distinct). */
const STATEMENT_CACHE_SIZE = 512;

/**
 * Kysely prepares every query it runs; on the hot paths (sender, processor, outbox) preparing cost
 * more than running. The same SQL text reuses its prepared statement (least recently used ones are
 * dropped). Safe because the connection runs one statement at a time and nothing here streams.
 */
function withStatementCache(sqlite: BetterSqlite3.Database) {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return {
    close: () => sqlite.close(),
    prepare(text: string): BetterSqlite3.Statement {
      let stmt = cache.get(text);
      if (stmt) {
        cache.delete(text);
      } else {
        stmt = sqlite.prepare(text);
        if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value!);
      }
      cache.set(text, stmt);
      return stmt;
    },
  };
}

export async function ping(database: Database): Promise<boolean> {
  try {
    await sql`select 1`.execute(database.db);
    return true;
  } catch {
    return false;
  }
}

export const now = () => Date.now();
export const json = (v: unknown) => JSON.stringify(v);
export function parseJson<T>(v: string | null | undefined, fallback: T): T {
  if (v === null || v === undefined || v === '') return fallback;
  try { return JSON.parse(v) as T; } catch { return fallback; }
}
