import { Migrator, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import type { Database, Dialect } from './database.js';
import { buildDeferredIndexes } from './index-changes.js';
import * as m001 from './migrations/001_initial.js';
import * as m002 from './migrations/002_delivery_indexes.js';
import * as m003 from './migrations/003_outbound_queue.js';
import * as m004 from './migrations/004_partial_message_indexes.js';
import * as m005 from './migrations/005_partial_queue_indexes.js';
import * as m006 from './migrations/006_reply_days.js';
import * as m007 from './migrations/007_secret_rotation.js';
import * as m008 from './migrations/008_webhook_content.js';

/** Every migration, in order. Migrations are code, bundled with the build. */
const MIGRATIONS: Record<string, { up: (db: Kysely<unknown>, dialect: Dialect) => Promise<void> }> = {
  '001_initial': m001,
  '002_delivery_indexes': m002,
  '003_outbound_queue': m003,
  '004_partial_message_indexes': m004,
  '005_partial_queue_indexes': m005,
  '006_reply_days': m006,
  '007_secret_rotation': m007,
  '008_webhook_content': m008,
};

async function migrator(database: Database): Promise<Migrator> {
  const provider: MigrationProvider = {
    async getMigrations(): Promise<Record<string, Migration>> {
      return Object.fromEntries(Object.entries(MIGRATIONS).map(([name, m]) => [name, { up: (db: Kysely<unknown>) => m.up(db, database.dialect) }]));
    },
  };
  return new Migrator({ db: database.db, provider, ...(await tableSchema(database)) });
}

export interface MigrateOptions {
  /** Stop after this migration (tests of an upgrade from an older schema). Default: the latest. */
  to?: string;
  /** Progress worth a line in the log: index builds that may take minutes on a large table. */
  notice?: (message: string) => void;
}

/**
 * Applies pending migrations; Kysely's migrator takes a lock on Postgres so processes can race.
 * Then, on Postgres, builds the indexes the migrations left to build without blocking writes
 * (index-changes.ts): the process goes on only when its schema is complete.
 */
export async function migrate(database: Database, opts: MigrateOptions = {}): Promise<void> {
  const m = await migrator(database);
  const { error, results } = opts.to ? await m.migrateTo(opts.to) : await m.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    throw new Error(`migration ${failed?.migrationName ?? ''} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (database.dialect === 'postgres') await buildDeferredIndexes(database.db as unknown as Kysely<unknown>, opts.notice ?? (() => undefined));
}

export async function migrationsDone(database: Database): Promise<boolean> {
  const list = await (await migrator(database)).getMigrations();
  return list.every((m) => m.executedAt !== undefined);
}

/**
 * On Postgres, pin Kysely's bookkeeping tables to the connection's current schema: without it the
 * migrator's "does the table exist" check looks at every schema, so a database holding several
 * dmgate schemas (parallel tests) skips creating them and fails.
 */
async function tableSchema(database: Database): Promise<{ migrationTableSchema?: string }> {
  if (database.dialect !== 'postgres') return {};
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(database.db);
  return rows[0]?.schema ? { migrationTableSchema: rows[0].schema } : {};
}
