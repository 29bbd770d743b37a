import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { CompiledQuery, Kysely, PostgresAdapter, PostgresDialect, SqliteDialect, SqliteDriver, sql, type DatabaseConnection, type Driver, type QueryResult, type Transaction } from 'kysely';
import pg from 'pg';
import type { DB } from './schema.js';
import { migrate } from './migrate.js';
import { Checkpointer } from './checkpointer.js';
import { WalSync } from './wal-sync.js';

export type Dialect = 'sqlite' | 'postgres';
export type Tx = Transaction<DB>;
export type Executor = Kysely<DB> | Tx;

/** Whether this database or transaction runs on Postgres (for code that has no AppContext at hand). */
export const isPostgres = (db: Executor): boolean => db.getExecutor().adapter instanceof PostgresAdapter;

export interface Database {
  db: Kysely<DB>;
  dialect: Dialect;
  /** The better-sqlite3 handle (SQLite only): the ingest hot path writes through it directly. */
  sqlite?: BetterSqlite3.Database;
  /** The pg pool (Postgres only): LISTEN/NOTIFY needs a dedicated client from it. */
  pool?: pg.Pool;
  /**
   * Postgres only: connections whose prepared statements always run their generic plan, planned
   * once per connection. For statements that Postgres would otherwise plan again on every run
   * (it keeps custom plans when it estimates them cheaper) and whose generic plan is known to be
   * good (test/stale-statistics-plans.test.ts): the accept path's read and writes (the first
   * replies' through a function whose statements follow the same setting), whose planning cost the
   * server more than running them (pg_stat_statements in bench:outbound: 315-440 µs planning against
   * 90-130 µs running the read; 220 µs planning the write, 830 µs the first replies'). Not for every
   * statement: forced generic plans made the sender's slower than the planning they save.
   */
  generic?: Kysely<DB>;
  /**
   * Resolves once every commit made so far is on disk. Kysely transactions and writes already wait
   * for it; only code writing through `sqlite` directly must call it before acknowledging.
   */
  durable(): Promise<void>;
  close(): Promise<void>;
}

/** The connection URL with server settings added to those its `options` parameter already sets. */
function withOptions(url: string, options: string): string {
  const out = new URL(url);
  out.searchParams.set('options', [out.searchParams.get('options'), options].filter(Boolean).join(' '));
  return out.toString();
}

/** PostgreSQL SQLSTATE classes and codes of a server that cannot serve now (not of a bad query). */
const UNAVAILABLE_SQLSTATE = /^(08|57P0[1-3]|53300)/;
const UNAVAILABLE_SYSCALL = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'SQLITE_BUSY']);

/**
 * Whether a query failed because the database could not be reached or was going away (a restart, a
 * failover, a lost connection, a writer lock held too long), not because of the query: the caller
 * may try again in a moment. (A connection lost during a COMMIT leaves its outcome unknown: a
 * client retrying a send should repeat its Idempotency-Key.)
 */
export function databaseUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && (UNAVAILABLE_SYSCALL.has(code) || UNAVAILABLE_SQLSTATE.test(code))) return true;
  // node-postgres' own errors for a connection that ended or broke carry no code.
  return /^Connection terminated|is not queryable/.test(err.message);
}

// BIGINT (epoch ms, serial ids) fits a JS number for the next 280,000 years; parse it as one.
pg.types.setTypeParser(20, (v) => Number(v));

/** The SQLite database's file in the data directory. */
export const SQLITE_FILE = 'dmgate.db';

export interface OpenOptions {
  databaseUrl?: string;
  dataDir: string;
  /** Run migrations (under a lock on Postgres). Default true. */
  migrate?: boolean;
  poolSize?: number;
  /** Where trouble that is not an error of any query goes (default: a process warning). */
  onWarning?: (message: string) => void;
  /** Where progress worth a line in the log goes (long index builds while migrating). */
  onNotice?: (message: string) => void;
}

