import { Migrator, sql, type Migration, type MigrationProvider } from 'kysely';
import type { Database } from './database.js';
import * as m001 from './migrations/001_initial.js';
import * as m002 from './migrations/002_delivery_indexes.js';
import * as m003 from './migrations/003_outbound_queue.js';

/** Migrations are code, bundled with the build; Kysely's migrator takes a lock on Postgres. */
export async function migrate(database: Database): Promise<void> {
  const provider: MigrationProvider = {
    async getMigrations(): Promise<Record<string, Migration>> {
      return {
        '001_initial': { up: (db) => m001.up(db, database.dialect) },
        '002_delivery_indexes': { up: (db) => m002.up(db, database.dialect) },
        '003_outbound_queue': { up: (db) => m003.up(db, database.dialect) },
      };
    },
  };
  const migrator = new Migrator({ db: database.db, provider, ...(await tableSchema(database)) });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    throw new Error(`migration ${failed?.migrationName ?? ''} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}

export async function migrationsDone(database: Database): Promise<boolean> {
  const migrator = new Migrator({ db: database.db, ...(await tableSchema(database)), provider: { getMigrations: async () => ({ '001_initial': { up: async () => undefined }, '002_delivery_indexes': { up: async () => undefined }, '003_outbound_queue': { up: async () => undefined } }) } });
  const list = await migrator.getMigrations();
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