export async function openDatabase(opts: OpenOptions): Promise<Database> {
  let database: Database;
  const warn = opts.onWarning ?? ((message: string) => process.emitWarning(message));
  if (opts.databaseUrl) {
    // Acknowledged means on disk: insist on synchronous commit whatever the server default is.
    const url = withOptions(opts.databaseUrl, '-c synchronous_commit=on');
    const newPool = (options: string, max: number) => {
      const pool = new pg.Pool({ connectionString: withOptions(url, options), max, Client: PreparingClient });
      // An idle connection that dies is dropped by the pool, which then emits 'error': unheard,
      // that would end the process. The next query opens a new connection.
      pool.on('error', (err) => warn(`PostgreSQL connection lost (idle in the pool; the next query reconnects): ${err.message}`));
      return pool;
    };
    const pool = newPool('', opts.poolSize ?? 10);
    const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
    // The accept path's coalesced reads, writes and first replies run at most two of each at once.
    const generic = new Kysely<DB>({ dialect: new PostgresDialect({ pool: newPool('-c plan_cache_mode=force_generic_plan', 6) }) });
    database = {
      db, dialect: 'postgres', pool, generic, durable: async () => undefined,
      close: async () => { await generic.destroy(); await db.destroy(); },
    };
  } else {
    mkdirSync(opts.dataDir, { recursive: true });
    const file = join(opts.dataDir, SQLITE_FILE);
    const sqlite = new BetterSqlite3(file);
    sqlite.pragma('journal_mode = WAL');
    // Commits sync through WalSync, off the event loop (see there): as durable as FULL.
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('foreign_keys = OFF');
    // A statement inside a transaction keeps the pages it changes in a statement journal (to undo
    // itself alone); past 64 KiB that spilled into a temporary file, a write syscall per page on the
    // event loop (the batch updates of group commit: 3 % of the sender's main thread in perf, 0.6 %
    // after). Temporary b-trees of DISTINCT and GROUP BY stay in memory too; ours are small.
    sqlite.pragma('temp_store = MEMORY');
    const wal = new WalSync(`${file}-wal`);
    const checkpointer = new Checkpointer(sqlite, file, (message) => warn(`SQLite checkpoints: ${message}`));
    const statements = withStatementCache(sqlite);
    const db = new Kysely<DB>({ dialect: new DurableSqliteDialect(statements, wal, checkpointer) });
    statementsOf.set(db, statements);
    database = {
      db, dialect: 'sqlite', sqlite, durable: () => { checkpointer.committed(); return wal.sync(); },
      close: async () => { await checkpointer.close(); await db.destroy(); wal.close(); },
    };
  }
  if (opts.migrate !== false) await migrate(database, { notice: opts.onNotice });
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
  constructor(config?: string | pg.ClientConfig) {
    super(config);
    // A connection that dies (the server restarts, fails over, or ends it) fails its queries, and
    // pg also emits 'error' on the client. Idle in the pool, the pool hears it (see openDatabase);
    // lent out (inside a transaction, between two of its statements) nothing else would, and an
    // unheard 'error' ends the process. Its queries already carry the error; the pool drops the
    // connection when it comes back.
    this.on('error', () => undefined);
  }

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

/** The part of a statement Kysely's SQLite connection uses. */
type KyselyStatement = Pick<BetterSqlite3.Statement, 'reader' | 'readonly' | 'all' | 'run' | 'iterate'>;

/**
 * A statement that returns rows, read as arrays and turned into objects by a function made for
 * its columns. better-sqlite3 builds each row object one named property at a time, which cost more
 * than running the query: 20 pending replies, 16 columns, read in a third to a quarter of the time
 * this way (104-166 µs against 421-592 µs, alternating in one process on this project's machine).
 * The objects are the same: the same keys in the same order, a later column of the same name
 * winning, as better-sqlite3 does.
 */
function rowsAsObjects(stmt: BetterSqlite3.Statement): KyselyStatement {
  const names = stmt.columns().map((c) => c.name);
  if (names.includes('__proto__')) return stmt;
  const build = new Function('r', `return {${names.map((n, i) => `${JSON.stringify(n)}: r[${i}]`).join(', ')}};`) as (row: unknown[]) => unknown;
  stmt.raw(true);
  return {
    reader: true,
    readonly: stmt.readonly,
    all: ((...params: unknown[]) => (stmt.all(...params) as unknown[][]).map(build)) as BetterSqlite3.Statement['all'],
    run: stmt.run.bind(stmt),
    iterate: (function* (...params: unknown[]) {
      for (const row of stmt.iterate(...params) as IterableIterator<unknown[]>) yield build(row);
    }) as BetterSqlite3.Statement['iterate'],
  };
}

/**
 * Kysely prepares every query it runs; on the hot paths (sender, processor, outbox) preparing cost
 * more than running. The same SQL text reuses its prepared statement (least recently used ones are
 * dropped). Safe because the connection runs one statement at a time and nothing here streams.
 */
function withStatementCache(sqlite: BetterSqlite3.Database) {
  const cache = new Map<string, KyselyStatement>();
  return {
    sqlite,
    /** Whether the statement prepared last writes (read right after Kysely runs it, synchronously). */
    lastWrites: false,
    close: () => sqlite.close(),
    prepare(text: string): KyselyStatement {
      let stmt = cache.get(text);
      if (stmt) {
        cache.delete(text);
      } else {
        const prepared = sqlite.prepare(text);
        stmt = prepared.reader ? rowsAsObjects(prepared) : prepared;
        if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value!);
      }
      cache.set(text, stmt);
      this.lastWrites = !stmt.readonly;
      return stmt;
    },
  };
}

type StatementCache = ReturnType<typeof withStatementCache>;

/**
 * Kysely's SQLite dialect whose commits, and writes outside a transaction, return only once on
 * disk (WalSync). The connection stays held meanwhile, so nothing reads what is not yet durable
 * through Kysely; the event loop is free.
 */
class DurableSqliteDialect extends SqliteDialect {
  constructor(private readonly statements: StatementCache, private readonly wal: WalSync, private readonly checkpointer: Checkpointer) {
    super({ database: statements });
  }

  override createDriver(): Driver {
    return new DurableSqliteDriver({ database: this.statements }, this.statements, this.wal, this.checkpointer);
  }
}

/** Marks a query of runEach: its second parameter holds the rows. */
const EACH_ROW = Symbol('dmgate.eachRow');

/**
 * SQLite: runs one statement once per row, all in one call through the connection, and gives each
 * run's rowid in order. A batch of events costs one prepared insert per row this way: Kysely's
 * multi-row forms cost more (a JSON parameter parsed again per column, or a query tree and text
 * that grow with the batch; or its per-call overhead per row: 13-17 µs an event either way,
 * 6 µs this way, measured in one process). Inside a transaction: a failed row leaves the earlier
 * ones written until the transaction rolls back.
 */
export async function runEach(db: Executor, text: string, rows: readonly (readonly unknown[])[]): Promise<number[]> {
  if (isPostgres(db)) throw new Error('runEach runs on SQLite only');
  const query = CompiledQuery.raw(text, [EACH_ROW, rows]) as CompiledQuery<{ rowid: number }>;
  const result = runDirect(db, query) ?? await db.executeQuery(query);
  return result.rows.map((r) => r.rowid);
}

/** SQLite: the statement cache of each database (openDatabase). */
const statementsOf = new WeakMap<Kysely<DB>, StatementCache>();
/** SQLite: the transactions of `transaction` still running, with their connection's statements. */
const directIn = new WeakMap<Executor, StatementCache>();

/**
 * `db.transaction().execute(fn)`; on SQLite, the prepared statements (db/prepared.ts) and runEach
 * that `fn` runs through `tx` then go to better-sqlite3 directly instead of through Kysely.
 *
 * Kysely's path costs each statement a chain of promises, closures and connection providers. In
 * bench:outbound that machinery was a quarter to two fifths of all the gateway allocated, most of it
 * on the statements of group commits; this path cut what an API process allocates per accepted
 * reply by about a sixth and its minor GCs (each pausing every request for 5-15 ms) from 14 to 11
 * per 10 s.
 *
 * Safe only inside a transaction: its connection is held by this transaction alone until it ends
 * (Kysely's SQLite driver locks it), and better-sqlite3 runs each statement to its end
 * synchronously. Outside one, a direct statement could read another transaction's uncommitted rows,
 * or what is committed but not yet on disk (WalSync), both of which Kysely's connection lock keeps
 * out. `fn` must run its statements one after another (as everything inside a transaction does): a
 * direct statement does not queue behind a Kysely one.
 */
export function transaction<T>(db: Kysely<DB>, fn: (tx: Tx) => Promise<T>): Promise<T> {
  const statements = statementsOf.get(db);
  if (!statements) return db.transaction().execute(fn);
  return db.transaction().execute(async (tx) => {
    directIn.set(tx, statements);
    try {
      return await fn(tx);
    } finally {
      directIn.delete(tx);
    }
  });
}

/** The result of `query` (a runEach batch too) run directly (see `transaction`), or undefined when `db` is not such a transaction. */
export function runDirect<R>(db: Executor, query: CompiledQuery<R>): QueryResult<R> | undefined {
  const statements = directIn.get(db);
  if (!statements) return undefined;
  if (query.parameters[0] === EACH_ROW) return runEachRow<R>(statements, query);
  const stmt = statements.prepare(query.sql);
  // As Kysely's SqliteConnection.executeQuery does.
  if (stmt.reader) return { rows: stmt.all(query.parameters) as R[] };
  const { changes, lastInsertRowid } = stmt.run(query.parameters);
  return { numAffectedRows: BigInt(changes), insertId: BigInt(lastInsertRowid), rows: [] };
}

function runEachRow<R>(statements: StatementCache, query: CompiledQuery): QueryResult<R> {
  const stmt = statements.prepare(query.sql);
  const rows = query.parameters[1] as unknown[][];
  const out = rows.map((row) => ({ rowid: Number(stmt.run(...row).lastInsertRowid) }));
  return { rows: out as R[] };
}

class DurableSqliteDriver extends SqliteDriver {
  private readonly wrapped = new WeakMap<DatabaseConnection, DatabaseConnection>();

  constructor(
    config: ConstructorParameters<typeof SqliteDriver>[0], private readonly statements: StatementCache, private readonly wal: WalSync,
    private readonly checkpointer: Checkpointer,
  ) {
    super(config);
  }

  override async acquireConnection(): Promise<DatabaseConnection> {
    const inner = await super.acquireConnection();
    let conn = this.wrapped.get(inner);
    if (!conn) {
      const { statements, wal, checkpointer } = this;
      conn = {
        executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
          const result = query.parameters[0] === EACH_ROW ? Promise.resolve(runEachRow<R>(statements, query)) : inner.executeQuery<R>(query);
          // An autocommit write committed just now (in a transaction, the commit syncs).
          if (!statements.lastWrites || statements.sqlite.inTransaction) return result;
          checkpointer.committed();
          return result.then(async (r) => { await wal.sync(); return r; });
        },
        streamQuery: (query, chunkSize) => inner.streamQuery(query, chunkSize),
      };
      this.wrapped.set(inner, conn);
    }
    return conn;
  }

  /**
   * `begin immediate`: the write lock up front. Another connection can write the file between a
   * transaction's read and its write (a one-shot CLI command such as `keys create` beside the
   * server); a deferred transaction would then fail its write with SQLITE_BUSY_SNAPSHOT, which no
   * busy timeout retries. Taken at begin, the lock makes the other writer wait instead.
   */
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }

  override async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await super.commitTransaction(connection);
    this.checkpointer.committed();
    await this.wal.sync();
  }
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
